/**
 * The TDP iterator (tdp_iter.c): a pre-order walk over the SPTEs that map [start, end),
 * stepping down into present non-leaf SPTEs above `minLevel`, sideways within a page, and up
 * when a page is done. Carries level, gfn, the SPTE's word index and its last-read value, as
 * KVM's struct tdp_iter does; every TDP operation is a short loop over it:
 *
 *   for (it.start(root, minLevel, start, end); it.valid && it.gfn < end; it.next()) { … }
 *
 * One instance per thread per use site; it allocates nothing per step.
 */
import { PgLevel, PtLayout, isLastSpte, isShadowPresentPte, levelShift, pagesPerHpage, spteIndex, spteLoadFlags, spteReadPfn } from '../spte.js';

export class TdpIter {
  /** Page-table page at each level (index level - 1). */
  readonly ptPath = new Int32Array(PgLevel.PT64_ROOT_4LEVEL + 1);
  nextLastLevelGfn = 0;
  yieldedGfn = 0;
  rootLevel = PgLevel.PT64_ROOT_4LEVEL;
  minLevel = 1;
  level = PgLevel.PT64_ROOT_4LEVEL;
  gfn = 0;
  /** Word index of the flags word of the current SPTE in the pool. */
  sptep = 0;
  oldFlags = 0;
  oldPfn = 0;
  valid = false;
  yielded = false;

  constructor(public pt: Int32Array) {}

  start(root: number, minLevel: number, startGfn: number): void {
    this.nextLastLevelGfn = startGfn;
    this.rootLevel = PgLevel.PT64_ROOT_4LEVEL;
    this.minLevel = minLevel;
    this.ptPath[this.rootLevel - 1] = root;
    this.restart();
  }

  /**
   * Start at `level` in `table` instead of the root, for one gfn (the fault path with the walker's
   * cached 4K table): only stepDown() may follow, never next().
   */
  startInTable(table: number, level: number, gfn: number): void {
    this.nextLastLevelGfn = gfn;
    this.yielded = false;
    this.minLevel = level;
    this.level = level;
    this.ptPath[level - 1] = table;
    this.gfn = this.roundGfn(gfn, level);
    this.refreshSptep();
    this.valid = true;
  }

  /** tdp_iter_restart(): back to the root at the current position (after yielding mmu_lock). */
  restart(): void {
    this.yielded = false;
    this.yieldedGfn = this.nextLastLevelGfn;
    this.level = this.rootLevel;
    this.gfn = this.roundGfn(this.nextLastLevelGfn, this.level);
    this.refreshSptep();
    this.valid = true;
  }

  /** gfn_round_for_level(); gfns are < 2^31 here, so masks are exact. */
  private roundGfn(gfn: number, level: number): number {
    return gfn & -pagesPerHpage(level);
  }

  refreshSptep(): void {
    this.sptep = this.ptPath[this.level - 1]! * PtLayout.kPtPageWords + spteIndex(this.gfn, this.level) * PtLayout.kSpteWords;
    this.read();
  }

  /**
   * Re-read the SPTE (iter->old_spte = READ_ONCE(*sptep); after a failed cmpxchg KVM refreshes
   * it too). Walks under mmu_lock held for read race with other readers' cmpxchg and with vCPUs
   * setting A/D, so the two words are read as one snapshot (spteReadPfn: the flags load pairs
   * with the publish in tdpMmuSetSpteAtomic; an unchanged flags word vouches for the pfn).
   * A non-present SPTE's pfn word is read as is (an MMIO SPTE keeps its gfn there); installing
   * over a non-present SPTE always takes tdpMmuSetSpteAtomic's freeze-then-publish path.
   */
  read(): void {
    const pt = this.pt;
    const sptep = this.sptep;
    for (;;) {
      const flags = spteLoadFlags(pt, sptep);
      if (!isShadowPresentPte(flags)) {
        this.oldFlags = flags;
        // A plain read, ordered after the flags' acquire load: the pfn word of a non-present SPTE
        // (an MMIO SPTE's gfn) is written before its flags are published, and nothing follows it.
        this.oldPfn = pt[sptep + 1]!;
        return;
      }
      const pfn = spteReadPfn(pt, sptep, flags);
      if (pfn >= 0) {
        this.oldFlags = flags;
        this.oldPfn = pfn;
        return;
      }
    }
  }

  /**
   * Step into the child table of the current present non-leaf SPTE (false at minLevel, or when
   * the SPTE has no child). A fault maps one gfn, so it only ever steps down: kvm_tdp_mmu_map()'s
   * tdp_mmu_for_each_pte() over [gfn, gfn + 1) never moves sideways before it returns.
   */
  stepDown(): boolean {
    if (this.level === this.minLevel) return false;
    // spte_to_child_pt(): only present non-leaf SPTEs have a child.
    if (!isShadowPresentPte(this.oldFlags) || isLastSpte(this.oldFlags, this.level)) return false;
    const child = this.oldPfn;
    this.level--;
    this.ptPath[this.level - 1] = child;
    this.gfn = this.roundGfn(this.nextLastLevelGfn, this.level);
    this.refreshSptep();
    return true;
  }

  private tryStepSide(): boolean {
    if (spteIndex(this.gfn, this.level) === PtLayout.SPTE_ENT_PER_PAGE - 1) return false;
    this.gfn += 1 << levelShift(this.level);
    this.nextLastLevelGfn = this.gfn;
    this.sptep += PtLayout.kSpteWords;
    this.read();
    return true;
  }

  private tryStepUp(): boolean {
    if (this.level === this.rootLevel) return false;
    this.level++;
    this.gfn = this.roundGfn(this.gfn, this.level);
    this.refreshSptep();
    return true;
  }

  /** tdp_iter_next() */
  next(): void {
    if (this.yielded) {
      this.restart();
      return;
    }
    if (this.stepDown()) return;
    do {
      if (this.tryStepSide()) return;
    } while (this.tryStepUp());
    this.valid = false;
  }

  /**
   * Move sideways over the non-present entries after the current one in this table, up to the
   * last one before a present entry, the table's end or `end`: a walk that acts only on present
   * SPTEs (a zap) then visits the same entries it would have, without stepping through each
   * empty one. For walks under mmu_lock held for write only: nothing else writes a non-present
   * SPTE then (faults install under the read side; the CPU's A/D updates touch present leaves),
   * so the entries hopped over are read with plain loads, ordered after the lock's acquire.
   */
  skipNonPresent(end: number): void {
    const pt = this.pt;
    const step = 1 << levelShift(this.level);
    let idx = spteIndex(this.gfn, this.level);
    let sptep = this.sptep;
    let gfn = this.gfn;
    while (idx < PtLayout.SPTE_ENT_PER_PAGE - 1 && gfn + step < end && !isShadowPresentPte(pt[sptep + PtLayout.kSpteWords]!)) {
      sptep += PtLayout.kSpteWords;
      gfn += step;
      idx++;
    }
    if (sptep === this.sptep) return;
    this.sptep = sptep;
    this.gfn = gfn;
    this.nextLastLevelGfn = gfn;
    this.read();
  }

  /** Skip the subtree under the current SPTE (used after replacing it). */
  skipChildren(): void {
    do {
      if (this.tryStepSide()) return;
    } while (this.tryStepUp());
    this.valid = false;
  }
}
