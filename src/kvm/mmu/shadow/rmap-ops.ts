/**
 * What the shadow MMU does through rmaps (mmu.c): rmap_add / rmap_remove with the
 * max_mmu_rmap_size peak, and the gfn-range handlers — write-protect (rmap_write_protect, used by
 * dirty logging and account_shadowed), zap (kvm_zap_rmap, mmu_notifier invalidations), age
 * (kvm_age_rmap) and zap-collapsible (kvm_rmap_zap_collapsible_sptes, dirty logging off).
 *
 * kvm_memslots_have_rmaps(): nothing here runs before every memslot has rmaps — with lazy rmaps
 * a TDP VM has none until its first shadow root, and skipping these walks is the point of the
 * series. Everything runs with mmu_lock held for write (rmaps change only under it), but the
 * SPTEs it changes are read and A/D-updated by vCPUs' hardware walks without the lock, so SPTE
 * changes go through spteClearFlags / shadowDropSpte (cmpxchg on the flags word).
 */
import { PgLevel, Spte, PtLayout, pagesPerHpage } from '../spte.js';
import { count } from '../../../metrics/counters.js';
import { Op } from '../../../metrics/ops.js';
import { gfnToIndex } from '../lpage.js';
import { ShadowCtl, SpRole } from './mmu-page.js';
import { shadowDropSpte, spteClearFlags } from './spte-ops.js';
import type { Memslot } from '../../memslot.js';
import type { Vm } from '../../vm.js';

/** gfn_to_rmap(): the head of gfn's rmap at `level` in `slot`, or -1 when the slot has no rmaps. */
export function gfnToRmap(vm: Vm, slot: Memslot, gfn: number, level: number): number {
  const base = vm.slotRmapBase(slot);
  if (base < 0) return -1;
  return vm.rmaps.headIndex(base, slot.baseGfn, level, gfn);
}

/** rmap_add(): record that `sptep` (SPTE number) maps gfn at level; bumps max_mmu_rmap_size. */
export function rmapAdd(vm: Vm, slot: Memslot, gfn: number, level: number, sptep: number): void {
  const head = gfnToRmap(vm, slot, gfn, level);
  if (head < 0) throw new Error(`BUG: rmap_add on slot ${slot.id} without rmaps`);
  const n = vm.rmaps.add(head, sptep) + 1;
  count(vm.ctx.metrics, Op.rmap_add);
  vm.sp.peakStat(ShadowCtl.kStatMaxRmapSize, n);
}

export function rmapRemove(vm: Vm, gfn: number, level: number, sptep: number): void {
  const slot = vm.lookupMemslotAny(gfn);
  if (slot === null) throw new Error(`BUG: rmap_remove: no memslot for gfn 0x${gfn.toString(16)}`);
  const head = gfnToRmap(vm, slot, gfn, level);
  vm.rmaps.remove(head, sptep);
  count(vm.ctx.metrics, Op.rmap_remove);
}

/**
 * rmap_write_protect() over gfns [start, end) of `slot` at levels [minLevel, maxLevel]
 * (kvm_mmu_slot_gfn_write_protect / slot_rmap_write_protect): clear W (and MMU-writable when
 * `mmuWritable` is false, as account_shadowed does: a shadowed guest table must fault every
 * store) on every SPTE in the rmaps. Returns whether a TLB flush is needed.
 */
export function rmapWriteProtectRange(vm: Vm, slot: Memslot, start: number, end: number, minLevel: number, maxLevel: number, keepMmuWritable: boolean): boolean {
  const base = vm.slotRmapBase(slot);
  if (base < 0) return false;
  const m = vm.ctx.metrics;
  const rm = vm.rmaps;
  const it = vm.rmapIter;
  const pt = vm.pool.pt;
  const clear = keepMmuWritable ? Spte.PT_WRITABLE_MASK : Spte.PT_WRITABLE_MASK | Spte.SPTE_MMU_WRITABLE;
  let flush = false;
  for (let level = minLevel; level <= maxLevel; level++) {
    const step = pagesPerHpage(level);
    const s = Math.max(slot.baseGfn, start) & -step;
    for (let g = s; g < end && g < slot.endGfn; g += step) {
      const head = rm.headIndex(base, slot.baseGfn, level, Math.max(g, slot.baseGfn));
      for (let sptep = it.begin(head); sptep !== 0; sptep = it.next()) {
        count(m, Op.rmap_entry);
        const f = Atomics.load(pt, sptep * PtLayout.kSpteWords);
        if ((f & clear) === 0) continue;
        if (spteClearFlags(pt, sptep, clear)) {
          count(m, Op.wrprot_spte);
          flush = true;
        }
      }
    }
  }
  return flush;
}

/**
 * kvm_mmu_write_protect_pt_masked() / kvm_mmu_clear_dirty_pt_masked() for the rmaps: the 4K
 * SPTEs of the gfns in one 64-bit mask at `gfn` lose W (the shadow MMU has no PML: write
 * protection is its only dirty tracking). Returns whether a flush is needed.
 */
export function rmapWriteProtectMasked(vm: Vm, slot: Memslot, gfn: number, lo: number, hi: number): boolean {
  const base = vm.slotRmapBase(slot);
  if (base < 0) return false;
  let flush = false;
  for (let half = 0; half < 2; half++) {
    let bits = half === 0 ? lo : hi;
    while (bits !== 0) {
      const b = 31 - Math.clz32(bits & -bits);
      bits &= bits - 1;
      const g = gfn + half * 32 + b;
      if (rmapWriteProtectRange(vm, slot, g, g + 1, PgLevel.PG_LEVEL_4K, PgLevel.PG_LEVEL_4K, true)) flush = true;
    }
  }
  return flush;
}

/**
 * kvm_zap_rmap() for every gfn of [start, end) in every slot and level (kvm_unmap_gfn_range()'s
 * rmap half): each SPTE is dropped and the rmap emptied. Returns whether a flush is needed.
 */
export function rmapZapGfnRange(vm: Vm, start: number, end: number): boolean {
  if (!vm.memslotsHaveRmaps()) return false;
  let flush = false;
  for (const slot of vm.slotsInGfnRange(start, end)) {
    if (vm.slotRmapBase(slot) < 0) continue;
    const lo = Math.max(start, slot.baseGfn);
    const hi = Math.min(end, slot.endGfn);
    for (let level = PgLevel.PG_LEVEL_4K; level <= PgLevel.PG_LEVEL_1G; level++) {
      const step = pagesPerHpage(level);
      for (let g = lo & -step; g < hi; g += step) {
        if (rmapZapGfn(vm, slot, Math.max(g, slot.baseGfn), level)) flush = true;
      }
    }
  }
  return flush;
}

/** kvm_zap_rmap(): drop every SPTE in one rmap. */
function rmapZapGfn(vm: Vm, slot: Memslot, gfn: number, level: number): boolean {
  const head = gfnToRmap(vm, slot, gfn, level);
  const rm = vm.rmaps;
  if (rm.count(head) === 0) return false;
  const m = vm.ctx.metrics;
  // Drop one entry at a time from the head (the list changes under us).
  let any = false;
  for (let sptep = vm.rmapIter.begin(head); sptep !== 0; sptep = vm.rmapIter.begin(head)) {
    count(m, Op.rmap_entry);
    shadowDropSpte(vm, sptep, level);
    any = true;
  }
  return any;
}

/**
 * kvm_age_rmap() over [start, end): clear A on every SPTE mapping the range; returns how many
 * were young (kvm_age_gfn's answer to the mmu_notifier's clear_young).
 */
export function rmapAgeGfnRange(vm: Vm, slot: Memslot, start: number, end: number): number {
  const base = vm.slotRmapBase(slot);
  if (base < 0) return 0;
  const m = vm.ctx.metrics;
  const pt = vm.pool.pt;
  let young = 0;
  for (let level = PgLevel.PG_LEVEL_4K; level <= PgLevel.PG_LEVEL_1G; level++) {
    const step = pagesPerHpage(level);
    for (let g = Math.max(start, slot.baseGfn) & -step; g < end && g < slot.endGfn; g += step) {
      const head = vm.rmaps.headIndex(base, slot.baseGfn, level, Math.max(g, slot.baseGfn));
      for (let sptep = vm.rmapIter.begin(head); sptep !== 0; sptep = vm.rmapIter.next()) {
        count(m, Op.rmap_entry);
        if ((Atomics.load(pt, sptep * PtLayout.kSpteWords) & Spte.SPTE_ACCESSED) === 0) continue;
        if (spteClearFlags(pt, sptep, Spte.SPTE_ACCESSED)) young++;
      }
    }
  }
  return young;
}

/**
 * kvm_rmap_zap_collapsible_sptes(): dirty logging was turned off; a 4K SPTE in a *direct* shadow
 * page (a guest huge page the host had to map small) is zapped where the host and lpage_info now
 * allow more, so the next fault maps it huge again. SPTEs of indirect pages mirror the guest's
 * own 4K PTEs and stay. Returns whether a flush is needed.
 */
export function rmapZapCollapsibleSptes(vm: Vm, slot: Memslot, maxMappingLevel: (slot: Memslot, gfn: number) => number): boolean {
  const base = vm.slotRmapBase(slot);
  if (base < 0) return false;
  const m = vm.ctx.metrics;
  let flush = false;
  const sp = vm.sp;
  for (let g = slot.baseGfn; g < slot.endGfn; g++) {
    const head = vm.rmaps.headIndex(base, slot.baseGfn, PgLevel.PG_LEVEL_4K, g);
    if (vm.rmaps.count(head) === 0) continue;
    for (let sptep = vm.rmapIter.begin(head); sptep !== 0;) {
      count(m, Op.rmap_entry);
      const page = (sptep / PtLayout.SPTE_ENT_PER_PAGE) | 0;
      const role = sp.role(page);
      if ((role & SpRole.kDirect) !== 0 && (role & SpRole.kLevelMask) < maxMappingLevel(slot, sp.gfn(page))) {
        shadowDropSpte(vm, sptep, PgLevel.PG_LEVEL_4K);
        count(m, Op.recover_huge);
        flush = true;
        sptep = vm.rmapIter.begin(head);
        continue;
      }
      sptep = vm.rmapIter.next();
    }
  }
  return flush;
}

/** Bytes of rmap heads a slot needs (kvm_alloc_memslot_metadata's rmap arrays: 8 per head). */
export function slotRmapHeadBytes(baseGfn: number, npages: number): number {
  let n = 0;
  for (let level = PgLevel.PG_LEVEL_4K; level <= PgLevel.PG_LEVEL_1G; level++) n += gfnToIndex(baseGfn + npages - 1, baseGfn, level) + 1;
  return n * 8;
}
