// A flags-only KVM_SET_USER_MEMORY_REGION2 that turns dirty logging on waits, as
// kvm_swap_active_memslots() does with synchronize_srcu(), for every fault that read the slot's
// old flags before kvm_mmu_slot_apply_flags() runs. Otherwise a fault that decided "not logging:
// map 2M" just before the flip installs its huge writable SPTE after apply_flags' split /
// write-protect walk went by, and the guest's later writes to that 2M page are never logged.
// The fault is parked (hook) right after kvm_mmu_hugepage_adjust() read the flags.
import { describe, expect, it } from 'vitest';
import {
  KVM_MEM_LOG_DIRTY_PAGES, Runner, audit, config, createMemstressVms, memstressStream, armHook, releaseHook, HookPoint, HookState,
  VmLayout, until,
} from './fixtures/dist.js';

function popcount(bm: Uint32Array): number {
  let n = 0;
  for (const w of bm) for (let x = w; x !== 0; x &= x - 1) n++;
  return n;
}

describe('enabling dirty logging under a fault that read the old slot flags', () => {
  it('waits for that fault, so the 2M page it maps is split and later writes are logged', async () => {
    const c = config({ vcpus: 1, bytesPerVcpu: 4 * 2 ** 20, backing: 'anonymous_hugetlb_2mb', workers: 1 });
    const s = createMemstressVms(c);
    const vm = s.vms[0]!;
    const slot = vm.memslots[0]!;
    const region = { slot: slot.slotId, flags: slot.flags, guestPhysAddr: slot.baseGfn * 4096, memorySize: slot.npages * 4096, userspaceAddr: slot.userspaceAddr };
    armHook(vm, slot.baseGfn, HookPoint.kHookAfterHugepageAdjust);
    const runner = new Runner(s.host, s.vms, { workers: 1, cost: s.cost });
    try {
      let settled = false;
      // One store, to the page that parks: writes that race the enable ioctl itself are not
      // this test's business (KVM logs only what is written after it returned).
      const one = { baseGfn: slot.baseGfn, pages: 1, order: 'sequential', writePercent: 100, seed: 1, vm: 0, vcpu: 0, iteration: 1 };
      const p1 = runner.phase('before', () => one).finally(() => (settled = true));
      await until(() => Atomics.load(vm.w, VmLayout.kVmHookState) === HookState.kHookParked || settled);
      expect(settled).toBe(false);
      expect(vm.getStats().pages_2m).toBe(0); // parked before mapping anything
      // This thread blocks in synchronize_srcu(): the parked fault must go on by itself.
      Atomics.store(vm.w, VmLayout.kVmHookTimeoutMs, 100);
      vm.setUserMemoryRegion2({ ...region, flags: KVM_MEM_LOG_DIRTY_PAGES });
      expect(Atomics.load(vm.w, VmLayout.kVmHookState)).toBe(HookState.kHookReleased);
      await p1;
      // apply_flags ran after the fault: its 2M mapping was split (eager split), none is left.
      expect(vm.getStats().pages_2m).toBe(0);
      vm.getDirtyLog(region.slot); // harvest and re-arm (legacy GET)
      await runner.phase('after', (ref) => memstressStream(c, s.layout, ref, 0, 'sequential', 100, 2));
      const bm = vm.getDirtyLog(region.slot);
      const missing: number[] = [];
      for (let i = 0; i < slot.npages; i++) if ((bm[i >>> 5]! & (1 << (i & 31))) === 0) missing.push(i);
      expect(missing).toEqual([]);
      expect(popcount(bm)).toBe(slot.npages);
      expect(audit(s.host, s.vms).violations).toEqual([]);
    } finally {
      releaseHook(vm);
      await runner.close();
    }
  });
});
