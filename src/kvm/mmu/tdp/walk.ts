/**
 * The hardware side of TDP: what the CPU's EPT walker does on a TLB miss. It reads the SPTEs
 * from the root down without mmu_lock (the TLB-flush handshake and the epoch keep the pages
 * alive), sets A — and D on a write — with a locked cmpxchg as the CPU does, and reports an EPT
 * violation when a level is not present (or frozen) or the leaf forbids the access.
 */
import {
  PT64_ROOT_4LEVEL, PT_WRITABLE_MASK, SPTE_ACCESSED, SPTE_DIRTY, SPTE_MMU_PRESENT_MASK, PT_PAGE_SIZE_MASK,
  SPTE_LEVEL_BITS, kPtPageWords, kSpteWords,
} from '../spte.js';

export const kWalkOk = 0;
export const kWalkViolation = 1;

/** Result of the last walk on this thread (no allocation per walk). */
export const walkOut = { pfn: 0, flags: 0, level: 0, steps: 0, dirtied: false, presentLeaf: false };

export function eptWalk(pt: Int32Array, root: number, gfn: number, write: boolean): number {
  let page = root;
  let steps = 0;
  for (let level = PT64_ROOT_4LEVEL; level >= 1; level--) {
    const shift = (level - 1) * SPTE_LEVEL_BITS;
    const sptep = page * kPtPageWords + ((gfn >>> shift) & 511) * kSpteWords;
    steps++;
    // Plain reads, as the CPU's walker: a stale value at worst causes a spurious violation (the
    // fault path re-checks under mmu_lock) or a translation that the pending flush will drop.
    const flags = pt[sptep]!;
    if ((flags & SPTE_MMU_PRESENT_MASK) === 0) {
      walkOut.steps = steps;
      walkOut.presentLeaf = false;
      return kWalkViolation;
    }
    const pfn = pt[sptep + 1]!;
    if (level === 1 || (flags & PT_PAGE_SIZE_MASK) !== 0) {
      if (write && (flags & PT_WRITABLE_MASK) === 0) {
        walkOut.steps = steps;
        walkOut.presentLeaf = true;
        return kWalkViolation;
      }
      const want = write ? flags | SPTE_ACCESSED | SPTE_DIRTY : flags | SPTE_ACCESSED;
      walkOut.dirtied = false;
      if (want !== flags) {
        // Lost a race with a zap/write-protect: re-walk from the root.
        if (Atomics.compareExchange(pt, sptep, flags, want) !== flags) return eptWalk(pt, root, gfn, write);
        walkOut.dirtied = write && (flags & SPTE_DIRTY) === 0;
      }
      walkOut.pfn = pfn + (gfn & ((1 << shift) - 1));
      walkOut.flags = want;
      walkOut.level = level;
      walkOut.steps = steps;
      return kWalkOk;
    }
    page = pfn;
  }
  walkOut.presentLeaf = false;
  return kWalkViolation;
}
