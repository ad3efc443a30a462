// What each conversion strategy does to contents (conversion-vmm.ts) and to modeled results:
//   in-place keeps the page (one folio, shareability flipped): a store made while private reads
//   back through the VMM's mapping after the page is shared, and the guest's shared store is
//   what it finds when the page is private again;
//   split-and-double-allocate gives the other copy: the private copy is punched on the way to
//   shared (its frame stamp cleared) and the shared copy dropped on the way back, so the page
//   reads zero after each conversion.
// And conversion-storm on one worker repeats exactly: counts, modeled times, modeled histograms.
import { describe, expect, it } from 'vitest';
import { findScenario, parseFlags, quietIo } from './fixtures/dist.js';
import { stripWall } from './fixtures/strip-wall.js';
import { Host } from '../src/host/host.js';
import { Vm } from '../src/kvm/vm.js';
import { KVM_X86_SW_PROTECTED_VM } from '../src/kvm/guest_memfd.js';
import { KVM_MEMORY_ATTRIBUTE_PRIVATE } from '../src/kvm/attributes.js';
import { KVM_MEM_GUEST_MEMFD } from '../src/kvm/memslot.js';
import { FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, GUEST_MEMFD_FLAG_MMAP } from '../src/gmem/gmem-file.js';
import { hostFault } from '../src/host/mm.js';
import type { AccessSource } from '../src/kvm/vcpu.js';
import { kMiB, threadCtx } from './fixtures/vm-ctx.js';

function store(gfn: number, iteration: number): AccessSource {
  let done = false;
  return { iteration, write: true, next: () => (done ? -1 : ((done = true), gfn)) };
}

function setup(inPlace: boolean) {
  const host = Host.create({ memory: 64 * kMiB, hugepages2m: 4, stamps: true });
  const ctx = threadCtx(host);
  const vm = Vm.create(host, 0, ctx, { type: KVM_X86_SW_PROTECTED_VM, attributes: inPlace ? 'gmem' : 'vm' });
  const fd = vm.createGuestMemfd({ size: 4 * kMiB, backing: 'hugetlb-2m', flags: inPlace ? GUEST_MEMFD_FLAG_MMAP : 0 });
  const hva = vm.mmap({ size: 4 * kMiB, backing: 'anonymous' });
  vm.setUserMemoryRegion2({ slot: 0, flags: KVM_MEM_GUEST_MEMFD, guestPhysAddr: 0, memorySize: 4 * kMiB, userspaceAddr: hva, guestMemfd: fd, guestMemfdOffset: 0 });
  if (!inPlace) vm.setMemoryAttributes({ address: 0, size: 4 * kMiB, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE });
  if (inPlace) fd.mmap({ shared: true });
  return { host, ctx, vm, fd, vcpu: vm.createVcpu() };
}

describe('content semantics of the conversion strategies', () => {
  it('in-place: one folio, the contents survive both ways', () => {
    const { host, ctx, vm, fd, vcpu } = setup(true);
    const gfn = 7;
    expect(vcpu.run(store(gfn, 41), 1, null)).toBe(1);
    const pfn = fd.file.lookup(gfn);
    expect(host.frames.readStampIteration(pfn)).toBe(41);
    expect(fd.setMemoryAttributes2(ctx.hostThread, { offset: gfn * 4096, size: 4096, attributes: 0 })).toBe(-1);
    // The VMM reads the page the guest wrote while it was private: same frame, same stamp.
    expect(fd.hostAccess(ctx.hostThread, gfn * 4096, false)).toBe(pfn);
    expect(host.frames.readStampIteration(pfn)).toBe(41);
    expect(vcpu.run(store(gfn, 42), 1, null)).toBe(1);
    fd.munmap(gfn * 4096, 4096);
    expect(fd.setMemoryAttributes2(ctx.hostThread, { offset: gfn * 4096, size: 4096, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE })).toBe(-1);
    expect(fd.file.lookup(gfn)).toBe(pfn);
    expect(host.frames.readStampIteration(pfn)).toBe(42);
    ctx.hostThread.drain();
  });

  it('split-and-double-allocate: the other copy, zero after each conversion', () => {
    const { host, ctx, vm, fd, vcpu } = setup(false);
    const gfn = 7;
    expect(vcpu.run(store(gfn, 41), 1, null)).toBe(1);
    const priv = fd.file.lookup(gfn);
    expect(host.frames.readStampIteration(priv)).toBe(41);
    // To shared: attribute, then the private copy punched (the 2M folio splits; its piece is stranded, zeroed).
    vm.setMemoryAttributes({ address: gfn * 4096, size: 4096, attributes: 0 });
    fd.fallocate(ctx.hostThread, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, gfn * 4096, 4096);
    expect(fd.file.lookup(gfn)).toBe(-1);
    expect(host.frames.readStampIteration(priv)).toBe(0);
    const slot = vm.memslots[0]!;
    const shared = hostFault(ctx.hostThread, slot.vma!, slot.vmaOffset + gfn);
    expect(shared).not.toBe(priv);
    expect(host.frames.readStampIteration(shared)).toBe(0);
    expect(vcpu.run(store(gfn, 42), 1, null)).toBe(1);
    expect(host.frames.readStampIteration(shared)).toBe(42);
    // Back to private: attribute, then the shared copy dropped; the private page comes back zeroed.
    vm.setMemoryAttributes({ address: gfn * 4096, size: 4096, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE });
    vm.discardSharedGfns(slot, gfn, gfn + 1);
    expect(slot.vma!.lookup(slot.vmaOffset + gfn)).toBe(-1);
    expect(vcpu.run({ iteration: -1, write: true, next: (() => { let d = false; return () => (d ? -1 : ((d = true), gfn)); })() }, 1, null)).toBe(1);
    expect(host.frames.readStampIteration(fd.file.lookup(gfn))).toBe(0);
  });
});

describe('conversion-storm on one worker repeats exactly', () => {
  for (const strategy of ['in-place', 'split-and-double-allocate']) {
    it(strategy, async () => {
      const s = findScenario('conversion-storm')!;
      const run = async () => {
        const f = parseFlags(s.flags, ['-v', '2', '-b', '8M', '--backing', 'hugetlb-2m', '--conversion', strategy, '--mode', 'random', '--max-range', '4', '--conversions', '32', '--rounds', '2', '--workers', '1']);
        s.check!(f);
        return s.run(f, quietIo);
      };
      const a = await run();
      const b = await run();
      expect(a.audit.violations).toEqual([]);
      expect(a.metrics.conversions).toBe(2 * 32 * 2 * 2);
      expect(stripWall(b)).toEqual(stripWall(a));
    }, 60_000);
  }
});

describe('conversion-storm accounting per VM and NUMA node', () => {
  it('guest_memfd private + shared equals the file pages; RSS sees only the VMM mappings and host-mapped pages', async () => {
    const s = findScenario('conversion-storm')!;
    const f = parseFlags(s.flags, ['--vms', '2', '-v', '2', '-b', '4M', '--backing', 'hugetlb-2m', '--numa-nodes', '2', '--conversion', 'split-and-double-allocate', '--conversions', '8', '--rounds', '1', '--workers', '1']);
    s.check!(f);
    const r = (await s.run(f, quietIo)) as { accounting: Record<string, number>[]; audit: { violations: unknown[] }; memory: unknown };
    expect(r.audit.violations).toEqual([]);
    // Each VM's guest_memfd follows its preferred node (VM id % nodes), so each VM has one node row.
    expect(r.accounting.map((a) => [a.vm, a.node])).toEqual([[0, 0], [1, 1]]);
    for (const a of r.accounting) {
      expect(a.gmemPrivate! + a.gmemShared! + a.stranded!).toBeLessThanOrEqual(2 * 1024);
      expect(a.gmemPrivate).toBeGreaterThan(0);
      // Private guest_memfd memory is not in the RSS view.
      expect(a.rss).toBe(a.vmaRss! + a.gmemHostMapped!);
    }
  }, 60_000);
});
