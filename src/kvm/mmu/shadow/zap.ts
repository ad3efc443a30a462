/**
 * Zapping shadow pages (mmu.c): kvm_mmu_prepare_zap_page() unlinks a page from its parents and
 * its children (their SPTEs dropped, rmaps emptied), unaccounts the guest table it shadowed and
 * takes it off the hash and active_mmu_pages; kvm_mmu_commit_zap_page() flushes remote TLBs and
 * only then frees the pages (here: retired to the pool's epoch, as RCU frees KVM's). Zap-all
 * walks active_mmu_pages (memslot deletion with the zap-all quirk, VM teardown), which is the
 * shadow MMU's way of tearing down: through the shadow-page list, not by gfn.
 *
 * Roots are never freed while a vCPU uses them: a zapped root loses its children and stays
 * linked (KVM marks it invalid and the vCPU reloads; here the root of a guest CR3 is reused).
 */
import { PgLevel, PtLayout, isLastSpte, isShadowPresentPte } from '../spte.js';
import { count } from '../../../metrics/counters.js';
import { Op } from '../../../metrics/ops.js';
import { updateGfnDisallowLpageCount } from '../lpage.js';
import { kvmFlushRemoteTlbs } from '../../requests.js';
import { ShadowCtl, SpInfo, SpRole } from './mmu-page.js';
import { shadowDropSpte } from './spte-ops.js';
import { gfnToRmap } from './rmap-ops.js';
import type { Memslot } from '../../memslot.js';
import type { Vm } from '../../vm.js';

/**
 * account_shadowed() / unaccount_shadowed(): the guest table's gfn is (no longer) write-tracked
 * (__kvm_write_track_add_gfn / _remove_gfn: gfn_write_track and lpage_info). KVM tracks only the
 * gfns of tables above 4K, letting last-level ones go unsync; this model never unsyncs, so every
 * indirect page tracks its gfn, and the count is what mmu_try_to_unsync_pages() checks first.
 */
export function accountShadowed(vm: Vm, gfn: number, delta: number): void {
  const slot = vm.lookupMemslotAny(gfn);
  count(vm.ctx.metrics, Op.write_track);
  vm.sp.ctl[ShadowCtl.kIndirectPages]! += delta;
  if (slot === null) return;
  const head = gfnToRmap(vm, slot, gfn, PgLevel.PG_LEVEL_4K);
  if (head < 0) throw new Error(`BUG: account_shadowed on slot ${slot.id} without rmaps (gfn_write_track)`);
  vm.rmaps.updateWriteTrack(head, delta);
  // kvm_mmu_gfn_disallow_lpage(): no huge mapping may cover a guest page table (its stores
  // must fault), counted in lpage_info beside the slot's own disallows.
  updateGfnDisallowLpageCount(slot.lpage, slot.baseGfn, gfn, delta);
}

/** kvm_gfn_is_write_tracked(): does a shadow page write-track gfn (of `slot`)? O(1), no hash walk. */
export function gfnIsWriteTracked(vm: Vm, slot: Memslot, gfn: number): boolean {
  const head = gfnToRmap(vm, slot, gfn, PgLevel.PG_LEVEL_4K);
  return head >= 0 && vm.rmaps.writeTrackCount(head) !== 0;
}

/** mmu_page_zap_pte(): drop one SPTE of `sp`; a child page left without parents is zapped too if direct. */
function mmuPageZapPte(vm: Vm, sp: number, index: number, level: number, invalid: number[]): void {
  const pt = vm.pool.pt;
  const sptep = sp * PtLayout.SPTE_ENT_PER_PAGE + index;
  const f = Atomics.load(pt, sptep * PtLayout.kSpteWords);
  if (!isShadowPresentPte(f)) return;
  if (isLastSpte(f, level)) {
    shadowDropSpte(vm, sptep, level);
    return;
  }
  const child = pt[sptep * PtLayout.kSpteWords + 1]!;
  shadowDropSpte(vm, sptep, level);
  // An orphaned direct page shadows nothing and maps nothing reachable: zap it now (KVM leaves
  // it to be recycled; dropping it keeps the MMU's memory what is reachable).
  const s = vm.sp;
  if ((s.role(child) & SpRole.kDirect) !== 0 && s.get(child, SpInfo.kParent) === 0 && s.get(child, SpInfo.kParents) === 0) {
    kvmMmuPrepareZapPage(vm, child, invalid);
  }
}

/**
 * kvm_mmu_prepare_zap_page(): returns whether anything was zapped. The page goes on `invalid`
 * (freed by commit after the flush) unless it is a root in use.
 */
export function kvmMmuPrepareZapPage(vm: Vm, sp: number, invalid: number[]): boolean {
  const s = vm.sp;
  if (s.get(sp, SpInfo.kActive) === 0) return false;
  const role = s.role(sp);
  const level = role & SpRole.kLevelMask;
  s.bumpStat(ShadowCtl.kStatShadowZapped);
  count(vm.ctx.metrics, Op.pt_page_free);
  // kvm_mmu_page_unlink_children()
  for (let i = 0; i < PtLayout.SPTE_ENT_PER_PAGE; i++) mmuPageZapPte(vm, sp, i, level, invalid);
  const isRoot = s.get(sp, SpInfo.kRootCount) > 0;
  // kvm_mmu_unlink_parents()
  const parents = vm.shadowScratch;
  s.parents(sp, parents);
  for (const p of parents) shadowDropSpte(vm, p, level + 1);
  if (isRoot) return true;
  if ((role & SpRole.kDirect) === 0) accountShadowed(vm, s.gfn(sp), -1);
  s.unlink(sp);
  invalid.push(sp);
  return true;
}

/** kvm_mmu_commit_zap_page(): flush, then the pages go (after the epoch: walkers may hold them). */
export function kvmMmuCommitZapPage(vm: Vm, invalid: number[], flushed = false): void {
  if (invalid.length === 0) return;
  if (!flushed) kvmFlushRemoteTlbs(vm);
  for (const sp of invalid) vm.pool.retire(sp);
  invalid.length = 0;
}

/**
 * kvm_mmu_zap_all(): every shadow page through active_mmu_pages. Returns whether anything was
 * zapped (the caller holds mmu_lock for write; this commits, flush included).
 */
export function kvmShadowZapAll(vm: Vm): boolean {
  const s = vm.sp;
  const invalid: number[] = [];
  // Snapshot the list (cold): zapping a page also zaps orphaned direct children off the list.
  const all: number[] = [];
  for (let sp = s.ctl[ShadowCtl.kListHead]!; sp !== 0; sp = s.get(sp, SpInfo.kListNext)) all.push(sp);
  let any = false;
  for (const sp of all) if (kvmMmuPrepareZapPage(vm, sp, invalid)) any = true;
  if (invalid.length > 0) kvmMmuCommitZapPage(vm, invalid);
  else if (any) kvmFlushRemoteTlbs(vm);
  return any;
}

