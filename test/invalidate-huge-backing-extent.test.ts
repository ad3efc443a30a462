// The mmu_notifier range is what the host really unmaps. hugetlb unmaps whole huge pages
// (__unmap_hugepage_range() widens the notifier range to the huge page), so invalidating one 4K
// gfn of a hugetlb page that dirty logging split into 4K SPTEs must zap all of its SPTEs, or they
// map a freed folio. THP drops only the 4K pages in range unless the range covers the whole PMD
// (zap_huge_pmd() vs __split_huge_pmd()), so there the notifier stays exactly the requested range.
import { describe, expect, it } from 'vitest';
import { Host, KVM_MEM_LOG_DIRTY_PAGES } from '../src/index.js';
import type { BackingSource } from '../src/host/mm.js';
import { eptWalk, WalkResult } from '../src/kvm/mmu/tdp/walk.js';
import type { Vm } from '../src/kvm/vm.js';

const kMiB = 2 ** 20;

function mapped(vm: Vm, gfn: number): boolean {
  return eptWalk(vm.pool.pt, vm.root, gfn, false) === WalkResult.kWalkOk;
}

function span(start: number, end: number, step = 1) {
  let g = start;
  return { iteration: 1, write: true, next: () => { if (g >= end) return -1; const r = g; g += step; return r; } };
}

/** A slot of `bytes` at gfn `base`, mapped huge by one write per huge page, then logging on (eager split). */
function splitSlot(backing: BackingSource, bytes: number, base: number, hostOpts: { memory: number; hugepages2m?: number; hugepages1g?: number }, step: number) {
  const host = Host.create(hostOpts);
  const vm = host.createVm();
  const hva = vm.mmap({ size: bytes, backing });
  const region = { slot: 0, flags: 0, guestPhysAddr: base * 4096, memorySize: bytes, userspaceAddr: hva };
  vm.setUserMemoryRegion2(region);
  const vcpu = vm.createVcpu();
  const npages = bytes / 4096;
  expect(vcpu.run(span(base, base + npages, step), 1 << 22)).toBe(npages / step);
  vm.setUserMemoryRegion2({ ...region, flags: KVM_MEM_LOG_DIRTY_PAGES });
  expect(vm.getStats()).toMatchObject({ pages_2m: 0, pages_1g: 0, pages_4k: npages });
  return { host, vm, vcpu, npages };
}

describe('invalidation covers the range the host really unmaps', () => {
  it('2M hugetlb split to 4K by dirty logging: invalidating one 4K gfn zaps all 512 SPTEs of that huge page', () => {
    const base = 0x100000;
    const { host, vm, vcpu, npages } = splitSlot('anonymous_hugetlb_2mb', 4 * kMiB, base, { memory: 32 * kMiB, hugepages2m: 4 }, 512);
    vm.invalidateRange(base + 512 + 7, base + 512 + 8);
    // The whole second huge page went back to the pool, and no SPTE maps any of it.
    expect(vm.getStats().pages_4k).toBe(npages - 512);
    expect([mapped(vm, base + 511), mapped(vm, base + 512), mapped(vm, base + 519), mapped(vm, base + 1023)]).toEqual([true, false, false, false]);
    const a = host.audit();
    expect(a.violations).toEqual([]);
    expect(a.ok).toBe(true);
    // The guest refaults the huge page (as 4K: logging is on) and everything balances again.
    expect(vcpu.run(span(base, base + npages), 1 << 22)).toBe(npages);
    expect(vm.getStats().pages_4k).toBe(npages);
    expect(host.audit().violations).toEqual([]);
  });

  it('THP split to 4K: invalidating one 4K gfn zaps only it (the folio stays, split); the whole 2M frees it', () => {
    const base = 0x100000;
    const { host, vm, npages } = splitSlot('anonymous_thp', 4 * kMiB, base, { memory: 32 * kMiB }, 512);
    host.drain();
    const owned = host.phys.ownedPages(vm.owner);
    vm.invalidateRange(base + 3, base + 4);
    expect(vm.getStats().pages_4k).toBe(npages - 1);
    expect([mapped(vm, base + 2), mapped(vm, base + 3), mapped(vm, base + 4)]).toEqual([true, false, true]);
    expect(host.audit().violations).toEqual([]);
    // Covering the whole PMD range frees the folio (zap_huge_pmd()): 511 SPTEs more go.
    vm.invalidateRange(base, base + 512);
    expect(vm.getStats().pages_4k).toBe(npages - 512);
    host.drain();
    expect(host.phys.ownedPages(vm.owner)).toBe(owned - 512);
    expect(host.audit().violations).toEqual([]);
  });

  it('a slot aliasing the same hugetlb page is zapped too (the notifier works on hva, every slot over it)', () => {
    const host = Host.create({ memory: 32 * kMiB, hugepages2m: 2 });
    const vm = host.createVm();
    const hva = vm.mmap({ size: 2 * kMiB, backing: 'anonymous_hugetlb_2mb' });
    const a = 0x100000;
    const b = 0x200000;
    vm.setUserMemoryRegion2({ slot: 0, flags: 0, guestPhysAddr: a * 4096, memorySize: 2 * kMiB, userspaceAddr: hva });
    vm.setUserMemoryRegion2({ slot: 1, flags: 0, guestPhysAddr: b * 4096, memorySize: 2 * kMiB, userspaceAddr: hva });
    const vcpu = vm.createVcpu();
    expect(vcpu.run(span(a, a + 1), 10)).toBe(1);
    expect(vcpu.run(span(b, b + 1), 10)).toBe(1);
    expect(vm.getStats().pages_2m).toBe(2);
    // One 4K gfn of slot 0: the host drops the whole huge page, which slot 1 maps as well.
    vm.invalidateRange(a + 5, a + 6);
    expect([mapped(vm, a), mapped(vm, b)]).toEqual([false, false]);
    expect(vm.getStats().pages_2m).toBe(0);
    expect(host.audit().violations).toEqual([]);
  });

  it('1G hugetlb split to 4K: invalidating one 4K gfn zaps the whole 1G page', () => {
    const base = 0x40000; // 1 GiB-aligned gfn
    const { host, vm, npages } = splitSlot('anonymous_hugetlb_1gb', 1024 * kMiB, base, { memory: 1088 * kMiB, hugepages1g: 1 }, 262144);
    vm.invalidateRange(base + 12345, base + 12346);
    expect(vm.getStats().pages_4k).toBe(npages - 262144);
    expect(mapped(vm, base)).toBe(false);
    expect(host.audit().violations).toEqual([]);
  });
});
