/**
 * mmu_notifier invalidation and the fault-retry protocol (kvm_main.c / mmu.c):
 *   kvm_mmu_invalidate_begin()      mmu_invalidate_in_progress++ (range reset)
 *   kvm_mmu_invalidate_range_add()  widen [range_start, range_end)
 *   kvm_mmu_invalidate_end()        mmu_invalidate_seq++, then in_progress--
 * A fault snapshots the sequence before resolving its pfn; under mmu_lock it is stale when an
 * invalidation covering its gfn is in progress or the sequence moved (is_page_fault_stale()),
 * and it retries instead of installing a pfn the host may already have dropped.
 *
 * Test hooks: a fault can be parked at a named point for a chosen gfn so a race is reproduced on
 * purpose (tests arm it through the VM's shared words, see test/fixtures).
 */
import { kVmHookGfn, kVmHookPoint, kVmHookState, kVmInvInProgress, kVmInvRangeEnd, kVmInvRangeStart, kVmInvSeq } from './vm-layout.js';
import type { Vm } from './vm.js';

const kInvalidRangeStart = 0x7fffffff;

/** Call with mmu_lock held for write. */
export function kvmMmuInvalidateBegin(vm: Vm): void {
  const w = vm.w;
  if (Atomics.add(w, kVmInvInProgress, 1) === 0) {
    Atomics.store(w, kVmInvRangeStart, kInvalidRangeStart);
    Atomics.store(w, kVmInvRangeEnd, 0);
  }
}

export function kvmMmuInvalidateRangeAdd(vm: Vm, start: number, end: number): void {
  const w = vm.w;
  if (Atomics.load(w, kVmInvRangeStart) === kInvalidRangeStart) {
    Atomics.store(w, kVmInvRangeStart, start);
    Atomics.store(w, kVmInvRangeEnd, end);
  } else {
    // Concurrent invalidations: the union only grows (false positives are fine, misses are not).
    Atomics.store(w, kVmInvRangeStart, Math.min(Atomics.load(w, kVmInvRangeStart), start));
    Atomics.store(w, kVmInvRangeEnd, Math.max(Atomics.load(w, kVmInvRangeEnd), end));
  }
}

/** Call with mmu_lock held for write. */
export function kvmMmuInvalidateEnd(vm: Vm): void {
  // The new sequence must be visible before in_progress drops, so a fault that sees
  // in_progress == 0 also sees the bumped sequence.
  Atomics.add(vm.w, kVmInvSeq, 1);
  Atomics.sub(vm.w, kVmInvInProgress, 1);
}

/**
 * mmu_invalidate_retry_gfn_unsafe(): the lockless pre-check made right after the sequence
 * snapshot and before resolving the pfn, so a fault racing an invalidation of its gfn backs off
 * without contending mmu_lock. The sequence itself was just read, so only in_progress matters.
 */
export function mmuInvalidateRetryGfnUnsafe(vm: Vm, gfn: number): boolean {
  // READ_ONCE in KVM: a hint only; the check under mmu_lock is the one that counts.
  const w = vm.w;
  return w[kVmInvInProgress] !== 0 && gfn >= w[kVmInvRangeStart]! && gfn < w[kVmInvRangeEnd]!;
}

/**
 * is_page_fault_stale() = mmu_invalidate_retry_gfn() here (the TDP MMU has one root, no obsolete
 * roots): an invalidation covering gfn is in progress, or one completed since the snapshot.
 * Called with mmu_lock held for read: the sequence, in_progress and the range are written only
 * under the write lock, so these reads cannot race and the lock's acquire ordered them — the
 * plain reads of the unlocked check are exact here.
 */
export function isPageFaultStale(vm: Vm, mmuSeq: number, gfn: number): boolean {
  return mmuInvalidateRetryGfnUnsafe(vm, gfn) || vm.w[kVmInvSeq] !== mmuSeq;
}

export const kHookAfterFaultin = 1;
export const kHookIdle = 0;
export const kHookArmed = 1;
export const kHookParked = 2;
export const kHookReleased = 3;

/** Park a fault at `point` if a test armed the hook for this gfn; one load when unarmed. */
export function maybeParkAtHook(vm: Vm, gfn: number, point: number): void {
  const w = vm.w;
  // A plain read: the hook is armed long before the racing fault starts; no fence needed here.
  if (w[kVmHookState] !== kHookArmed) return;
  if (Atomics.load(w, kVmHookGfn) !== gfn || Atomics.load(w, kVmHookPoint) !== point) return;
  if (Atomics.compareExchange(w, kVmHookState, kHookArmed, kHookParked) !== kHookArmed) return;
  Atomics.notify(w, kVmHookState);
  while (Atomics.load(w, kVmHookState) === kHookParked) Atomics.wait(w, kVmHookState, kHookParked, 50);
}

/** Arm the hook (test side). */
export function armHook(vm: Vm, gfn: number, point: number): void {
  Atomics.store(vm.w, kVmHookGfn, gfn);
  Atomics.store(vm.w, kVmHookPoint, point);
  Atomics.store(vm.w, kVmHookState, kHookArmed);
}

export function releaseHook(vm: Vm): void {
  Atomics.store(vm.w, kVmHookState, kHookReleased);
  Atomics.notify(vm.w, kVmHookState);
}
