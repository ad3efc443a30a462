// PageContent: a sparse pfn -> 4 KiB store. Insert, lookup, drop (backward-shift delete in a
// linear-probing hash), reuse of dropped pages zeroed, in-place growth seen by a second attached
// view (another thread's), ENOMEM when full.
import { describe, expect, it } from 'vitest';
import { PageContent } from '../src/host/page-content.js';
import { errnoOf } from './fixtures/errno.js';

describe('PageContent', () => {
  it('gives a frame zeroed content on first use, the same offset after, and -1 to frames without', () => {
    const pc = new PageContent(PageContent.createHandle(8));
    expect(pc.lookup(42)).toBe(-1);
    const off = pc.getOrCreate(42);
    expect(off % 1024).toBe(0);
    expect(pc.words.subarray(off, off + 1024).every((w) => w === 0)).toBe(true);
    pc.words[off + 7] = 0x1234;
    expect(pc.getOrCreate(42)).toBe(off);
    expect(pc.lookup(42)).toBe(off);
    expect(pc.lookup(43)).toBe(-1);
    expect(pc.lookup(0)).toBe(-1);
    const z = pc.getOrCreate(0); // pfn 0 is a frame like any other
    expect(z).not.toBe(off);
    expect(pc.lookup(0)).toBe(z);
    expect(pc.words[pc.lookup(42) + 7]).toBe(0x1234);
    expect(pc.bytes()).toBe(2 * 4096);
  });

  it('keeps every other entry reachable through drops inside clusters (backward shift)', () => {
    const n = 2000;
    const pc = new PageContent(PageContent.createHandle(n));
    // Pfns in a stride that multiplicative hashing clusters (and random ones).
    let x = 12345;
    const pfns: number[] = [];
    for (let i = 0; i < n; i++) {
      x = (Math.imul(x, 1103515245) + 12345) >>> 1;
      pfns.push(i % 2 === 0 ? i * 4096 : x % 0x40000000);
    }
    const uniq = [...new Set(pfns)];
    const mark = new Map<number, number>();
    for (const p of uniq) {
      const off = pc.getOrCreate(p);
      pc.words[off] = p + 1;
      mark.set(p, off);
    }
    // Drop every third in a scrambled order, checking all survivors after each batch.
    const dropped = new Set<number>();
    for (let i = 0; i < uniq.length; i += 3) {
      const p = uniq[(i * 7919) % uniq.length]!;
      if (dropped.has(p)) continue;
      pc.drop(p);
      dropped.add(p);
    }
    for (const p of uniq) {
      if (dropped.has(p)) expect(pc.lookup(p)).toBe(-1);
      else {
        const off = pc.lookup(p);
        expect(off).toBe(mark.get(p));
        expect(pc.words[off]).toBe(p + 1);
      }
    }
    expect(pc.bytes()).toBe((uniq.length - dropped.size) * 4096);
    pc.drop(0x7ffffff0); // never had content: nothing happens
    expect(pc.bytes()).toBe((uniq.length - dropped.size) * 4096);
  });

  it('returns a dropped frame\'s page zeroed and reuses it for the next frame', () => {
    const pc = new PageContent(PageContent.createHandle(4));
    const a = pc.getOrCreate(100);
    pc.words.fill(-1, a, a + 1024);
    pc.drop(100);
    expect(pc.lookup(100)).toBe(-1);
    const b = pc.getOrCreate(200);
    expect(b).toBe(a);
    expect(pc.words.subarray(b, b + 1024).every((w) => w === 0)).toBe(true);
    // The dropped frame comes back with fresh (zero) content, not its old bytes.
    const c = pc.getOrCreate(100);
    expect(pc.words.subarray(c, c + 1024).every((w) => w === 0)).toBe(true);
  });

  it('grows in place past its initial capacity; another view of the same handle refreshes on lookup', () => {
    const h = PageContent.createHandle(1000);
    const pc = new PageContent(h);
    const other = PageContent.attach(h); // another thread's views, made before the growth
    const cap0 = pc.capacity;
    expect(cap0).toBeLessThan(100);
    for (let p = 0; p < 300; p++) {
      const off = pc.getOrCreate(p * 3); // may grow: read pc.words after the call
      pc.words[off] = p + 7;
    }
    expect(pc.capacity).toBeGreaterThanOrEqual(300);
    expect(other.capacity).toBe(cap0);
    for (let p = 0; p < 300; p++) {
      const off = other.lookup(p * 3);
      expect(off).toBeGreaterThanOrEqual(0);
      expect(other.words[off]).toBe(p + 7);
    }
    expect(other.capacity).toBeGreaterThanOrEqual(300);
    expect(pc.committedBytes()).toBeGreaterThanOrEqual(300 * 4096);
  });

  it('fails with ENOMEM when every content page is live, and succeeds again after a drop', () => {
    const pc = new PageContent(PageContent.createHandle(3));
    for (const p of [1, 2, 3]) pc.getOrCreate(p);
    expect(errnoOf(() => pc.getOrCreate(4))).toBe('ENOMEM');
    expect(pc.getOrCreate(2)).toBeGreaterThanOrEqual(0); // existing frames still resolve
    pc.drop(1);
    expect(errnoOf(() => pc.getOrCreate(4))).toBe(null);
    expect(pc.bytes()).toBe(3 * 4096);
  });

  it('rejects bad sizes and pfns with EINVAL', () => {
    expect(errnoOf(() => PageContent.createHandle(0))).toBe('EINVAL');
    expect(errnoOf(() => PageContent.createHandle(2 ** 20 + 1))).toBe('EINVAL');
    const pc = new PageContent(PageContent.createHandle(2));
    expect(errnoOf(() => pc.getOrCreate(-1))).toBe('EINVAL');
    expect(errnoOf(() => pc.getOrCreate(1.5))).toBe('EINVAL');
  });

  it('reserves up to 4 GiB (2^20 pages) without committing it', () => {
    const pc = new PageContent(PageContent.createHandle(2 ** 20));
    expect(pc.handle.content.byteLength).toBeLessThan(2 ** 20);
    expect(pc.getOrCreate(2 ** 30)).toBe(0);
  });
});
