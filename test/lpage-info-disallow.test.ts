import { describe, expect, it } from 'vitest';
import {
  Lpage, allocLpageInfo, disallowLpage, gfnToIndex, lpageCount, lpageMaxLevel, updateGfnDisallowLpageCount,
} from '../src/kvm/mmu/lpage.js';
import { PgLevel } from '../src/kvm/mmu/spte.js';

const k1G = 262144; // 4K pages per 1 GiB

/**
 * lpage_info as plain arrays: [2M entries, 1G entries], lpageCount() entries each (the SABs are
 * rounded up to 8 bytes, so a view may carry one padding word past the last entry).
 */
function linfo(baseGfn: number, npages: number, ugfn: number): number[][] {
  return allocLpageInfo(baseGfn, npages, ugfn).map((s, i) =>
    Array.from(new Int32Array(s).subarray(0, lpageCount(baseGfn, npages, PgLevel.PG_LEVEL_2M + i))));
}
function views(baseGfn: number, npages: number, ugfn: number): Int32Array[] {
  return allocLpageInfo(baseGfn, npages, ugfn).map((s) => new Int32Array(s));
}

describe('lpage_info: disallow_lpage at memslot creation', () => {
  it('indexes huge pages from the slot base (gfn_to_index, __kvm_mmu_slot_lpages)', () => {
    expect(gfnToIndex(1048576 + 600, 1048576, PgLevel.PG_LEVEL_2M)).toBe(1);
    expect(gfnToIndex(1048576 + 600, 1048576, PgLevel.PG_LEVEL_1G)).toBe(0);
    expect(gfnToIndex(1535, 1000, PgLevel.PG_LEVEL_2M)).toBe(1); // 1000 is in 2M page 1, 1535 in 2M page 2
    expect(lpageCount(1048576, 1024, PgLevel.PG_LEVEL_2M)).toBe(2);
    expect(lpageCount(1048576, 1024, PgLevel.PG_LEVEL_1G)).toBe(1);
    expect(lpageCount(1000, 2000, PgLevel.PG_LEVEL_2M)).toBe(5);
    expect(lpageCount(k1G - 1, 2, PgLevel.PG_LEVEL_1G)).toBe(2);
  });

  it('1024 pages at gfn 1048576: both 2M entries allowed, the 1G tail entry disallowed', () => {
    // 1048576 is 4 GiB (1G aligned); the end 1049600 is 2M aligned, not 1G aligned.
    expect(linfo(1048576, 1024, 0x40000)).toEqual([[0, 0], [1]]);
  });

  it('disallows the head entry when base_gfn is not aligned to the huge page', () => {
    expect(linfo(1000, 2000, 1000)).toEqual([[1, 0, 0, 0, 1], [1]]); // [1000, 3000): head and tail
    expect(linfo(513, 1023, 513)).toEqual([[1, 0], [1]]); // [513, 1536): head only at 2M
    expect(linfo(k1G + 512, k1G - 512, 512)).toEqual([new Array<number>(511).fill(0), [1]]);
  });

  it('disallows the tail entry when base_gfn + npages is not aligned', () => {
    expect(linfo(512, 1000, 512)).toEqual([[0, 1], [1]]); // [512, 1512)
    expect(linfo(512, 1, 0)).toEqual([[1], [1]]); // a single page: its own tail
    expect(linfo(0, 2 * k1G + 1, 0)[1]).toEqual([0, 0, 1]);
  });

  it('disallows every entry of a level when base_gfn and the host address are misaligned for it', () => {
    // Off by one page: nothing huge at all.
    expect(linfo(1048576, 1024, 0x40000 + 1)).toEqual([[1, 1], [1]]);
    // Off by 2 MiB: 2M fine, every 1G entry disallowed even where the slot is 1G aligned.
    const l = linfo(0, 2 * k1G, 512);
    expect(l[0]!.length).toBe(1024);
    expect(l[0]!.every((v) => v === 0)).toBe(true);
    expect(l[1]).toEqual([1, 1]);
    // Same offset modulo the huge page is aligned: the host address may be below the gfn.
    expect(linfo(k1G + 512, k1G, 512)).toEqual([new Array<number>(512).fill(0), [1, 1]]);
    expect(linfo(3 * k1G, k1G, 0)).toEqual([new Array<number>(512).fill(0), [0]]);
  });
});

describe('lpage_info: the max mapping level it allows', () => {
  it('picks the largest level whose entry is zero', () => {
    const l = views(1000, 2000, 1000); // 2M [1,0,0,0,1], 1G [1]
    expect(disallowLpage(l, 1000, 1000, PgLevel.PG_LEVEL_2M)).toBe(1);
    expect(lpageMaxLevel(l, 1000, 1000, PgLevel.PG_LEVEL_1G)).toBe(PgLevel.PG_LEVEL_4K);
    expect(lpageMaxLevel(l, 1000, 1536, PgLevel.PG_LEVEL_1G)).toBe(PgLevel.PG_LEVEL_2M);
    expect(lpageMaxLevel(l, 1000, 2559, PgLevel.PG_LEVEL_1G)).toBe(PgLevel.PG_LEVEL_2M);
    expect(lpageMaxLevel(l, 1000, 2560, PgLevel.PG_LEVEL_1G)).toBe(PgLevel.PG_LEVEL_4K);
    expect(lpageMaxLevel(l, 1000, 1536, PgLevel.PG_LEVEL_4K)).toBe(PgLevel.PG_LEVEL_4K); // host level caps it
    const g = views(0, 2 * k1G, 0);
    expect(lpageMaxLevel(g, 0, k1G + 77, PgLevel.PG_LEVEL_1G)).toBe(PgLevel.PG_LEVEL_1G);
    expect(lpageMaxLevel(g, 0, k1G + 77, PgLevel.PG_LEVEL_2M)).toBe(PgLevel.PG_LEVEL_2M);
  });

  it('refcounts disallows at every level (kvm_mmu_gfn_disallow_lpage / allow)', () => {
    const l = views(0, 2 * k1G, 0);
    updateGfnDisallowLpageCount(l, 0, 1536, 1);
    expect(Array.from(l[0]!.subarray(0, 5))).toEqual([0, 0, 0, 1, 0]);
    expect(Array.from(l[1]!)).toEqual([1, 0]);
    expect(lpageMaxLevel(l, 0, 1536, PgLevel.PG_LEVEL_1G)).toBe(PgLevel.PG_LEVEL_4K);
    expect(lpageMaxLevel(l, 0, 1024, PgLevel.PG_LEVEL_1G)).toBe(PgLevel.PG_LEVEL_2M); // same 1G page, other 2M page
    expect(lpageMaxLevel(l, 0, k1G, PgLevel.PG_LEVEL_1G)).toBe(PgLevel.PG_LEVEL_1G);
    updateGfnDisallowLpageCount(l, 0, 1600, 1);
    expect(l[0]![3]).toBe(2);
    updateGfnDisallowLpageCount(l, 0, 1536, -1);
    updateGfnDisallowLpageCount(l, 0, 1600, -1);
    expect(l[0]!.every((v) => v === 0)).toBe(true);
    expect(Array.from(l[1]!)).toEqual([0, 0]);
  });

  it('refuses a refcount change that would flip Lpage.KVM_LPAGE_MIXED_FLAG', () => {
    const l = views(0, 1024, 0);
    expect(() => updateGfnDisallowLpageCount(l, 0, 0, -1)).toThrow(/Lpage.KVM_LPAGE_MIXED_FLAG/);
    const m = views(0, 1024, 0);
    m[0]![1] = Lpage.KVM_LPAGE_MIXED_FLAG;
    m[1]![0] = Lpage.KVM_LPAGE_MIXED_FLAG;
    updateGfnDisallowLpageCount(m, 0, 600, 1);
    expect(m[0]![1]).toBe(Lpage.KVM_LPAGE_MIXED_FLAG | 1);
    expect(lpageMaxLevel(m, 0, 600, PgLevel.PG_LEVEL_1G)).toBe(PgLevel.PG_LEVEL_4K);
    updateGfnDisallowLpageCount(m, 0, 600, -1);
    expect(m[0]![1]).toBe(Lpage.KVM_LPAGE_MIXED_FLAG);
    expect(lpageMaxLevel(m, 0, 0, PgLevel.PG_LEVEL_1G)).toBe(PgLevel.PG_LEVEL_2M);
  });
});
