// The dirty ring (virt/kvm/dirty_ring.c): writes push entries, harvest collects exactly the pages
// written, KVM_RESET_DIRTY_RINGS resets exactly as many entries as were harvested (the
// dirty_log_test.c assertion) and re-arms write protection; a ring at its soft limit makes
// KVM_RUN exit with KVM_EXIT_DIRTY_RING_FULL until the VMM harvests and resets.
import { describe, expect, it } from 'vitest';
import { Host, KVM_MEM_LOG_DIRTY_PAGES } from '../src/index.js';

const kBase = 4096;
const kPages = 8192; // 32 MiB of 4K pages
const kEntries = 4096; // 65536 bytes / 16
const kSoftLimit = kEntries - 64; // wrprot tracking: only KVM_DIRTY_RING_RSVD_ENTRIES reserved
const KVM_EXIT_DIRTY_RING_FULL = 31;

function writes(gfns: readonly number[]) {
  let i = 0;
  return { iteration: 1, write: true, next: () => (i < gfns.length ? gfns[i++]! : -1) };
}

function fixture() {
  const host = Host.create({ memory: 96 * 2 ** 20 });
  const vm = host.createVm({ strategy: { tracking: 'wrprot' } });
  vm.enableCap('KVM_CAP_DIRTY_LOG_RING', kEntries * 16);
  const hva = vm.mmap({ size: kPages * 4096, backing: 'anonymous' });
  vm.setUserMemoryRegion2({ slot: 1, flags: KVM_MEM_LOG_DIRTY_PAGES, guestPhysAddr: kBase * 4096, memorySize: kPages * 4096, userspaceAddr: hva });
  const vcpu = vm.createVcpu();
  return { host, vm, vcpu };
}

function harvest(vm: ReturnType<typeof fixture>['vm']) {
  const seen: Array<[number, number]> = [];
  const n = vm.harvestDirtyRings((slot, offset) => seen.push([slot, offset]));
  return { n, seen };
}

describe('dirty ring: harvest and reset counts', () => {
  it('harvest hands exactly the written pages; reset returns the harvested count, then 0', () => {
    const { host, vm, vcpu } = fixture();
    const offs = [0, 1, 2, 63, 64, 65, 200, 4000, 8191, 130, 129];
    // Some pages written twice in the run: the second write goes through a writable SPTE.
    expect(vcpu.run(writes([...offs, 1, 63, 8191].map((o) => kBase + o)), 100)).toBe(14);
    const { n, seen } = harvest(vm);
    expect(n).toBe(offs.length);
    expect(seen).toHaveLength(offs.length);
    expect(seen.every(([slot]) => slot === 1)).toBe(true);
    expect(seen.map(([, o]) => o).sort((a, b) => a - b)).toEqual([...offs].sort((a, b) => a - b));
    // Nothing new: a second harvest finds nothing.
    expect(harvest(vm).n).toBe(0);
    expect(vm.resetDirtyRings()).toBe(offs.length);
    expect(vm.resetDirtyRings()).toBe(0);
    expect(host.audit().ok).toBe(true);
  });

  it('after reset the pages are write-protected again: rewriting them pushes new entries', () => {
    const { vm, vcpu } = fixture();
    // Out of order, with backward steps inside 64 pages, so reset must coalesce both ways.
    const offs = [10, 8, 9, 70, 7, 100, 40, 5000, 4990, 6000];
    expect(vcpu.run(writes(offs.map((o) => kBase + o)), 100)).toBe(offs.length);
    expect(harvest(vm).n).toBe(offs.length);
    // Before reset the pages stay writable: rewriting pushes nothing and takes no fault.
    const s0 = vcpu.getStats();
    expect(vcpu.run(writes(offs.map((o) => kBase + o)), 100)).toBe(offs.length);
    expect(vcpu.getStats().pf_taken).toBe(s0.pf_taken);
    expect(harvest(vm).n).toBe(0);
    expect(vm.resetDirtyRings()).toBe(offs.length);
    // Every reset page is write-protected again: each rewrite is a fast page fault and one entry.
    expect(vcpu.run(writes(offs.map((o) => kBase + o)), 100)).toBe(offs.length);
    expect(vcpu.getStats().pf_fast - s0.pf_fast).toBe(offs.length);
    expect(vcpu.getStats().pf_taken - s0.pf_taken).toBe(offs.length);
    const h = harvest(vm);
    expect(h.n).toBe(offs.length);
    expect(h.seen.map(([, o]) => o)).toEqual(offs);
    expect(vm.resetDirtyRings()).toBe(offs.length);
    // Rewrite a subset: only those fault and are reported.
    const again = [8, 70, 4990];
    expect(vcpu.run(writes(again.map((o) => kBase + o)), 100)).toBe(3);
    expect(vcpu.getStats().pf_fast - s0.pf_fast).toBe(offs.length + 3);
    const h2 = harvest(vm);
    expect(h2.n).toBe(3);
    expect(h2.seen.map(([, o]) => o)).toEqual(again);
    expect(vm.resetDirtyRings()).toBe(3);
  });

  it('a ring at its soft limit exits with KVM_EXIT_DIRTY_RING_FULL; after harvest + reset the vCPU continues', () => {
    const { host, vm, vcpu } = fixture();
    const total = 5000;
    let g = kBase;
    const stream = { iteration: 1, write: true, next: () => (g < kBase + total ? g++ : -1) };
    // The 4032nd entry reaches the soft limit. As in KVM, the vCPU exits before the store that
    // pushed it retires (it is retried on the next KVM_RUN): 4031 accesses retired.
    expect(vcpu.run(stream, 1 << 20)).toBe(kSoftLimit - 1);
    expect(vcpu.pendingExit).toBe(KVM_EXIT_DIRTY_RING_FULL);
    expect(vcpu.harnessStats().dirty_ring_full_exits).toBe(1);
    expect(g - kBase).toBe(kSoftLimit);
    // Without a reset the vCPU cannot run: it exits again at once.
    expect(vcpu.run(stream, 1 << 20)).toBe(0);
    expect(vcpu.pendingExit).toBe(KVM_EXIT_DIRTY_RING_FULL);
    expect(vcpu.harnessStats().dirty_ring_full_exits).toBe(2);
    // Harvest + reset: exactly the soft limit's worth of entries, the first 4032 pages.
    const h = harvest(vm);
    expect(h.n).toBe(kSoftLimit);
    const offsets = h.seen.map(([, o]) => o).sort((a, b) => a - b);
    expect(offsets[0]).toBe(0);
    expect(offsets[kSoftLimit - 1]).toBe(kSoftLimit - 1);
    expect(new Set(offsets).size).toBe(kSoftLimit);
    expect(vm.resetDirtyRings()).toBe(kSoftLimit);
    // The interrupted store retires first, then the rest of the stream runs to completion.
    expect(vcpu.run(stream, 1 << 20)).toBe(total - kSoftLimit + 1);
    expect(vcpu.pendingExit).toBe(0);
    expect(vcpu.harnessStats().dirty_ring_full_exits).toBe(2);
    // The reset re-armed page 4031 too, so its retried store faults and pushes it again.
    const h2 = harvest(vm);
    expect(h2.n).toBe(total - kSoftLimit + 1);
    expect(Math.min(...h2.seen.map(([, o]) => o))).toBe(kSoftLimit - 1);
    expect(vm.resetDirtyRings()).toBe(total - kSoftLimit + 1);
    expect(host.audit().ok).toBe(true);
  });
});
