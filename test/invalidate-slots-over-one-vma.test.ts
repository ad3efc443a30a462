// The mmu_notifier finds the memslots over an invalidated hva range without scanning every slot
// (kvm_for_each_memslot_in_hva_range(), an interval tree in KVM; here a per-VMA array sorted by
// first page and the VMA's longest slot): memslot_perf_test's unmap runs 32768 MADV_DONTNEEDs
// over thousands of slots that share one mapping. Every slot over the range is still zapped —
// one that starts many pages earlier, an alias over the same pages — and no other.
import { describe, expect, it } from 'vitest';
import { Host } from '../src/index.js';
import { eptWalk, WalkResult } from '../src/kvm/mmu/tdp/walk.js';
import type { Vm } from '../src/kvm/vm.js';

function mapped(vm: Vm, gfn: number): boolean {
  return eptWalk(vm.pool.pt, vm.root, gfn, false) === WalkResult.kWalkOk;
}

describe('invalidation of an hva range finds the slots over it through the VMA index', () => {
  it('zaps a short slot, a long alias that starts 60 pages earlier, and nothing of the neighbours', () => {
    const host = Host.create({ memory: 32 * 2 ** 20 });
    const vm = host.createVm();
    const hva = vm.mmap({ size: 256 * 4096, backing: 'anonymous' });
    // 64 slots of 4 pages over the whole mapping (gfn 0x1000 + 4i), then one 256-page alias.
    for (let i = 0; i < 64; i++) vm.setUserMemoryRegion2({ slot: 1 + i, flags: 0, guestPhysAddr: (0x1000 + 4 * i) * 4096, memorySize: 4 * 4096, userspaceAddr: hva + 4 * i * 4096 });
    vm.setUserMemoryRegion2({ slot: 100, flags: 0, guestPhysAddr: 0x8000 * 4096, memorySize: 256 * 4096, userspaceAddr: hva });
    const vcpu = vm.createVcpu();
    let g = 0;
    const gfns = [...Array.from({ length: 256 }, (_, i) => 0x1000 + i), ...Array.from({ length: 256 }, (_, i) => 0x8000 + i)];
    expect(vcpu.run({ iteration: 1, write: true, next: () => (g < gfns.length ? gfns[g++]! : -1) }, 1024)).toBe(512);
    expect(vm.getStats().pages_4k).toBe(512);
    // Page 61 of the mapping: slot 16's page 1 (gfn 0x103d) and the alias's page 61 (gfn 0x803d).
    vm.invalidateRange(0x103d, 0x103e);
    expect([mapped(vm, 0x103d), mapped(vm, 0x803d)]).toEqual([false, false]);
    expect([mapped(vm, 0x103c), mapped(vm, 0x103e), mapped(vm, 0x803c), mapped(vm, 0x803e)]).toEqual([true, true, true, true]);
    expect(vm.getStats().pages_4k).toBe(510);
    // The same page through the alias's gfn: nothing left to zap, nothing else goes.
    vm.invalidateRange(0x803d, 0x803e);
    expect(vm.getStats().pages_4k).toBe(510);
    // After the alias is deleted (and everything zapped: KVM_X86_QUIRK_SLOT_ZAP_ALL), an
    // invalidation over a 4-page slot still finds it.
    vm.setUserMemoryRegion2({ slot: 100, flags: 0, guestPhysAddr: 0x8000 * 4096, memorySize: 0, userspaceAddr: hva });
    g = 0;
    expect(vcpu.run({ iteration: 1, write: true, next: () => (g < 256 ? gfns[g++]! : -1) }, 1024)).toBe(256);
    vm.invalidateRange(0x1004, 0x1008);
    expect([0x1003, 0x1004, 0x1007, 0x1008].map((x) => mapped(vm, x))).toEqual([true, false, false, true]);
    expect(host.audit().violations).toEqual([]);
  });
});
