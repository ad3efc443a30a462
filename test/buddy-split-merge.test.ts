import { describe, expect, it } from 'vitest';
import { Zone, ZoneLayout } from '../src/host/buddy.js';

const k1G = 1 << ZoneLayout.kMaxOrder;

/** Free-block count of every order 0..18, as an array (index = order). */
function blocks(z: Zone): number[] {
  const out: number[] = [];
  for (let o = 0; o <= ZoneLayout.kMaxOrder; o++) out.push(z.freeBlocks(o));
  return out;
}

/** Expected counts: `orders` lists the orders holding one free block each. */
function only(...orders: number[]): number[] {
  const out = new Array<number>(ZoneLayout.kMaxOrder + 1).fill(0);
  for (const o of orders) out[o]!++;
  return out;
}

describe('buddy allocator: split on alloc, merge on free', () => {
  it('seeds a zone with the largest naturally aligned blocks', () => {
    expect(blocks(Zone.create(0, 0, k1G))).toEqual(only(18));
    // 1000 frames = 512 + 256 + 128 + 64 + 32 + 8.
    const z = Zone.create(0, 0, 1000);
    expect(blocks(z)).toEqual(only(9, 8, 7, 6, 5, 3));
    expect(z.freePages()).toBe(1000);
  });

  it('splits a 1 GiB block down to order 0, handing back one upper half per order (expand)', () => {
    const z = Zone.create(0, k1G, k1G);
    expect(z.alloc(0)).toBe(k1G);
    expect(blocks(z)).toEqual(only(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17));
    expect(z.freePages()).toBe(k1G - 1);
    // The upper halves are where expand() put them: order k at offset 2^k.
    expect(z.alloc(0)).toBe(k1G + 1);
    expect(z.alloc(9)).toBe(k1G + 512);
    expect(z.alloc(17)).toBe(k1G + (1 << 17));
    expect(z.freePages()).toBe(k1G - 2 - 512 - (1 << 17));
  });

  it('merges buddies on free back to the original block counts', () => {
    const z = Zone.create(0, 0, k1G);
    const a = z.alloc(0);
    const b = z.alloc(0);
    const c = z.alloc(0);
    expect([a, b, c]).toEqual([0, 1, 2]);
    // Block 3 is the order-0 remainder of splitting [2,4); [0,2) is allocated.
    expect(blocks(z)).toEqual(only(0, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17));
    z.free(a, 0); // buddy 1 in use: stays order 0 at 0
    expect(z.freeBlocks(0)).toBe(2);
    expect(z.freeBlocks(1)).toBe(0);
    z.free(b, 0); // merges with 0 into [0,2); its order-1 buddy [2,4) is not whole
    expect(z.freeBlocks(0)).toBe(1);
    expect(z.freeBlocks(1)).toBe(1);
    z.free(c, 0); // 2+3 -> [2,4), + [0,2) -> [0,4), ... all the way up to 1 GiB
    expect(blocks(z)).toEqual(only(18));
    expect(z.freePages()).toBe(k1G);
  });

  it('merges only inside the zone: a partial zone frees back to its seed blocks', () => {
    const z = Zone.create(0, 0, 1000);
    const got: number[] = [];
    for (let i = 0; i < 100; i++) got.push(z.alloc(0));
    // Smallest fitting order first: the 8-page block at 992, then the 32-page block at 960, ...
    expect(got.slice(0, 10)).toEqual([992, 993, 994, 995, 996, 997, 998, 999, 960, 961]);
    for (const p of got) z.free(p, 0);
    // The order-3 block at 992 has no buddy inside the zone ([1000,1008) is past the end).
    expect(blocks(z)).toEqual(only(9, 8, 7, 6, 5, 3));
    expect(z.freePages()).toBe(1000);
  });

  it('returns the lowest free block of the smallest fitting order', () => {
    const z = Zone.create(0, 0, k1G);
    for (let i = 0; i < 8; i++) expect(z.alloc(0)).toBe(i);
    z.free(6, 0); // order-0 block at 6 (buddy 7 in use)
    z.free(0, 0);
    z.free(1, 0); // [0,2) merges to order 1
    expect(z.freeBlocks(0)).toBe(1);
    expect(z.freeBlocks(1)).toBe(1);
    // Order 0 is the smallest that fits, although [0,2) is at a lower address.
    expect(z.alloc(0)).toBe(6);
    // Now the order-1 block is split, lower half first.
    expect(z.alloc(0)).toBe(0);
    expect(z.alloc(0)).toBe(1);
    // Freeing out of order and re-allocating gives the lowest address back.
    z.free(5, 0);
    z.free(3, 0);
    expect(z.alloc(0)).toBe(3);
    expect(z.alloc(0)).toBe(5);
  });

  it('interleaves orders deterministically and merges everything back', () => {
    const z = Zone.create(0, 0, k1G);
    const seq: [number, number][] = [];
    for (const order of [0, 9, 0, 3, 0, 9, 2, 18, 1]) seq.push([z.alloc(order), order]);
    expect(seq.map(([p]) => p)).toEqual([
      0, // split 18 down
      512, // order 9 half from the first split
      1, // order-0 half
      8, // order-3 half
      2, // split [2,4)
      1024, // split [1024,2048): 1024 now, [1536,2048) stays free at order 9
      4, // order-2 half [4,8)
      -1, // no 1 GiB block left
      16, // order 1: smallest free order >= 1 is order 4 at 16 -> split, [16,18)
    ]);
    expect(z.freePages()).toBe(k1G - (1 + 512 + 1 + 8 + 1 + 512 + 4 + 2));
    expect(z.freeBlocks(9)).toBe(1); // [1536, 2048)
    // Free in a scrambled order; the zone must be one 1 GiB block again.
    for (const i of [6, 0, 8, 3, 1, 5, 2, 4]) {
      const [p, o] = seq[i]!;
      if (p >= 0) z.free(p, o);
    }
    expect(blocks(z)).toEqual(only(18));
    expect(z.freePages()).toBe(k1G);
  });
});
