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
import { VmLayout } from './vm-layout.js';
import type { Vm } from './vm.js';

const enum InvRange {
  kInvalidRangeStart = 0x7fffffff,
}

/** Call with mmu_lock held for write. */
export function kvmMmuInvalidateBegin(vm: Vm): void {
  const w = vm.w;
  if (Atomics.add(w, VmLayout.kVmInvInProgress, 1) === 0) {
    Atomics.store(w, VmLayout.kVmInvRangeStart, InvRange.kInvalidRangeStart);
    Atomics.store(w, VmLayout.kVmInvRangeEnd, 0);
  }
}

export function kvmMmuInvalidateRangeAdd(vm: Vm, start: number, end: number): void {
  const w = vm.w;
  if (Atomics.load(w, VmLayout.kVmInvRangeStart) === InvRange.kInvalidRangeStart) {
    Atomics.store(w, VmLayout.kVmInvRangeStart, start);
    Atomics.store(w, VmLayout.kVmInvRangeEnd, end);
  } else {
    // Concurrent invalidations: the union only grows (false positives are fine, misses are not).
    Atomics.store(w, VmLayout.kVmInvRangeStart, Math.min(Atomics.load(w, VmLayout.kVmInvRangeStart), start));
    Atomics.store(w, VmLayout.kVmInvRangeEnd, Math.max(Atomics.load(w, VmLayout.kVmInvRangeEnd), end));
  }
}

/** Call with mmu_lock held for write. */
export function kvmMmuInvalidateEnd(vm: Vm): void {
  // The new sequence must be visible before in_progress drops, so a fault that sees
  // in_progress == 0 also sees the bumped sequence.
  Atomics.add(vm.w, VmLayout.kVmInvSeq, 1);
  Atomics.sub(vm.w, VmLayout.kVmInvInProgress, 1);
}

/**
 * mmu_invalidate_retry_gfn_unsafe(): the lockless pre-check made right after the sequence
 * snapshot and before resolving the pfn, so a fault racing an invalidation of its gfn backs off
 * without contending mmu_lock. The sequence itself was just read, so only in_progress matters.
 */
export function mmuInvalidateRetryGfnUnsafe(vm: Vm, gfn: number): boolean {
  // READ_ONCE in KVM: a hint only; the check under mmu_lock is the one that counts.
  const w = vm.w;
  return w[VmLayout.kVmInvInProgress] !== 0 && gfn >= w[VmLayout.kVmInvRangeStart]! && gfn < w[VmLayout.kVmInvRangeEnd]!;
}

/**
 * is_page_fault_stale() = mmu_invalidate_retry_gfn() here (the TDP MMU has one root, no obsolete
 * roots): an invalidation covering gfn is in progress, or one completed since the snapshot.
 * Called with mmu_lock held for read: the sequence, in_progress and the range are written only
 * under the write lock, so these reads cannot race and the lock's acquire ordered them — the
 * plain reads of the unlocked check are exact here.
 */
export function isPageFaultStale(vm: Vm, mmuSeq: number, gfn: number): boolean {
  return mmuInvalidateRetryGfnUnsafe(vm, gfn) || vm.w[VmLayout.kVmInvSeq] !== mmuSeq;
}

export const enum HookPoint {
  /** The pfn is resolved, mmu_lock not yet taken. */
  kHookAfterFaultin = 1,
  /** Under mmu_lock (read): kvm_mmu_hugepage_adjust() has read the slot's flags, nothing is mapped yet. */
  kHookAfterHugepageAdjust = 2,
}
export const enum HookState {
  kHookIdle = 0,
  kHookArmed = 1,
  kHookParked = 2,
  kHookReleased = 3,
}

/** Park a fault at `point` if a test armed the hook for this gfn; one load when unarmed. */
export function maybeParkAtHook(vm: Vm, gfn: number, point: number): void {
  // A plain read: the hook is armed long before the racing fault starts; no fence needed here.
  if (vm.w[VmLayout.kVmHookState] === HookState.kHookArmed) parkAtHook(vm, gfn, point);
}

function parkAtHook(vm: Vm, gfn: number, point: number): void {
  const w = vm.w;
  if (Atomics.load(w, VmLayout.kVmHookGfn) !== gfn || Atomics.load(w, VmLayout.kVmHookPoint) !== point) return;
  if (Atomics.compareExchange(w, VmLayout.kVmHookState, HookState.kHookArmed, HookState.kHookParked) !== HookState.kHookArmed) return;
  Atomics.notify(w, VmLayout.kVmHookState);
  const parkedAt = Date.now();
  while (Atomics.load(w, VmLayout.kVmHookState) === HookState.kHookParked) {
    // Re-read each time: a test may set the timeout while the fault is parked.
    const timeout = Atomics.load(w, VmLayout.kVmHookTimeoutMs);
    if (timeout > 0 && Date.now() >= parkedAt + timeout) {
      Atomics.compareExchange(w, VmLayout.kVmHookState, HookState.kHookParked, HookState.kHookReleased);
      break;
    }
    Atomics.wait(w, VmLayout.kVmHookState, HookState.kHookParked, 5);
  }
}

/**
 * Arm the hook (test side). With `releaseAfterMs` (or kVmHookTimeoutMs stored later), the parked
 * fault goes on by itself that long after it parked: for a test whose next VMM call blocks until
 * the fault is done (synchronize_srcu), so the test thread cannot release it.
 */
export function armHook(vm: Vm, gfn: number, point: number, releaseAfterMs = 0): void {
  Atomics.store(vm.w, VmLayout.kVmHookGfn, gfn);
  Atomics.store(vm.w, VmLayout.kVmHookPoint, point);
  Atomics.store(vm.w, VmLayout.kVmHookTimeoutMs, releaseAfterMs);
  Atomics.store(vm.w, VmLayout.kVmHookState, HookState.kHookArmed);
}

export function releaseHook(vm: Vm): void {
  Atomics.store(vm.w, VmLayout.kVmHookState, HookState.kHookReleased);
  Atomics.notify(vm.w, VmLayout.kVmHookState);
}
