/**
 * SPTE updates and their side effects, after tdp_mmu.c: tdp_mmu_set_spte_atomic() (under
 * mmu_lock read, cmpxchg), tdp_mmu_iter_set_spte() (under mmu_lock write), handle_changed_spte()
 * (page stats, removed page tables) and handle_removed_pt() (freeze every child, then retire the
 * page for deferred free).
 *
 * Two-word SPTEs: when the pfn word changes, the flags word is first frozen with cmpxchg (which
 * also claims the entry against other writers), then the pfn is written and the new flags are
 * published; a flags-only change is a single cmpxchg.
 */
import { Spte, PtLayout, isLastSpte, isShadowPresentPte, pagesPerHpage, withNextPfnGen } from '../spte.js';
import { kvmUpdatePageStats } from '../page-stats.js';
import { count, countN } from '../../../metrics/counters.js';
import { Op } from '../../../metrics/ops.js';
import type { TdpIter } from './iter.js';
import type { Vm } from '../../vm.js';

/**
 * tdp_mmu_set_spte_atomic(): replace iter's SPTE if it still holds iter.oldFlags/oldPfn.
 * On failure refreshes the iterator's snapshot and returns false (the caller retries).
 */
export function tdpMmuSetSpteAtomic(vm: Vm, it: TdpIter, newFlags: number, newPfn: number): boolean {
  const pt = it.pt;
  const m = vm.ctx.metrics;
  count(m, Op.spte_cmpxchg);
  // Flags only when the pfn stays and the old SPTE is present: a pfn behind a non-present
  // flags word vouches for nothing, so an install always freezes and publishes it anew.
  if (newPfn === it.oldPfn && isShadowPresentPte(it.oldFlags)) {
    if (Atomics.compareExchange(pt, it.sptep, it.oldFlags, newFlags) !== it.oldFlags) {
      count(m, Op.spte_cmpxchg_fail);
      it.read();
      return false;
    }
  } else {
    if (Atomics.compareExchange(pt, it.sptep, it.oldFlags, Spte.FROZEN_SPTE) !== it.oldFlags) {
      count(m, Op.spte_cmpxchg_fail);
      it.read();
      return false;
    }
    // KVM's cmpxchg64 compares the pfn too; here the frozen entry is ours, so check it now: a
    // present SPTE whose pfn moved (same flags, new table or page: an ABA across a split and a
    // recovery) is put back untouched and the caller retries on a fresh snapshot.
    if (isShadowPresentPte(it.oldFlags) && Atomics.load(pt, it.sptep + 1) !== it.oldPfn) {
      Atomics.store(pt, it.sptep, it.oldFlags);
      count(m, Op.spte_cmpxchg_fail);
      it.read();
      return false;
    }
    // Publish: pfn, then flags with the next pfn generation, both seq-cst (the pair
    // spteLoadFlags/spteReadPfn observes). A plain pfn store could become visible before the
    // freeze on arm64 (a store after a store-release exclusive is not ordered after it), letting
    // a reader pair old flags with the new pfn.
    newFlags = withNextPfnGen(newFlags, it.oldFlags);
    Atomics.store(pt, it.sptep + 1, newPfn);
    Atomics.store(pt, it.sptep, newFlags);
  }
  handleChangedSpte(vm, it.gfn, it.level, it.oldFlags, it.oldPfn, newFlags, true);
  it.oldFlags = newFlags;
  it.oldPfn = newPfn;
  return true;
}

/** tdp_mmu_iter_set_spte(): a plain write, legal only with mmu_lock held for write. */
export function tdpMmuIterSetSpte(vm: Vm, it: TdpIter, newFlags: number, newPfn: number): void {
  const pt = it.pt;
  count(vm.ctx.metrics, Op.spte_write);
  if (newPfn !== it.oldPfn) {
    Atomics.store(pt, it.sptep, Spte.FROZEN_SPTE);
    Atomics.store(pt, it.sptep + 1, newPfn);
    newFlags = withNextPfnGen(newFlags, it.oldFlags);
  }
  Atomics.store(pt, it.sptep, newFlags);
  handleChangedSpte(vm, it.gfn, it.level, it.oldFlags, it.oldPfn, newFlags, false);
  it.oldFlags = newFlags;
  it.oldPfn = newPfn;
}

/**
 * handle_changed_spte(): leaf counts (kvm_update_page_stats) and, when a present non-leaf goes
 * away or is replaced, the removed page table.
 */
export function handleChangedSpte(vm: Vm, gfn: number, level: number, oldFlags: number, oldPfn: number, newFlags: number, shared: boolean): void {
  const wasPresent = isShadowPresentPte(oldFlags);
  const isPresent = isShadowPresentPte(newFlags);
  const wasLeaf = wasPresent && isLastSpte(oldFlags, level);
  const isLeaf = isPresent && isLastSpte(newFlags, level);
  if (wasLeaf !== isLeaf) kvmUpdatePageStats(vm, level, isLeaf ? 1 : -1);
  if (wasPresent && !wasLeaf && (isLeaf || !isPresent)) handleRemovedPt(vm, oldPfn, level - 1, gfn, shared);
  // A dirty leaf going away dirties its folio under the 'on-zap' policy.
  if (wasLeaf && !isLeaf) vm.onSpteCleaned(oldFlags, oldPfn);
}

/**
 * handle_removed_pt(): freeze every child so concurrent walkers retry, account the leaves that
 * go with it, recurse into child tables, and retire the page (freed after an epoch).
 */
export function handleRemovedPt(vm: Vm, page: number, level: number, baseGfn: number, shared: boolean): void {
  const pt = vm.pool.pt;
  const m = vm.ctx.metrics;
  const step = pagesPerHpage(level);
  for (let i = 0; i < PtLayout.SPTE_ENT_PER_PAGE; i++) {
    const sptep = page * PtLayout.kPtPageWords + i * PtLayout.kSpteWords;
    let old: number;
    if (shared) {
      // Another thread may hold the child frozen mid-update; wait for it to publish.
      for (;;) {
        old = Atomics.exchange(pt, sptep, Spte.FROZEN_SPTE);
        if (old !== Spte.FROZEN_SPTE) break;
      }
    } else {
      old = Atomics.load(pt, sptep);
      if (!isShadowPresentPte(old)) continue;
      Atomics.store(pt, sptep, Spte.FROZEN_SPTE);
    }
    if (!isShadowPresentPte(old)) continue;
    const pfn = Atomics.load(pt, sptep + 1);
    handleChangedSpte(vm, baseGfn + i * step, level, old, pfn, Spte.FROZEN_SPTE, shared);
  }
  countN(m, Op.spte_write, PtLayout.SPTE_ENT_PER_PAGE);
  count(m, Op.pt_page_free);
  vm.pool.retire(page);
}
