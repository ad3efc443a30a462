/**
 * Arming dirty tracking on SPTEs (tdp_mmu.c): write-protect leaves (wrprot_gfn_range,
 * kvm_tdp_mmu_wrprot_slot), clear D bits (clear_dirty_gfn_range), and the per-64-page masked
 * forms CLEAR_DIRTY_LOG and ring reset use (clear_dirty_pt_masked).
 *
 * W and D are volatile: a vCPU's walker may set D (or the fast path W) at any moment, so every
 * change is a cmpxchg loop on the flags word, as KVM's atomic fetch_and for such SPTEs. Dropping
 * W keeps MMU-writable, so the fast page fault can restore it without mmu_lock; the caller
 * flushes TLBs before the ioctl returns whenever this reports a change.
 */
import { PgLevel, Spte, PtLayout, isLastSpte, isShadowPresentPte, spteLoadFlags } from '../spte.js';
import { count, countN } from '../../../metrics/counters.js';
import { VmLayout } from '../../vm-layout.js';
import { Strat } from '../../dirty/strategy.js';
import { Op } from '../../../metrics/ops.js';
import type { Vm } from '../../vm.js';

/**
 * Clear `bits` (W or D) in a leaf's flags word with one atomic AND — KVM's fetch_and for SPTEs
 * with volatile bits — and return the old flags. A plain read first skips SPTEs that have the
 * bits clear already. The AND is harmless on a non-present or FROZEN word: neither has W or D.
 */
function clearBits(pt: Int32Array, sptep: number, bits: number): number {
  // READ_ONCE, not a plain read: a vCPU's walker sets D with cmpxchg at any time, and only a
  // seq-cst load is ordered against it (and against the bitmap exchange before it) in
  // ECMAScript's model. On x86 it is the same mov.
  const seen = spteLoadFlags(pt, sptep);
  if ((seen & Spte.SPTE_MMU_PRESENT_MASK) === 0 || (seen & bits) === 0) return seen;
  return Atomics.and(pt, sptep, ~bits);
}

/**
 * Remove W from every leaf at level ≥ minLevel in [start, end). Returns whether any SPTE changed
 * (the caller flushes).
 */
export function tdpWrprotRange(vm: Vm, start: number, end: number, minLevel: number): boolean {
  const it = vm.iter;
  const m = vm.ctx.metrics;
  let flush = false;
  for (it.start(vm.root, minLevel, start); it.valid && it.gfn < end; it.next()) {
    count(m, Op.spte_read);
    if (!isShadowPresentPte(it.oldFlags) || !isLastSpte(it.oldFlags, it.level) || it.level < minLevel) continue;
    if ((it.oldFlags & Spte.PT_WRITABLE_MASK) === 0) continue;
    const old = clearBits(it.pt, it.sptep, Spte.PT_WRITABLE_MASK);
    if ((old & Spte.PT_WRITABLE_MASK) !== 0) {
      count(m, Op.wrprot_spte);
      if ((old & Spte.SPTE_DIRTY) !== 0) vm.onSpteCleaned(old, it.oldPfn);
      flush = true;
    }
  }
  return flush;
}

/** Clear D on every 4K leaf in [start, end) (kvm_mmu_slot_leaf_clear_dirty for PML). */
export function tdpClearDirtyRange(vm: Vm, start: number, end: number): boolean {
  const it = vm.iter;
  const m = vm.ctx.metrics;
  let flush = false;
  for (it.start(vm.root, PgLevel.PG_LEVEL_4K, start); it.valid && it.gfn < end; it.next()) {
    count(m, Op.spte_read);
    if (it.level !== PgLevel.PG_LEVEL_4K || !isShadowPresentPte(it.oldFlags) || (it.oldFlags & Spte.SPTE_DIRTY) === 0) continue;
    const old = clearBits(it.pt, it.sptep, Spte.SPTE_DIRTY);
    if ((old & Spte.SPTE_DIRTY) !== 0) {
      count(m, Op.wrprot_spte);
      vm.onSpteCleaned(old, it.oldPfn);
      flush = true;
    }
  }
  return flush;
}

/**
 * clear_dirty_pt_masked(): for each set bit i of the 64-bit mask (lo, hi), re-arm tracking on
 * the 4K leaf of gfn + i: remove W (`wrprot`) or clear D. Huge leaves are skipped (the caller
 * write-protects or splits them first). Walks to each 4K table once, not once per page.
 */
export function tdpClearDirtyPtMasked(vm: Vm, gfn: number, lo: number, hi: number, wrprot: boolean): boolean {
  const pt = vm.pool.pt;
  const m = vm.ctx.metrics;
  const bits = wrprot ? Spte.PT_WRITABLE_MASK : Spte.SPTE_DIRTY;
  // Only the 'on-zap' folio policy cares about each cleaned SPTE; decide once per mask.
  const folioOnZap = (vm.w[VmLayout.kVmStrategy]! & Strat.kStratFolioOnZap) !== 0;
  let flush = false;
  let tableGfn = -1;
  let table = 0;
  let reads = 0;
  let cleaned = 0;
  for (let half = 0; half < 2; half++) {
    let mask = half === 0 ? lo : hi;
    while (mask !== 0) {
      const b = 31 - Math.clz32(mask & -mask);
      mask &= mask - 1;
      const g = gfn + half * 32 + b;
      const tg = g & ~(PtLayout.SPTE_ENT_PER_PAGE - 1);
      if (tg !== tableGfn) {
        tableGfn = tg;
        table = leafTableFor(vm, g);
      }
      if (table <= 0) continue;
      const sptep = table * PtLayout.kPtPageWords + (g & (PtLayout.SPTE_ENT_PER_PAGE - 1)) * PtLayout.kSpteWords;
      reads++;
      const old = clearBits(pt, sptep, bits);
      if ((old & bits) !== 0) {
        cleaned++;
        if (folioOnZap && (old & Spte.SPTE_DIRTY) !== 0) vm.onSpteCleaned(old, pt[sptep + 1]!);
        flush = true;
      }
    }
  }
  countN(m, Op.spte_read, reads);
  countN(m, Op.wrprot_spte, cleaned);
  return flush;
}

/**
 * The 4K page table holding gfn's SPTE: > 0 the page, 0 when no table exists (nothing mapped
 * there), -1 when a huge leaf maps it. Called with mmu_lock held for write (CLEAR_DIRTY_LOG, ring
 * reset): no other thread links, unlinks or replaces a table meanwhile (vCPUs' walkers only set
 * A/D in leaves), so the pfn word is read plainly; the flags word with READ_ONCE all the same,
 * as every SPTE load that vCPUs may race with.
 */
export function leafTableFor(vm: Vm, gfn: number): number {
  const pt = vm.pool.pt;
  let page = vm.root;
  for (let level = PgLevel.PT64_ROOT_4LEVEL; level > PgLevel.PG_LEVEL_4K; level--) {
    const sptep = page * PtLayout.kPtPageWords + ((gfn >>> ((level - 1) * 9)) & 511) * PtLayout.kSpteWords;
    const flags = spteLoadFlags(pt, sptep);
    if ((flags & Spte.SPTE_MMU_PRESENT_MASK) === 0) return 0;
    if ((flags & Spte.PT_PAGE_SIZE_MASK) !== 0) return -1;
    page = pt[sptep + 1]!;
  }
  return page;
}
