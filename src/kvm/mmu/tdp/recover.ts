/**
 * Recovering huge mappings when dirty logging is disabled (kvm_mmu_recover_huge_pages):
 *
 *  - zap-collapsible (before 6.13, kvm_tdp_mmu_zap_collapsible_sptes): a page table that could
 *    be a huge leaf is zapped with tdp_mmu_zap_spte_atomic — frozen, flushed (one remote TLB
 *    flush per table), cleared — and later faults rebuild the huge mapping;
 *  - in-place (6.13+, recover_huge_pages_range): the table is replaced by a huge leaf built from
 *    one of its present children (make_huge_spte), with TLB flushes batched at yield points and
 *    once at the end.
 * Both run under mmu_lock held for read, with vCPUs possibly running (dirty_log_perf_test -e).
 */
import { Spte, PgLevel, isLastSpte, isShadowPresentPte, pagesPerHpage, PtLayout, spteLoadFlags, spteReadPfn } from '../spte.js';
import { count } from '../../../metrics/counters.js';
import { Op } from '../../../metrics/ops.js';
import { kvmFlushRemoteTlbs } from '../../requests.js';
import { handleChangedSpte, tdpMmuSetSpteAtomic } from './spte-change.js';
import { kvmMmuMaxMappingLevel } from './fault.js';
import type { Memslot } from '../../memslot.js';
import type { Vm } from '../../vm.js';

/** Recoveries between yield points (tdp_mmu_iter_cond_resched flushes pending TLB work there). */
export const kRecoverYieldBatch = 1024;

function collapsible(slot: Memslot, gfn: number, level: number, flags: number): boolean {
  if (level > PgLevel.PG_LEVEL_1G || !isShadowPresentPte(flags) || isLastSpte(flags, level)) return false;
  // A table whose range is not inside the slot cannot be made huge (and lpage_info would not cover it).
  if (gfn < slot.baseGfn || gfn + pagesPerHpage(level) > slot.endGfn) return false;
  return kvmMmuMaxMappingLevel(slot, gfn) >= level;
}

/** Returns the number of remote TLB flushes it issued. */
export function tdpZapCollapsibleSptes(vm: Vm, slot: Memslot): number {
  const it = vm.iter;
  const m = vm.ctx.metrics;
  let flushes = 0;
  for (it.start(vm.root, PgLevel.PG_LEVEL_2M, slot.baseGfn); it.valid && it.gfn < slot.endGfn; it.next()) {
    while (collapsible(slot, it.gfn, it.level, it.oldFlags)) {
      // tdp_mmu_zap_spte_atomic(): freeze so nothing is installed before the flush, flush, clear.
      count(m, Op.spte_cmpxchg);
      if (Atomics.compareExchange(it.pt, it.sptep, it.oldFlags, Spte.FROZEN_SPTE) !== it.oldFlags) {
        count(m, Op.spte_cmpxchg_fail);
        it.read();
        continue;
      }
      kvmFlushRemoteTlbs(vm);
      flushes++;
      Atomics.store(it.pt, it.sptep, 0);
      handleChangedSpte(vm, it.gfn, it.level, it.oldFlags, it.oldPfn, 0, true);
      it.oldFlags = 0;
      count(m, Op.recover_huge);
      break;
    }
  }
  return flushes;
}

/** Returns the number of remote TLB flushes it issued. */
export function tdpRecoverHugePages(vm: Vm, slot: Memslot): number {
  const it = vm.iter;
  const m = vm.ctx.metrics;
  let flushes = 0;
  let pending = 0;
  for (it.start(vm.root, PgLevel.PG_LEVEL_2M, slot.baseGfn); it.valid && it.gfn < slot.endGfn; it.next()) {
    if (pending >= kRecoverYieldBatch) {
      kvmFlushRemoteTlbs(vm);
      flushes++;
      pending = 0;
    }
    while (collapsible(slot, it.gfn, it.level, it.oldFlags)) {
      const leaf = firstPresentLeaf(vm, it.oldPfn, it.level - 1, it.gfn);
      if (leaf === null) break;
      const flags = leaf.flags | Spte.PT_PAGE_SIZE_MASK;
      const pfn = leaf.pfn - (leaf.gfn - it.gfn);
      if (!tdpMmuSetSpteAtomic(vm, it, flags, pfn)) continue;
      count(m, Op.recover_huge);
      pending++;
      break;
    }
  }
  if (pending > 0) {
    kvmFlushRemoteTlbs(vm);
    flushes++;
  }
  return flushes;
}

const leafOut = { flags: 0, pfn: 0, gfn: 0 };

/**
 * tdp_mmu_make_huge_spte()'s search: the first present leaf under a table. Under mmu_lock held
 * for read, vCPUs may fault into the table meanwhile: each SPTE is read as a two-word snapshot
 * (spteLoadFlags/spteReadPfn, retried if its flags moved).
 */
function firstPresentLeaf(vm: Vm, page: number, level: number, baseGfn: number): typeof leafOut | null {
  const pt = vm.pool.pt;
  const step = pagesPerHpage(level);
  for (let i = 0; i < PtLayout.SPTE_ENT_PER_PAGE; i++) {
    const sptep = page * PtLayout.kPtPageWords + i * PtLayout.kSpteWords;
    const flags = spteLoadFlags(pt, sptep);
    if (!isShadowPresentPte(flags)) continue;
    const pfn = spteReadPfn(pt, sptep, flags);
    if (pfn < 0) {
      i--;
      continue;
    }
    if (isLastSpte(flags, level)) {
      leafOut.flags = flags & ~Spte.PT_PAGE_SIZE_MASK;
      leafOut.pfn = pfn;
      leafOut.gfn = baseGfn + i * step;
      return leafOut;
    }
    const r = firstPresentLeaf(vm, pfn, level - 1, baseGfn + i * step);
    if (r !== null) return r;
  }
  return null;
}
