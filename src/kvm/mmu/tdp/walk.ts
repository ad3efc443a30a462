/**
 * The hardware side of TDP: what the CPU's EPT walker does on a TLB miss. It reads the SPTEs
 * from the root down without mmu_lock (the TLB-flush handshake and the epoch keep the pages
 * alive), sets A — and D on a write — with a locked cmpxchg as the CPU does, and reports an EPT
 * violation when a level is not present (or frozen) or the leaf forbids the access.
 */
import { PgLevel, Spte, PtLayout, spteLoadFlags, spteReadPfn } from '../spte.js';
import { VcpuLayout } from '../../vcpu-layout.js';

export const enum WalkResult {
  kWalkOk = 0,
  kWalkViolation = 1,
}

/** Result of the last walk on this thread (no allocation per walk). */
export const walkOut = { pfn: 0, flags: 0, level: 0, steps: 0, dirtied: false, presentLeaf: false };

/**
 * A walk from the root, or from the 4K table the paging-structure cache `psc` (the vCPU's words,
 * or null) holds for gfn's 2M region. The cache is what x86's PDE caches are: filled by walks,
 * dropped with the TLB by a remote flush (INVEPT). Entries are also dropped when the vCPU
 * publishes a newer epoch: a table unlinked meanwhile is kept alive only while the vCPU stays in
 * the epoch it cached it in (its entries are then frozen or about to be flushed, as a stale
 * PDE-cache entry's would be; a frozen leaf sends the walk back to the root), and may be freed
 * and reused once the vCPU moved on. Op counts are the full walk's:
 * modeled time prices the hardware walk, the cache only saves the emulator's loads.
 */
export function eptWalk(pt: Int32Array, root: number, gfn: number, write: boolean, psc: Int32Array | null = null): number {
  const cached = psc !== null ? pscLeafTable(psc, gfn) : 0;
  if (cached > 0) {
    const sptep = cached * PtLayout.kPtPageWords + (gfn & 511) * PtLayout.kSpteWords;
    const flags = spteLoadFlags(pt, sptep);
    if ((flags & Spte.SPTE_MMU_PRESENT_MASK) !== 0) {
      // A 4K leaf's pfn changes only after a zap (mmu_lock for write), whose remote flush
      // waits for this vCPU to leave guest mode: it cannot move under this guest-mode walk, and
      // the acquire load of the flags orders this read after the pfn's publish.
      return walkLeaf(pt, root, sptep, flags, pt[sptep + 1]!, PgLevel.PG_LEVEL_4K, gfn, write, PgLevel.PT64_ROOT_4LEVEL, psc);
    }
    if (flags !== Spte.FROZEN_SPTE) {
      walkOut.steps = PgLevel.PT64_ROOT_4LEVEL;
      walkOut.presentLeaf = false;
      return WalkResult.kWalkViolation;
    }
    psc![pscEntry(gfn) + VcpuLayout.kPscTag] = 0; // a removed table: walk from the root
  }
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
    if (level === 1 || (flags & Spte.PT_PAGE_SIZE_MASK) !== 0) return walkLeaf(pt, root, sptep, flags, pfn, level, gfn, write, steps, psc);
    if (level === PgLevel.PG_LEVEL_2M && psc !== null) {
      const e = pscEntry(gfn);
      psc[e + VcpuLayout.kPscTag] = (gfn >>> PtLayout.SPTE_LEVEL_BITS) + 1;
      psc[e + VcpuLayout.kPscTable] = pfn;
      psc[e + VcpuLayout.kPscGen] = psc[VcpuLayout.kVcpuPscGen]!;
    }
    page = pfn;
  }
  walkOut.presentLeaf = false;
  return WalkResult.kWalkViolation;
}

/** Word index of gfn's 2M region's entry in the paging-structure cache. */
function pscEntry(gfn: number): number {
  return VcpuLayout.kPscBase + ((gfn >>> PtLayout.SPTE_LEVEL_BITS) & (VcpuLayout.kPscEntries - 1)) * VcpuLayout.kPscWords;
}

/**
 * The 4K table the paging-structure cache holds for gfn's 2M region in the current generation,
 * or 0. Valid for the vCPU that owns `w` until it re-enters guest mode or processes a flush.
 */
export function pscLeafTable(w: Int32Array, gfn: number): number {
  const e = pscEntry(gfn);
  if (w[e + VcpuLayout.kPscTag] !== (gfn >>> PtLayout.SPTE_LEVEL_BITS) + 1 || w[e + VcpuLayout.kPscGen] !== w[VcpuLayout.kVcpuPscGen]) return 0;
  return w[e + VcpuLayout.kPscTable]!;
}

/** The leaf of a walk: permission check, A (and D on a write) set with a locked cmpxchg. */
function walkLeaf(pt: Int32Array, root: number, sptep: number, flags: number, pfn: number, level: number, gfn: number, write: boolean, steps: number, psc: Int32Array | null): number {
  if (write && (flags & Spte.PT_WRITABLE_MASK) === 0) {
    walkOut.steps = steps;
    walkOut.presentLeaf = true;
    return WalkResult.kWalkViolation;
  }
  const want = write ? flags | Spte.SPTE_ACCESSED | Spte.SPTE_DIRTY : flags | Spte.SPTE_ACCESSED;
  walkOut.dirtied = false;
  if (want !== flags) {
    // Lost a race with a zap/write-protect: re-walk from the root.
    if (Atomics.compareExchange(pt, sptep, flags, want) !== flags) return eptWalk(pt, root, gfn, write, psc);
    walkOut.dirtied = write && (flags & Spte.SPTE_DIRTY) === 0;
  }
  walkOut.pfn = pfn + (gfn & ((1 << ((level - 1) * PtLayout.SPTE_LEVEL_BITS)) - 1));
  walkOut.flags = want;
  walkOut.level = level;
  walkOut.steps = steps;
  return WalkResult.kWalkOk;
}
