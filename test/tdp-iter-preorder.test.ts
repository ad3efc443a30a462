import { describe, expect, it } from 'vitest';
import { TdpIter } from '../src/kvm/mmu/tdp/iter.js';
import { PgLevel, isShadowPresentPte, Spte, PtLayout, makeSpteFlags } from '../src/kvm/mmu/spte.js';

/**
 * A hand-built table (page p at words p * 1024):
 *
 *   page 1 (root, L4)  [0] -> page 2
 *   page 2 (L3)        [0] -> page 3        [1] 1G leaf pfn 0x40000 (gfn 262144)
 *   page 3 (L2)        [0] -> page 4        [1] 2M leaf pfn 0x200 (gfn 512)   [2] none   [3] 2M leaf pfn 0x600 (gfn 1536)
 *   page 4 (L1)        [0] pfn 0x10  [1] pfn 0x11  [5] pfn 0x15  (gfns 0, 1, 5), the rest none
 */
const kRoot = 1;
function buildTable(): Int32Array {
  const pt = new Int32Array(6 * PtLayout.kPtPageWords);
  const set = (page: number, idx: number, flags: number, pfn: number) => {
    pt[page * PtLayout.kPtPageWords + idx * PtLayout.kSpteWords] = flags;
    pt[page * PtLayout.kPtPageWords + idx * PtLayout.kSpteWords + 1] = pfn;
  };
  set(1, 0, Spte.kNonLeafFlags, 2);
  set(2, 0, Spte.kNonLeafFlags, 3);
  set(2, 1, makeSpteFlags(PgLevel.PG_LEVEL_1G, true, true), 0x40000);
  set(3, 0, Spte.kNonLeafFlags, 4);
  set(3, 1, makeSpteFlags(PgLevel.PG_LEVEL_2M, true, true), 0x200);
  set(3, 3, makeSpteFlags(PgLevel.PG_LEVEL_2M, false, true), 0x600);
  set(4, 0, makeSpteFlags(PgLevel.PG_LEVEL_4K, true, true), 0x10);
  set(4, 1, makeSpteFlags(PgLevel.PG_LEVEL_4K, true, true), 0x11);
  set(4, 5, makeSpteFlags(PgLevel.PG_LEVEL_4K, false, true), 0x15);
  return pt;
}

interface Visit { level: number; gfn: number; sptep: number; present: boolean; pfn: number }

/** for_each_tdp_pte_min_level(iter, root, minLevel, start, end) */
function walk(pt: Int32Array, minLevel: number, start: number, end: number): Visit[] {
  const it = new TdpIter(pt);
  const out: Visit[] = [];
  for (it.start(kRoot, minLevel, start); it.valid && it.gfn < end; it.next()) {
    out.push({ level: it.level, gfn: it.gfn, sptep: it.sptep, present: isShadowPresentPte(it.oldFlags), pfn: it.oldPfn });
    if (out.length > 5000) throw new Error('runaway iterator');
  }
  return out;
}
const present = (v: Visit[]) => v.filter((x) => x.present).map((x) => [x.level, x.gfn, x.pfn]);

describe('TdpIter: pre-order walk (for_each_tdp_pte_min_level)', () => {
  it('visits parents before children, every entry of each table in gfn order', () => {
    const v = walk(buildTable(), PgLevel.PG_LEVEL_4K, 0, 2048);
    // L4 0, L3 0, L2 0, the 512 entries of page 4, then L2 512, 1024, 1536 (2048 is the end).
    expect(v.length).toBe(3 + 512 + 3);
    expect(v.slice(0, 5).map((x) => [x.level, x.gfn])).toEqual([[4, 0], [3, 0], [2, 0], [1, 0], [1, 1]]);
    expect(v.slice(3, 515).every((x, i) => x.level === 1 && x.gfn === i)).toBe(true);
    expect(v.slice(515).map((x) => [x.level, x.gfn])).toEqual([[2, 512], [2, 1024], [2, 1536]]);
    expect(present(v)).toEqual([
      [4, 0, 2], [3, 0, 3], [2, 0, 4], [1, 0, 0x10], [1, 1, 0x11], [1, 5, 0x15], [2, 512, 0x200], [2, 1536, 0x600],
    ]);
  });

  it('carries the SPTE word index of each visit (sptep)', () => {
    const v = walk(buildTable(), PgLevel.PG_LEVEL_4K, 0, 2048);
    expect(v[0]!.sptep).toBe(1 * PtLayout.kPtPageWords);
    expect(v[2]!.sptep).toBe(3 * PtLayout.kPtPageWords);
    expect(v[3 + 5]!.sptep).toBe(4 * PtLayout.kPtPageWords + 5 * PtLayout.kSpteWords);
    expect(v[v.length - 1]!.sptep).toBe(3 * PtLayout.kPtPageWords + 3 * PtLayout.kSpteWords);
  });

  it('steps over non-present entries and leaves without descending, then up to the next level', () => {
    const v = walk(buildTable(), PgLevel.PG_LEVEL_4K, 1536, 2 * 262144 + 1);
    // L2 1536 is a leaf: next is its sibling; after page 3's last entry, L3 gfn 262144 (the 1G leaf).
    expect(v.slice(0, 5).map((x) => [x.level, x.gfn, x.present])).toEqual([
      [4, 0, true], [3, 0, true], [2, 1536, true], [2, 2048, false], [2, 2560, false],
    ]);
    const i = v.findIndex((x) => x.level === 3 && x.gfn === 262144);
    expect(i).toBe(3 + 508); // entries 3..511 of page 3 come first
    expect(v[i]!.present).toBe(true);
    expect(v[i]!.pfn).toBe(0x40000);
    expect(v[i + 1]).toMatchObject({ level: 3, gfn: 2 * 262144, present: false });
    expect(v.length).toBe(i + 2);
  });

  it('starts at the SPTE covering start, rounded for each level', () => {
    const v = walk(buildTable(), PgLevel.PG_LEVEL_4K, 3, 6);
    expect(v.map((x) => [x.level, x.gfn, x.present])).toEqual([
      [4, 0, true], [3, 0, true], [2, 0, true], [1, 3, false], [1, 4, false], [1, 5, true],
    ]);
    // Inside a 2M leaf: the leaf is visited at its own (rounded) gfn.
    const w = walk(buildTable(), PgLevel.PG_LEVEL_4K, 600, 1024);
    expect(w.map((x) => [x.level, x.gfn, x.pfn])).toEqual([[4, 0, 2], [3, 0, 3], [2, 512, 0x200]]);
  });

  it('does not descend below minLevel', () => {
    const v = walk(buildTable(), PgLevel.PG_LEVEL_2M, 0, 2048);
    expect(v.map((x) => [x.level, x.gfn, x.present])).toEqual([
      [4, 0, true], [3, 0, true], [2, 0, true], [2, 512, true], [2, 1024, false], [2, 1536, true],
    ]);
    const top = walk(buildTable(), PgLevel.PT64_ROOT_4LEVEL, 0, 2 ** 30);
    // Root entries of 2^27 gfns each below the end bound: 8 of them, only the first present.
    expect(top.map((x) => x.gfn)).toEqual([0, 1, 2, 3, 4, 5, 6, 7].map((i) => i * 2 ** 27));
    expect(top.filter((x) => x.present).length).toBe(1);
  });

  it('skipChildren moves past the current subtree', () => {
    const pt = buildTable();
    const it = new TdpIter(pt);
    it.start(kRoot, PgLevel.PG_LEVEL_4K, 0);
    it.next(); // L3 0
    it.next(); // L2 0 (table)
    expect([it.level, it.gfn]).toEqual([2, 0]);
    it.skipChildren();
    expect([it.level, it.gfn, it.oldPfn]).toEqual([2, 512, 0x200]);
    // At the last entry of a table the iterator climbs: L3 entry 0 -> L3 entry 1.
    it.start(kRoot, PgLevel.PG_LEVEL_4K, 511 * 512);
    it.next();
    it.next();
    expect([it.level, it.gfn]).toEqual([2, 511 * 512]);
    it.skipChildren();
    expect([it.level, it.gfn, it.oldPfn]).toEqual([3, 262144, 0x40000]);
  });

  it('restart() resumes from the root at the last position (after yielding mmu_lock)', () => {
    const it = new TdpIter(buildTable());
    it.start(kRoot, PgLevel.PG_LEVEL_4K, 0);
    for (let i = 0; i < 8; i++) it.next(); // ... L1 gfn 5
    expect([it.level, it.gfn]).toEqual([1, 5]);
    it.yielded = true;
    it.next(); // restarts at the root for next_last_level_gfn 5
    expect([it.level, it.gfn, it.yieldedGfn]).toEqual([4, 0, 5]);
    it.next();
    it.next();
    it.next();
    expect([it.level, it.gfn, it.oldPfn]).toEqual([1, 5, 0x15]);
  });
});
