/**
 * Shadow-MMU SPTE changes (mmu_spte_set, mmu_spte_update, drop_spte / mmu_spte_clear_track_bits,
 * drop_parent_pte), always with mmu_lock held for write. vCPUs' hardware walks still read SPTEs
 * and set A/D with a cmpxchg without the lock, so present SPTEs change only by an atomic RMW of
 * the flags word (KVM: mmu_spte_update_no_track uses xchg when the SPTE has volatile bits), and
 * a new SPTE publishes its pfn word before its flags (the observe side is walk.ts's
 * flags -> pfn -> flags loads).
 */
import { PtLayout, Spte, isLastSpte, isShadowPresentPte, withNextPfnGen } from '../spte.js';
import { kvmUpdatePageStats } from '../page-stats.js';
import { count } from '../../../metrics/counters.js';
import { Op } from '../../../metrics/ops.js';
import { rmapRemove } from './rmap-ops.js';
import type { Vm } from '../../vm.js';

/** Clear `bits` in a present SPTE's flags (cmpxchg loop); true if the SPTE changed. */
export function spteClearFlags(pt: Int32Array, sptep: number, bits: number): boolean {
  const at = sptep * PtLayout.kSpteWords;
  for (;;) {
    const f = Atomics.load(pt, at);
    if (!isShadowPresentPte(f) || (f & bits) === 0) return false;
    if (Atomics.compareExchange(pt, at, f, f & ~bits) === f) return true;
  }
}

/** mmu_spte_set() on a non-present SPTE: the pfn word first, then the flags (the publish). */
export function shadowSetSpte(pt: Int32Array, sptep: number, flags: number, pfn: number): void {
  const at = sptep * PtLayout.kSpteWords;
  const old = Atomics.load(pt, at);
  Atomics.store(pt, at + 1, pfn);
  Atomics.store(pt, at, withNextPfnGen(flags, old));
}

/**
 * drop_spte(): make the SPTE non-present. A leaf leaves its gfn's rmap (the gfn is the one
 * recorded at install, sp->shadowed_translation) and the page stats; a dirty one dirties its
 * folio. A non-leaf drops the child page's parent link (drop_parent_pte). The caller flushes.
 */
export function shadowDropSpte(vm: Vm, sptep: number, level: number): void {
  const pt = vm.pool.pt;
  const at = sptep * PtLayout.kSpteWords;
  const old = Atomics.exchange(pt, at, 0);
  if (!isShadowPresentPte(old)) return;
  const pfn = pt[at + 1]!;
  count(vm.ctx.metrics, Op.spte_write);
  if (isLastSpte(old, level)) {
    rmapRemove(vm, vm.sp.xlatGfn(sptep), level, sptep);
    kvmUpdatePageStats(vm, level, -1);
    if ((old & Spte.SPTE_DIRTY) !== 0) vm.onSpteCleaned(old, pfn);
    return;
  }
  vm.sp.removeParent(pfn, sptep);
}


