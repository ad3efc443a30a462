import { describe, expect, it } from 'vitest';
import { Host } from '../src/host/host.js';
import type { BackingSource } from '../src/host/mm.js';
import { audit } from '../src/kvm/audit.js';
import { eptWalk, WalkResult, walkOut } from '../src/kvm/mmu/tdp/walk.js';
import type { Vm } from '../src/kvm/vm.js';
import { accesses, kGiB, kMiB, range, vmWithMapping } from './fixtures/vm-ctx.js';

/** Map `size` bytes of `backing` into a VM; slot at gpa with hva = mapping start + hvaOffset. */
function setup(host: Host, backing: BackingSource, mapSize: number, gpa: number, size: number, hvaOffset = 0) {
  const { vm, ctx, hva } = vmWithMapping(host, mapSize, backing);
  vm.setUserMemoryRegion2({ slot: 0, flags: 0, guestPhysAddr: gpa, memorySize: size, userspaceAddr: hva + hvaOffset });
  return { vm, ctx, vcpu: vm.createVcpu() };
}

/** Level of the leaf mapping gfn (hardware walk), or 0 if none. */
function leafLevel(vm: Vm, gfn: number): number {
  return eptWalk(vm.pool.pt, vm.root, gfn, false) === WalkResult.kWalkOk ? walkOut.level : 0;
}

function pages(vm: Vm) {
  const s = vm.getStats();
  return [s.pages_4k, s.pages_2m, s.pages_1g];
}

describe('max mapping level: the backing folio and lpage_info decide', () => {
  it('anonymous 4K memory maps 4K leaves only', () => {
    const host = Host.create({ memory: 64 * kMiB });
    const { vm, ctx, vcpu } = setup(host, 'anonymous', 4 * kMiB, 0, 4 * kMiB);
    expect(vcpu.run(range(0, 1024), 2000, null)).toBe(1024);
    expect(pages(vm)).toEqual([1024, 0, 0]);
    expect(vcpu.getStats().pf_fixed).toBe(1024);
    ctx.hostThread.drain();
    expect(audit(host, [vm]).ok).toBe(true);
  });

  it('hugetlb 2 MiB maps 2M leaves, one fault per huge page', () => {
    const host = Host.create({ memory: 64 * kMiB, hugepages2m: 2 });
    const { vm, ctx, vcpu } = setup(host, 'anonymous_hugetlb_2mb', 4 * kMiB, 0, 4 * kMiB);
    expect(vcpu.run(range(0, 1024), 2000, null)).toBe(1024);
    expect(pages(vm)).toEqual([0, 2, 0]);
    expect(vcpu.getStats().pf_fixed).toBe(2);
    expect(leafLevel(vm, 700)).toBe(2);
    ctx.hostThread.drain();
    expect(audit(host, [vm]).ok).toBe(true);
  });

  it('hugetlb 1 GiB maps a 1G leaf', () => {
    const host = Host.create({ memory: kGiB + 8 * kMiB, hugepages1g: 1 });
    const { vm, ctx, vcpu } = setup(host, 'anonymous_hugetlb_1gb', kGiB, kGiB, kGiB);
    expect(vcpu.run(accesses([262144 + 12345, 262144, 2 * 262144 - 1]), 10, null)).toBe(3);
    expect(pages(vm)).toEqual([0, 0, 1]);
    expect(vcpu.getStats().pf_fixed).toBe(1);
    expect(leafLevel(vm, 262144 + 99)).toBe(3);
    expect(walkOut.pfn).toBe(99); // the 1G folio is the first reserved block, pfn 0
    ctx.hostThread.drain();
    expect(audit(host, [vm]).ok).toBe(true);
  });

  it('a 1G folio is mapped 2M where the slot forbids 1G (head not 1G aligned)', () => {
    const host = Host.create({ memory: kGiB + 8 * kMiB, hugepages1g: 1 });
    // gfns [512, 262144) <- hva + 2 MiB: 2M aligned relative to the host, 1G head misaligned.
    const { vm, ctx, vcpu } = setup(host, 'anonymous_hugetlb_1gb', kGiB, 2 * kMiB, kGiB - 2 * kMiB, 2 * kMiB);
    expect(vcpu.run(accesses([512, 1024 + 3, 262143]), 10, null)).toBe(3);
    expect(pages(vm)).toEqual([0, 3, 0]);
    ctx.hostThread.drain();
    expect(audit(host, [vm]).ok).toBe(true);
  });

  it('transparent huge pages map 2M where the VMA holds a whole aligned 2M range, 4K elsewhere', () => {
    const host = Host.create({ memory: 64 * kMiB });
    const { vm, ctx, vcpu } = setup(host, 'anonymous_thp', 3 * kMiB, 0, 3 * kMiB);
    expect(vcpu.run(range(0, 768), 1000, null)).toBe(768);
    // [0, 512) is one 2M folio; [512, 768) is only 1 MiB of VMA: 256 4K folios.
    expect(pages(vm)).toEqual([256, 1, 0]);
    expect(vcpu.getStats().pf_fixed).toBe(1 + 256);
    ctx.hostThread.drain();
    expect(host.ownedPages(vm.owner)).toBe(768);
    expect(audit(host, [vm]).ok).toBe(true);
  });

  it('a slot whose base gfn is misaligned with its hva maps everything 4K, even over 2M folios', () => {
    const host = Host.create({ memory: 64 * kMiB, hugepages2m: 4 });
    // gfns [1, 1025) <- hva (2M aligned): base_gfn ^ ugfn = 1 at every level.
    const { vm, ctx, vcpu } = setup(host, 'anonymous_hugetlb_2mb', 8 * kMiB, 4096, 4 * kMiB);
    expect(vcpu.run(range(1, 1025), 2000, null)).toBe(1024);
    expect(pages(vm)).toEqual([1024, 0, 0]);
    expect(leafLevel(vm, 512)).toBe(1);
    ctx.hostThread.drain();
    expect(host.accounting().hugetlb2m.free).toBe(2); // the host still uses 2M folios
    expect(audit(host, [vm]).ok).toBe(true);
  });

  it('a slot with misaligned start and end maps head and tail 2M regions 4K and the middle 2M', () => {
    const host = Host.create({ memory: 64 * kMiB, hugepages2m: 4 });
    // gfns [768, 1792) <- hva + 1 MiB: same offset in the 2M page on both sides, so only the
    // head [768, 1024) and the tail [1536, 1792) are disallowed.
    const { vm, ctx, vcpu } = setup(host, 'anonymous_hugetlb_2mb', 8 * kMiB, 3 * kMiB, 4 * kMiB, kMiB);
    expect(vcpu.run(range(768, 1792), 2000, null)).toBe(1024);
    expect(pages(vm)).toEqual([512, 1, 0]);
    expect(vcpu.getStats().pf_fixed).toBe(256 + 1 + 256);
    expect([leafLevel(vm, 1023), leafLevel(vm, 1024), leafLevel(vm, 1535), leafLevel(vm, 1536)]).toEqual([1, 2, 2, 1]);
    ctx.hostThread.drain();
    expect(audit(host, [vm]).ok).toBe(true);
  });
});
