/**
 * The hardware side of TDP: what the CPU's EPT walker does on a TLB miss. It reads the SPTEs
 * from the root down without mmu_lock (the TLB-flush handshake and the epoch keep the pages
 * alive), sets A — and D on a write — with a locked cmpxchg as the CPU does, and reports an EPT
 * violation when a level is not present (or frozen) or the leaf forbids the access.
 */
import { PgLevel, Spte, PtLayout, spteLoadFlags, spteReadPfn } from '../spte.js';

export const enum WalkResult {
  kWalkOk = 0,
  kWalkViolation = 1,
}

/** Result of the last walk on this thread (no allocation per walk). */
export const walkOut = { pfn: 0, flags: 0, level: 0, steps: 0, dirtied: false, presentLeaf: false };

export function eptWalk(pt: Int32Array, root: number, gfn: number, write: boolean): number {
  let page = root;
  let steps = 0;
  for (let level = PgLevel.PT64_ROOT_4LEVEL; level >= 1; level--) {
    const shift = (level - 1) * PtLayout.SPTE_LEVEL_BITS;
    const sptep = page * PtLayout.kPtPageWords + ((gfn >>> shift) & 511) * PtLayout.kSpteWords;
    steps++;
    // The CPU's walker reads each SPTE once, atomically (64 bits). Here: the flags word with an
    // acquire load (ordered after the epoch publish at entry, and pairing with the SPTE's
    // publish), then the pfn, valid only if the flags did not move meanwhile. A value that is
    // stale by the time it is used causes a spurious violation (the fault path re-checks under
    // mmu_lock) or a translation that the pending remote TLB flush drops.
    const flags = spteLoadFlags(pt, sptep);
    if ((flags & Spte.SPTE_MMU_PRESENT_MASK) === 0) {
      walkOut.steps = steps;
      walkOut.presentLeaf = false;
      return WalkResult.kWalkViolation;
    }
    const pfn = spteReadPfn(pt, sptep, flags);
    if (pfn < 0) {
      // Replaced under us: read this level again (the table itself is kept alive by the epoch).
      level++;
      steps--;
      continue;
    }
    if (level === 1 || (flags & Spte.PT_PAGE_SIZE_MASK) !== 0) {
      if (write && (flags & Spte.PT_WRITABLE_MASK) === 0) {
        walkOut.steps = steps;
        walkOut.presentLeaf = true;
        return WalkResult.kWalkViolation;
      }
      const want = write ? flags | Spte.SPTE_ACCESSED | Spte.SPTE_DIRTY : flags | Spte.SPTE_ACCESSED;
      walkOut.dirtied = false;
      if (want !== flags) {
        // Lost a race with a zap/write-protect: re-walk from the root.
        if (Atomics.compareExchange(pt, sptep, flags, want) !== flags) return eptWalk(pt, root, gfn, write);
        walkOut.dirtied = write && (flags & Spte.SPTE_DIRTY) === 0;
      }
      walkOut.pfn = pfn + (gfn & ((1 << shift) - 1));
      walkOut.flags = want;
      walkOut.level = level;
      walkOut.steps = steps;
      return WalkResult.kWalkOk;
    }
    page = pfn;
  }
  walkOut.presentLeaf = false;
  return WalkResult.kWalkViolation;
}
