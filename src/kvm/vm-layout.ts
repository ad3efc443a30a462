/**
 * Layout of a VM's shared words (one Int32 SAB). Each group that different threads write sits on
 * its own 128-byte line (kPadWords Int32 slots per line).
 *
 *   line 0   mmu_lock (rwlock words; each reader's indicator is on its own line: the vCPU's
 *            words, or line 9 for the VMM)
 *   line 1   mmu_invalidate_seq, mmu_invalidate_in_progress, range start/end (gfns)
 *   line 2   page-table pool: lock, free-stack top, pages in use, retire list counts/ends, capacity
 *   line 3   the VMM's shard of pages_4k, pages_2m, pages_1g (each vCPU has its own, stats.ts)
 *   line 6   remote_tlb_flush, remote_tlb_flush_requests
 *   line 7   test hooks (a gfn at which a fault parks, and the handshake word)
 *   line 8   root, memslot generation, nr_memslots_dirty_logging, dirty caps, flags, VMM-exclusive
 *   line 9   the VMM's mmu_lock reader indicator
 */
import { Arena } from '../shm/arena.js';

export const enum VmLayout {
  kVmMmuLock = 0,
  kVmInvSeq = Arena.kPadWords * 1,
  kVmInvInProgress = VmLayout.kVmInvSeq + 1,
  kVmInvRangeStart = VmLayout.kVmInvSeq + 2,
  kVmInvRangeEnd = VmLayout.kVmInvSeq + 3,
  kVmPtLock = Arena.kPadWords * 2,
  kVmPtFreeTop = VmLayout.kVmPtLock + 1,
  kVmPtInUse = VmLayout.kVmPtLock + 2,
  kVmPtRetireHead = VmLayout.kVmPtLock + 3,
  kVmPtRetireTail = VmLayout.kVmPtLock + 4,
  /** Pages the pool has grown to (announced before the new pages become allocatable). */
  kVmPtCapacity = VmLayout.kVmPtLock + 5,
  /** The list of retired pages (PtInfo.kPtInfoRetireNext links): first and last page, 0 if empty. */
  kVmPtRetireFirst = VmLayout.kVmPtLock + 6,
  kVmPtRetireLast = VmLayout.kVmPtLock + 7,
  kVmStatPages4k = Arena.kPadWords * 3,
  kVmStatPages2m = VmLayout.kVmStatPages4k + 1,
  kVmStatPages1g = VmLayout.kVmStatPages4k + 2,
  kVmStatRemoteTlbFlush = Arena.kPadWords * 6,
  kVmStatRemoteTlbFlushRequests = VmLayout.kVmStatRemoteTlbFlush + 1,
  kVmHookGfn = Arena.kPadWords * 7,
  /** 0 idle, 1 armed, 2 a fault reached the hook and waits, 3 released */
  kVmHookState = VmLayout.kVmHookGfn + 1,
  /** Which hook: see kHook* in invalidate.ts. */
  kVmHookPoint = VmLayout.kVmHookGfn + 2,
  /** > 0: a parked fault releases itself after this many ms (for tests whose VMM call blocks). */
  kVmHookTimeoutMs = VmLayout.kVmHookGfn + 3,
  kVmRoot = Arena.kPadWords * 8,
  kVmMemslotGen = VmLayout.kVmRoot + 1,
  kVmNrSlotsDirtyLogging = VmLayout.kVmRoot + 2,
  kVmDirtyCaps = VmLayout.kVmRoot + 3,
  kVmDirtyRingSize = VmLayout.kVmRoot + 4,
  kVmOnline = VmLayout.kVmRoot + 5,
  /** Guest stores that landed on a frame the host no longer maps for that gfn (oracle, stamps on). */
  kVmStaleWrites = VmLayout.kVmRoot + 6,
  kVmStaleWriteGfn = VmLayout.kVmRoot + 7,
  /** Dirty-logging strategy bits (dirty/strategy.ts). */
  kVmStrategy = VmLayout.kVmRoot + 8,
  /** Bumped by KVM_RESET_DIRTY_RINGS so vCPUs parked on a full ring can look again. */
  kVmRingResetGen = VmLayout.kVmRoot + 9,
  /** 1 while the VMM runs an update that needs every vCPU out of KVM_RUN (run-exclusion.ts). */
  kVmVmmExclusive = VmLayout.kVmRoot + 10,
  /** Bumped when VMAs or vCPUs are added: a worker re-reads them from a newer handle. */
  kVmLayoutGen = VmLayout.kVmRoot + 11,
  /** kvm->slots_lock (a spinlock: memslot updates and attribute changes, from any thread). */
  kVmSlotsLock = VmLayout.kVmRoot + 12,
  /** kvm->arch.hypercall_exit_enabled (KVM_CAP_EXIT_HYPERCALL). */
  kVmHypercallExit = VmLayout.kVmRoot + 13,
  /** kvm->slots_arch_lock (a spinlock): lazy rmap allocation against memslot updates. */
  kVmSlotsArchLock = VmLayout.kVmRoot + 14,
  /** The VMM thread's read holds of mmu_lock (rwlock.ts reader indicator). */
  kVmMmuLockVmmReader = Arena.kPadWords * 9,
  kVmWords = Arena.kPadWords * 10,
}

/** The VMM shard's word of the page stat for a mapping level (mmu/page-stats.ts). */
export function pageStatWord(level: number): number {
  return VmLayout.kVmStatPages4k + level - 1;
}
