// A fault holds mmu_lock for read through its vCPU's own indicator (rwlock.ts): the VM's write
// side must drain it. The fault is parked under the lock (hook after kvm_mmu_hugepage_adjust),
// and the VMM takes the write lock: it may get in only after the parked fault left, never while
// the vCPU's indicator still shows the hold. A write side that forgot the vCPUs' indicators (or
// a fault that took the lock on some other word) gets in at once.
import { describe, expect, it } from 'vitest';
import { Runner, config, createMemstressVms, armHook, releaseHook, HookPoint, HookState, VmLayout, VcpuLayout, until } from './fixtures/dist.js';

describe('mmu_lock: the write side drains a vCPU reader', () => {
  it('waits for a fault parked under the read lock', async () => {
    const c = config({ vcpus: 1, bytesPerVcpu: 4 * 2 ** 20, workers: 1 });
    const s = createMemstressVms(c);
    const vm = s.vms[0]!;
    const slot = vm.memslots[0]!;
    armHook(vm, slot.baseGfn, HookPoint.kHookAfterHugepageAdjust);
    const runner = new Runner(s.host, s.vms, { workers: 1, cost: s.cost });
    try {
      const one = { baseGfn: slot.baseGfn, pages: 1, order: 'sequential', writePercent: 100, seed: 1, vm: 0, vcpu: 0, iteration: 1 };
      const p = runner.phase('park', () => one);
      await until(() => Atomics.load(vm.w, VmLayout.kVmHookState) === HookState.kHookParked);
      const vcpuW = vm.vcpuWords[0]!;
      expect(Atomics.load(vcpuW, VcpuLayout.kVcpuMmuLockReader)).toBe(1);
      // The parked fault lets itself go after 200 ms; this thread blocks in the write lock.
      Atomics.store(vm.w, VmLayout.kVmHookTimeoutMs, 200);
      const t0 = performance.now();
      let heldByFault = -1;
      vm.withMmuWriteLock(() => {
        heldByFault = Atomics.load(vcpuW, VcpuLayout.kVcpuMmuLockReader);
      });
      const waited = performance.now() - t0;
      expect(heldByFault).toBe(0);
      expect(Atomics.load(vm.w, VmLayout.kVmHookState)).toBe(HookState.kHookReleased);
      expect(waited).toBeGreaterThan(100);
      await p;
      expect(vm.getStats().pages_4k).toBe(1);
    } finally {
      releaseHook(vm);
      await runner.close();
    }
  });
});
