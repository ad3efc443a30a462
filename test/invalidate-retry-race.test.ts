// A fault resolves its pfn, then an mmu_notifier invalidation of that gfn drops the host page
// before the fault takes mmu_lock: the fault must see the moved mmu_invalidate_seq and retry
// instead of mapping the freed frame. The race is forced with the fault hook, not left to luck.
import { describe, expect, it } from 'vitest';
import { Runner, audit, config, createMemstressVms, memstressStream, armHook, releaseHook, HookPoint, HookState, VmLayout, until, kOp } from './fixtures/dist.js';

describe('invalidate-retry under a racing invalidation', () => {
  it('the parked fault retries and maps the new host page', async () => {
    const c = config({ vcpus: 1, bytesPerVcpu: 64 * 4096, workers: 1 });
    const s = createMemstressVms(c);
    const vm = s.vms[0]!;
    const slot = vm.memslots[0]!;
    const gfn = slot.baseGfn + 7;
    armHook(vm, gfn, HookPoint.kHookAfterFaultin);
    const runner = new Runner(s.host, s.vms, { workers: 1, cost: s.cost });
    try {
      let settled = false;
      const phase = runner.phase('race', (ref) => memstressStream(c, s.layout, ref, 0, 'sequential', 100, 1)).finally(() => (settled = true));
      await until(() => Atomics.load(vm.w, VmLayout.kVmHookState) === HookState.kHookParked || settled);
      expect(settled).toBe(false);
      const before = slot.vma!.lookup(slot.vmaOffset + 7);
      expect(before).toBeGreaterThanOrEqual(0); // the fault populated the host page before parking
      const seq0 = vm.w[VmLayout.kVmInvSeq]!;
      vm.invalidateRange(gfn, gfn + 1); // zap + drop the host page + mmu_invalidate_seq++
      expect(slot.vma!.lookup(slot.vmaOffset + 7)).toBe(-1);
      releaseHook(vm);
      const p = await phase;
      expect(vm.w[VmLayout.kVmInvSeq]!).toBe(seq0 + 1);
      expect(p.counters[kOp.fault_retry]).toBeGreaterThanOrEqual(1);
      const after = slot.vma!.lookup(slot.vmaOffset + 7);
      expect(after).toBeGreaterThanOrEqual(0);
      const a = audit(s.host, s.vms);
      expect(a.violations).toEqual([]);
      expect(vm.getStats().pages_4k).toBe(64);
    } finally {
      await runner.close();
    }
  });
});
