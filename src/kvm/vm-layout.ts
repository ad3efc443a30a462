/**
 * Layout of a VM's shared words (one Int32 SAB). Each group that different threads write sits on
 * its own 128-byte line (kPadWords Int32 slots per line).
 *
 *   line 0   mmu_lock (rwlock words)
 *   line 1   mmu_invalidate_seq, mmu_invalidate_in_progress, range start/end (gfns)
 *   line 2   page-table pool: lock, free-stack top, pages in use, retire ring head/tail
 *   line 3   pages_4k      line 4  pages_2m      line 5  pages_1g
 *   line 6   remote_tlb_flush, remote_tlb_flush_requests
 *   line 7   test hooks (a gfn at which a fault parks, and the handshake word)
 *   line 8   root, memslot generation, nr_memslots_dirty_logging, dirty caps, flags
 */
import { kPadWords } from '../shm/arena.js';

export const kVmMmuLock = 0;

export const kVmInvSeq = kPadWords * 1;
export const kVmInvInProgress = kVmInvSeq + 1;
export const kVmInvRangeStart = kVmInvSeq + 2;
export const kVmInvRangeEnd = kVmInvSeq + 3;

export const kVmPtLock = kPadWords * 2;
export const kVmPtFreeTop = kVmPtLock + 1;
export const kVmPtInUse = kVmPtLock + 2;
export const kVmPtRetireHead = kVmPtLock + 3;
export const kVmPtRetireTail = kVmPtLock + 4;
export const kVmPtCapacity = kVmPtLock + 5;

export const kVmStatPages4k = kPadWords * 3;
export const kVmStatPages2m = kPadWords * 4;
export const kVmStatPages1g = kPadWords * 5;
export const kVmStatRemoteTlbFlush = kPadWords * 6;
export const kVmStatRemoteTlbFlushRequests = kVmStatRemoteTlbFlush + 1;

export const kVmHookGfn = kPadWords * 7;
/** 0 idle, 1 armed, 2 a fault reached the hook and waits, 3 released */
export const kVmHookState = kVmHookGfn + 1;
/** Which hook: see kHook* in invalidate.ts. */
export const kVmHookPoint = kVmHookGfn + 2;

export const kVmRoot = kPadWords * 8;
export const kVmMemslotGen = kVmRoot + 1;
export const kVmNrSlotsDirtyLogging = kVmRoot + 2;
export const kVmDirtyCaps = kVmRoot + 3;
export const kVmDirtyRingSize = kVmRoot + 4;
export const kVmOnline = kVmRoot + 5;
/** Guest stores that landed on a frame the host no longer maps for that gfn (oracle, stamps on). */
export const kVmStaleWrites = kVmRoot + 6;
export const kVmStaleWriteGfn = kVmRoot + 7;
/** Dirty-logging strategy bits (dirty/strategy.ts). */
export const kVmStrategy = kVmRoot + 8;
/** Bumped by KVM_RESET_DIRTY_RINGS so vCPUs parked on a full ring can look again. */
export const kVmRingResetGen = kVmRoot + 9;

export const kVmWords = kPadWords * 9;

/** Stat word for a mapping level (kvm_update_page_stats). */
export function pageStatWord(level: number): number {
  return kVmStatPages4k + (level - 1) * kPadWords;
}
