/**
 * lpage_info: per memslot, per huge level (2M, 1G), one disallow_lpage count per potential huge
 * page touching the slot (kvm_alloc_memslot_metadata). Non-zero forbids a huge mapping there.
 *   - the head and tail entries are disallowed when the slot does not start/end on the boundary;
 *   - every entry is disallowed when base_gfn and the host address are misaligned for the level;
 *   - bit 31 (KVM_LPAGE_MIXED_FLAG) marks mixed memory attributes; lower bits are a refcount
 *     (e.g. shadow-MMU write tracking of a guest page table).
 */
import { allocSab } from '../../shm/arena.js';
import { PgLevel, levelShift, pagesPerHpage } from './spte.js';

export const enum Lpage {
  KVM_LPAGE_MIXED_FLAG = 1 << 31,
  KVM_NR_HUGE_LEVELS = 2,
}

/** gfn_to_index() */
export function gfnToIndex(gfn: number, baseGfn: number, level: number): number {
  const s = levelShift(level);
  return (gfn >>> s) - (baseGfn >>> s);
}

export function lpageCount(baseGfn: number, npages: number, level: number): number {
  return gfnToIndex(baseGfn + npages - 1, baseGfn, level) + 1;
}

/** Allocate and initialise lpage_info for [2M, 1G]; ugfn = userspace_addr >> PAGE_SHIFT. */
export function allocLpageInfo(baseGfn: number, npages: number, ugfn: number): SharedArrayBuffer[] {
  const out: SharedArrayBuffer[] = [];
  for (let level = PgLevel.PG_LEVEL_2M; level <= PgLevel.PG_LEVEL_1G; level++) {
    const sab = allocSab(lpageCount(baseGfn, npages, level) * 4);
    initLpageInfo(new Int32Array(sab, 0, lpageCount(baseGfn, npages, level)), level, baseGfn, npages, ugfn);
    out.push(sab);
  }
  return out;
}

/** Initialise one level's lpage_info (`linfo` holds lpageCount() entries, zero or not). */
export function initLpageInfo(linfo: Int32Array, level: number, baseGfn: number, npages: number, ugfn: number, gmemPgoff: number | null = null): void {
  const n = linfo.length;
  const pages = pagesPerHpage(level);
  linfo.fill(0);
  if (baseGfn % pages !== 0) linfo[0] = 1;
  if ((baseGfn + npages) % pages !== 0) linfo[n - 1] = 1;
  // Misaligned guest and host addresses: no huge page can be mapped at this level.
  if ((baseGfn - ugfn) % pages !== 0) linfo.fill(1);
  // "KVM: x86: Set disallow_lpage on base_gfn and guest_memfd pgoff misalignment": a huge page
  // of the guest cannot be a huge folio of the file when the two are not aligned alike.
  if (gmemPgoff !== null && (baseGfn - gmemPgoff) % pages !== 0) linfo.fill(1);
}

/** lpage_info_slot(gfn, slot, level)->disallow_lpage */
export function disallowLpage(lpage: Int32Array[], baseGfn: number, gfn: number, level: number): number {
  return Atomics.load(lpage[level - PgLevel.PG_LEVEL_2M]!, gfnToIndex(gfn, baseGfn, level));
}

/**
 * The largest level ≤ maxLevel whose lpage_info allows a huge mapping for gfn
 * (the lpage part of __kvm_mmu_max_mapping_level()).
 */
export function lpageMaxLevel(lpage: Int32Array[], baseGfn: number, gfn: number, maxLevel: number): number {
  for (let level = maxLevel; level > PgLevel.PG_LEVEL_4K; level--) {
    if (disallowLpage(lpage, baseGfn, gfn, level) === 0) return level;
  }
  return PgLevel.PG_LEVEL_4K;
}

/** Refcount a disallow (kvm_mmu_gfn_disallow_lpage / allow): +delta at every huge level. */
export function updateGfnDisallowLpageCount(lpage: Int32Array[], baseGfn: number, gfn: number, delta: number): void {
  for (let level = PgLevel.PG_LEVEL_2M; level <= PgLevel.PG_LEVEL_1G; level++) {
    const a = lpage[level - PgLevel.PG_LEVEL_2M]!;
    const i = gfnToIndex(gfn, baseGfn, level);
    const old = Atomics.add(a, i, delta);
    if (((old + delta) & Lpage.KVM_LPAGE_MIXED_FLAG) !== (old & Lpage.KVM_LPAGE_MIXED_FLAG)) {
      throw new Error('lpage_info refcount change flipped Lpage.KVM_LPAGE_MIXED_FLAG');
    }
  }
}
