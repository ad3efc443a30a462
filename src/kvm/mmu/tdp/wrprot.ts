/**
 * Arming dirty tracking on SPTEs (tdp_mmu.c): write-protect leaves (wrprot_gfn_range,
 * kvm_tdp_mmu_wrprot_slot), clear D bits (clear_dirty_gfn_range), and the per-64-page masked
 * forms CLEAR_DIRTY_LOG and ring reset use (clear_dirty_pt_masked).
 *
 * Under mmu_lock held for read (enabling dirty logging) other mmu_lock readers and the vCPUs may
 * change any SPTE, so every change is an atomic RMW on the flags word. Under mmu_lock held for
 * write (CLEAR_DIRTY_LOG, legacy GET, ring reset) only the vCPUs write SPTEs, and only SPTEs
 * with volatile bits (spteHasVolatileBits): those need the atomic RMW, any other gets a plain
 * store, as tdp_mmu_clear_spte_bits() decides. Dropping W keeps MMU-writable, so the fast page
 * fault can restore it without mmu_lock; the caller flushes TLBs before the ioctl returns
 * whenever this reports a change.
 */
import { PgLevel, Spte, PtLayout, isLastSpte, isShadowPresentPte, kvmTdpMmuSpteNeedAtomicUpdate, spteLoadFlags } from '../spte.js';
import { count, countN } from '../../../metrics/counters.js';
import { VmLayout } from '../../vm-layout.js';
import { Strat } from '../../dirty/strategy.js';
import { Op } from '../../../metrics/ops.js';
import type { Vm } from '../../vm.js';

/**
 * Clear `bits` (W or D) in a leaf's flags word with one atomic AND — for mmu_lock held for read,
 * where any SPTE may change under us — and return the old flags. A load first skips SPTEs that
 * have the bits clear already. The AND is harmless on a non-present or FROZEN word: neither has
 * W or D.
 */
function clearBitsShared(pt: Int32Array, sptep: number, bits: number): number {
  // READ_ONCE, not a plain read: a vCPU's walker sets D with cmpxchg at any time, and only a
  // seq-cst load is ordered against it (and against the bitmap exchange before it) in
  // ECMAScript's model. On x86 it is the same mov.
  const seen = spteLoadFlags(pt, sptep);
  if ((seen & Spte.SPTE_MMU_PRESENT_MASK) === 0 || (seen & bits) === 0) return seen;
  return Atomics.and(pt, sptep, ~bits);
}

/**
 * tdp_mmu_clear_spte_bits(), mmu_lock held for write: clear `bits` in a leaf that read `old`
 * and return the flags it had. An SPTE with volatile bits gets KVM's atomic64_fetch_and (a vCPU
 * may set W, A or D between the read and the update, and losing them would lose a dirty page or
 * a folio's dirty state); any other, __kvm_tdp_mmu_write_spte(): a plain store, because no
 * vCPU writes such an SPTE (spteHasVolatileBits) and no other mmu_lock holder exists, so nobody
 * races on the word. Lockless readers (the EPT walker, the fast page fault) may read it
 * meanwhile and see the old or the new flags — Int32 accesses do not tear, the pfn is unchanged —
 * and the remote TLB flush after the ioctl (an Atomics request the vCPUs acknowledge) orders
 * the store before anything they do after it.
 */
function tdpMmuClearSpteBits(pt: Int32Array, sptep: number, old: number, bits: number, level: number): number {
  if (kvmTdpMmuSpteNeedAtomicUpdate(old, level)) return Atomics.and(pt, sptep, ~bits);
  pt[sptep] = old & ~bits;
  return old;
}

/**
 * Remove W from every leaf at level ≥ minLevel in [start, end). Returns whether any SPTE changed
 * (the caller flushes). `shared`: mmu_lock is held for read (enable), else for write (the masked
 * path's huge pages).
 */
export function tdpWrprotRange(vm: Vm, start: number, end: number, minLevel: number, shared = true): boolean {
  const it = vm.iter;
  const m = vm.ctx.metrics;
  let flush = false;
  for (it.start(vm.root, minLevel, start); it.valid && it.gfn < end; it.next()) {
    count(m, Op.spte_read);
    if (!isShadowPresentPte(it.oldFlags) || !isLastSpte(it.oldFlags, it.level) || it.level < minLevel) continue;
    if ((it.oldFlags & Spte.PT_WRITABLE_MASK) === 0) continue;
    // The iterator's READ_ONCE (seq-cst) is the old value tdp_mmu_clear_spte_bits() decides on.
    const old = shared ? clearBitsShared(it.pt, it.sptep, Spte.PT_WRITABLE_MASK)
      : tdpMmuClearSpteBits(it.pt, it.sptep, it.oldFlags, Spte.PT_WRITABLE_MASK, it.level);
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
    const old = clearBitsShared(it.pt, it.sptep, Spte.SPTE_DIRTY);
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
 * mmu_lock is held for write.
 */
export function tdpClearDirtyPtMasked(vm: Vm, gfn: number, lo: number, hi: number, wrprot: boolean): boolean {
  const pt = vm.pool.pt;
  const bits = wrprot ? Spte.PT_WRITABLE_MASK : Spte.SPTE_DIRTY;
  // Only the 'on-zap' folio policy cares about each cleaned SPTE; decide once per mask.
  const folioOnZap = (vm.w[VmLayout.kVmStrategy]! & Strat.kStratFolioOnZap) !== 0;
  const hook = wrprotTestHooks.beforeClearSpteBits;
  let tableGfn = -1;
  let table = 0;
  let reads = 0;
  let cleaned = 0;
  // The mask is taken in runs of consecutive set bits, each split at 4K-table boundaries, so
  // the per-page work is one SPTE: a dirty 64-page word is two runs of 32.
  for (let half = 0; half < 2; half++) {
    let mask = half === 0 ? lo : hi;
    while (mask !== 0) {
      const b = 31 - Math.clz32(mask & -mask);
      const notRun = ~(mask >>> b);
      const len = notRun === 0 ? 32 : 31 - Math.clz32(notRun & -notRun);
      mask = len === 32 ? 0 : mask & ~(((1 << len) - 1) << b);
      let g = gfn + half * 32 + b;
      const gEnd = g + len;
      while (g < gEnd) {
        const tg = g & ~(PtLayout.SPTE_ENT_PER_PAGE - 1);
        if (tg !== tableGfn) {
          tableGfn = tg;
          table = leafTableFor(vm, g);
        }
        const stop = Math.min(gEnd, tg + PtLayout.SPTE_ENT_PER_PAGE);
        if (table > 0) {
          reads += stop - g;
          const first = table * PtLayout.kPtPageWords + (g & (PtLayout.SPTE_ENT_PER_PAGE - 1)) * PtLayout.kSpteWords;
          const end = first + (stop - g) * PtLayout.kSpteWords;
          for (let sptep = first; sptep < end; sptep += PtLayout.kSpteWords) {
            // iter.old_spte, read plainly. The pages here are the ones the bitmap reported, and
            // the vCPU write that made each one writable/dirty is ordered before this read by the
            // bitmap pair (the vCPU's SPTE cmpxchg, then its Atomics.or of the bit — or the PML
            // flush's — observed by our Atomics.and/exchange of the word). The SPTE is W|D|A
            // then, which no vCPU writes (not volatile), so the value is final and the update
            // is __kvm_tdp_mmu_write_spte()'s plain store. Bits already clear, or volatile bits,
            // go to clearSpteBitsSlow().
            const old = pt[sptep]!;
            if (hook !== null) hook(tg + ((sptep >>> 1) & (PtLayout.SPTE_ENT_PER_PAGE - 1)));
            if ((old & Spte.SPTE_MMU_PRESENT_MASK) !== 0 && (old & bits) !== 0 && !kvmTdpMmuSpteNeedAtomicUpdate(old, PgLevel.PG_LEVEL_4K)) {
              pt[sptep] = old & ~bits;
              cleaned++;
              if (folioOnZap && (old & Spte.SPTE_DIRTY) !== 0) vm.onSpteCleaned(old, pt[sptep + 1]!);
            } else {
              cleaned += clearSpteBitsSlow(vm, pt, sptep, old, bits, folioOnZap);
            }
          }
        }
        g = stop;
      }
    }
  }
  const m = vm.ctx.metrics;
  countN(m, Op.spte_read, reads);
  countN(m, Op.wrprot_spte, cleaned);
  return cleaned !== 0;
}

/**
 * clear_dirty_pt_masked()'s step for a 4K leaf that read `seen`, when that is not the common
 * case; returns 1 if it cleared `bits`. A skip is decided on a seq-cst load (READ_ONCE), which
 * pairs with a vCPU's cmpxchg of the SPTE: a vCPU that sets the bit after it marks the page in
 * the bitmap itself. An SPTE with volatile bits is updated by tdpMmuClearSpteBits()'s atomic AND.
 */
function clearSpteBitsSlow(vm: Vm, pt: Int32Array, sptep: number, seen: number, bits: number, folioOnZap: boolean): number {
  let old = seen;
  if ((old & Spte.SPTE_MMU_PRESENT_MASK) === 0 || (old & bits) === 0) {
    old = spteLoadFlags(pt, sptep);
    if ((old & Spte.SPTE_MMU_PRESENT_MASK) === 0 || (old & bits) === 0) return 0;
  }
  old = tdpMmuClearSpteBits(pt, sptep, old, bits, PgLevel.PG_LEVEL_4K);
  if ((old & bits) === 0) return 0;
  if (folioOnZap && (old & Spte.SPTE_DIRTY) !== 0) vm.onSpteCleaned(old, pt[sptep + 1]!);
  return 1;
}

/**
 * Test hooks (this thread only): `beforeClearSpteBits(gfn)` runs in clear_dirty_pt_masked()
 * between the read of gfn's SPTE and the decision how to update it, so a test can make a vCPU
 * change the SPTE in exactly that window. Read once per mask.
 */
export const wrprotTestHooks: { beforeClearSpteBits: ((gfn: number) => void) | null } = { beforeClearSpteBits: null };

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
