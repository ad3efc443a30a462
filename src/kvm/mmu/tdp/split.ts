/**
 * Huge page splitting (tdp_mmu_split_huge_page): fill a fresh child table with 512 SPTEs that
 * map the same memory with the same permissions, then swap it in for the huge SPTE. The
 * translation does not change, so no TLB flush is needed.
 */
import { PtLayout, Spte, makeSmallSpteFlags, pagesPerHpage, isLargePte, isShadowPresentPte } from '../spte.js';
import { kvmUpdatePageStats } from '../page-stats.js';
import { count, countN } from '../../../metrics/counters.js';
import { Op } from '../../../metrics/ops.js';
import { tdpMmuSetSpteAtomic, tdpMmuIterSetSpte } from './spte-change.js';
import type { TdpIter } from './iter.js';
import type { Vm } from '../../vm.js';

/** Fill `sp` with the children of the huge SPTE the iterator holds. */
export function fillSplitChildren(vm: Vm, it: TdpIter, sp: number): void {
  const pt = vm.pool.pt;
  const childLevel = it.level - 1;
  const flags = makeSmallSpteFlags(it.oldFlags, childLevel);
  const step = pagesPerHpage(childLevel);
  const base = sp * PtLayout.kPtPageWords;
  for (let i = 0; i < PtLayout.SPTE_ENT_PER_PAGE; i++) {
    pt[base + i * PtLayout.kSpteWords + 1] = it.oldPfn + i * step;
    pt[base + i * PtLayout.kSpteWords] = flags;
  }
  vm.pool.setInfo(sp, childLevel, it.gfn);
  countN(vm.ctx.metrics, Op.spte_write, PtLayout.SPTE_ENT_PER_PAGE);
}

/**
 * Split the huge SPTE at the iterator into `sp`. Returns true on success; on a lost cmpxchg
 * (shared) the caller owns `sp` again and must clear it before reuse.
 */
export function tdpMmuSplitHugePage(vm: Vm, it: TdpIter, sp: number, shared: boolean): boolean {
  fillSplitChildren(vm, it, sp);
  const level = it.level;
  if (shared) {
    if (!tdpMmuSetSpteAtomic(vm, it, Spte.kNonLeafFlags, sp)) return false;
  } else {
    tdpMmuIterSetSpte(vm, it, Spte.kNonLeafFlags, sp);
  }
  // The children were never "installed" one by one; account them in one go as KVM does.
  kvmUpdatePageStats(vm, level - 1, PtLayout.SPTE_ENT_PER_PAGE);
  count(vm.ctx.metrics, Op.split_huge);
  return true;
}

/** Clear a child table that lost its race, so it can go back to the cache. */
export function clearSp(vm: Vm, sp: number): void {
  vm.pool.pt.fill(0, sp * PtLayout.kPtPageWords, (sp + 1) * PtLayout.kPtPageWords);
}

/**
 * Eager page splitting over [start, end) (tdp_mmu_split_huge_pages_root): split every huge leaf
 * above `targetLevel`, top-down (a 1G page becomes 2M pages, which are split in turn). Runs under
 * mmu_lock for read at enable (shared) and for write in CLEAR. Returns the number of splits.
 */
export function tdpSplitHugePagesRange(vm: Vm, start: number, end: number, targetLevel: number, shared: boolean): number {
  const it = vm.iter;
  let splits = 0;
  for (it.start(vm.root, targetLevel + 1, start); it.valid && it.gfn < end; it.next()) {
    for (;;) {
      if (!isShadowPresentPte(it.oldFlags) || !isLargePte(it.oldFlags) || it.level <= targetLevel) break;
      const sp = vm.takeVmmPage();
      if (tdpMmuSplitHugePage(vm, it, sp, shared)) {
        splits++;
        break;
      }
      clearSp(vm, sp);
      vm.returnVmmPage(sp);
    }
  }
  return splits;
}
