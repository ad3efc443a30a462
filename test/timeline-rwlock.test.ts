// The timeline rwlock places each hold at the earliest modeled time that keeps writers exclusive
// and readers shared, filling gaps left by earlier placements (requests arrive out of modeled-time
// order). Checked on hand-picked cases, against a brute-force reference on random sequences, under
// capacity pruning, and with two worker threads placing on one SAB.
import { describe, expect, it } from 'vitest';
import { Worker } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import { TimelineRwlock } from '../src/shm/timeline-rwlock.js';
import { errnoOf } from './fixtures/errno.js';

type Kind = 'write' | 'read';
interface Hold { kind: Kind; s: number; e: number }

/**
 * Brute force: every hold in a list; jump past any conflicting one until none conflicts. A
 * zero-length hold may not start strictly inside the union of the holds of a conflicting kind
 * (so not at the instant one write hold hands over to the next), hence the unions for h = 0.
 */
class Reference {
  holds: Hold[] = [];
  place(kind: Kind, t: number, h: number): number {
    const against: Hold[] = h > 0
      ? this.holds.filter((x) => kind === 'write' || x.kind === 'write')
      : (kind === 'write' ? [...union(this.holds, 'write'), ...union(this.holds, 'read')] : union(this.holds, 'write'))
        .map(([s0, e0]) => ({ kind: 'write' as Kind, s: s0, e: e0 }));
    let s = t;
    for (let moved = true; moved;) {
      moved = false;
      for (const x of against) {
        // [x.s, x.e) overlaps [s, s + h); for h = 0, s strictly inside it.
        if (x.s < s + h && s < x.e) { s = x.e; moved = true; }
      }
    }
    if (h > 0) this.holds.push({ kind, s, e: s + h });
    return s - t;
  }
}

/** Deterministic PRNG (mulberry32). */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function pairs(a: Float64Array): [number, number][] {
  const out: [number, number][] = [];
  for (let i = 0; i < a.length; i += 2) out.push([a[i]!, a[i + 1]!]);
  return out;
}

/** Sorted, non-empty, and neither overlapping nor touching (touching neighbours are coalesced). */
function expectCoalesced(iv: [number, number][]): void {
  for (let i = 0; i < iv.length; i++) {
    expect(iv[i]![0]).toBeLessThan(iv[i]![1]);
    if (i > 0) expect(iv[i - 1]![1]).toBeLessThan(iv[i]![0]);
  }
}

/** No two write holds overlap and no write overlaps a read (the first violation, or null). */
function expectExclusion(holds: Hold[]): void {
  const writes = holds.filter((x) => x.kind === 'write').sort((a, b) => a.s - b.s);
  const reads = holds.filter((x) => x.kind === 'read');
  let bad: string | null = null;
  for (let i = 1; i < writes.length && bad === null; i++) {
    if (writes[i - 1]!.e > writes[i]!.s) bad = `writes ${JSON.stringify([writes[i - 1], writes[i]])}`;
  }
  for (const r of reads) for (const w of writes) if (bad === null && r.s < w.e && w.s < r.e) bad = `read ${JSON.stringify(r)} write ${JSON.stringify(w)}`;
  expect(bad).toBeNull();
}

/** The union of the holds of one kind, coalesced as the structure keeps it. */
function union(holds: Hold[], kind: Kind): [number, number][] {
  const xs = holds.filter((x) => x.kind === kind).sort((a, b) => a.s - b.s);
  const out: [number, number][] = [];
  for (const x of xs) {
    const last = out[out.length - 1];
    if (last !== undefined && x.s <= last[1]) last[1] = Math.max(last[1], x.e);
    else out.push([x.s, x.e]);
  }
  return out;
}

describe('timeline rwlock: exclusion and sharing', () => {
  it('serialises writers at the same t and lets readers at the same t share', () => {
    const l = TimelineRwlock.create();
    expect(l.placeWrite(100, 30)).toBe(0);
    expect(l.placeWrite(100, 50)).toBe(30);
    expect(l.busyUntil()).toBe(180);
    const r = TimelineRwlock.create();
    expect(r.placeRead(100, 30)).toBe(0);
    expect(r.placeRead(100, 50)).toBe(0);
    expect(pairs(r.intervals('read'))).toEqual([[100, 150]]);
    expect(r.busyUntil()).toBe(0);
  });

  it('makes a reader inside a write hold wait for its end, and a writer inside a read hold too', () => {
    const l = TimelineRwlock.create();
    l.placeWrite(100, 50);
    expect(l.placeRead(120, 10)).toBe(30);
    const r = TimelineRwlock.create();
    r.placeRead(100, 50);
    r.placeRead(130, 40); // union [100, 170)
    expect(r.placeWrite(120, 10)).toBe(50);
    expect(r.placeWrite(90, 10)).toBe(0); // ends exactly where the read union starts
    expect(r.placeWrite(90, 11)).toBe(90); // one ns longer: past [90, 100), the reads and [170, 180)
  });

  it('never starts a zero-length hold strictly inside a write hold, and stores none', () => {
    const l = TimelineRwlock.create();
    l.placeWrite(100, 50);
    expect(l.placeWrite(120, 0)).toBe(30);
    expect(l.placeRead(149, 0)).toBe(1);
    expect(l.placeRead(100, 0)).toBe(0); // at the start is not inside
    expect(l.placeWrite(150, 0)).toBe(0);
    expect(l.stats()).toEqual({ writeHolds: 3, readHolds: 2, intervals: 1, drops: 0, floor: 0, readFloor: 0 });
  });

  it('fills earlier gaps for requests that arrive out of modeled-time order', () => {
    const a = TimelineRwlock.create();
    expect(a.placeWrite(1000, 1000)).toBe(0);
    expect(a.placeWrite(0, 500)).toBe(0);
    expect(a.placeWrite(0, 1500)).toBe(2000); // the gap [500, 1000) is too short
    expect(a.placeWrite(0, 500)).toBe(500); // but this one fits it exactly, and coalesces
    expect(pairs(a.intervals('write'))).toEqual([[0, 3500]]);
    const b = TimelineRwlock.create();
    b.placeWrite(1000, 1000);
    expect(b.placeWrite(0, 1500)).toBe(2000);
    // Out-of-order reads fill gaps between writes too.
    expect(b.placeRead(0, 1000)).toBe(0);
    expect(b.placeRead(0, 1001)).toBe(3500);
  });

  it('coalesces saturated writes into one interval', () => {
    const l = TimelineRwlock.create();
    let waits = 0;
    for (let k = 0; k < 1000; k++) waits += l.placeWrite(k, 10); // asks every 1 ns, holds 10
    expect(l.busyUntil()).toBe(10_000);
    expect(waits).toBe((9 * 999 * 1000) / 2); // request k waits 10k - k
    expect(l.stats().intervals).toBe(1);
  });
});

describe('timeline rwlock: against a brute-force reference', () => {
  for (const seed of [1, 2, 3, 4, 5, 6]) {
    it(`gives identical answers on a random sequence (seed ${seed})`, () => {
      const r = rng(seed);
      const l = TimelineRwlock.create({ capacity: 1 << 12 });
      const ref = new Reference();
      // Small integer times and holds so requests collide, touch and fill gaps; odd seeds use
      // fractional times (sums of doubles must come out bit-identical too).
      const frac = seed % 2 === 1;
      const readPct = [0, 30, 50, 90, 100, 10][seed - 1]!;
      for (let k = 0; k < 1500; k++) {
        const t = Math.floor(r() * 3000) + (frac ? r() : 0);
        const h = r() < 0.1 ? 0 : Math.floor(r() * 40) + (frac ? r() : 0);
        const kind: Kind = r() * 100 < readPct ? 'read' : 'write';
        const got = kind === 'write' ? l.placeWrite(t, h) : l.placeRead(t, h);
        expect(got, `request ${k}: ${kind} t=${t} h=${h}`).toBe(ref.place(kind, t, h));
      }
      expectExclusion(ref.holds);
      const w = pairs(l.intervals('write'));
      const rd = pairs(l.intervals('read'));
      expectCoalesced(w);
      expectCoalesced(rd);
      expect(w).toEqual(union(ref.holds, 'write'));
      expect(rd).toEqual(union(ref.holds, 'read'));
      const s = l.stats();
      expect(s.drops).toBe(0);
      expect(s.writeHolds + s.readHolds).toBe(1500);
      expect(s.intervals).toBe(w.length + rd.length);
      expect(l.busyUntil()).toBe(w.length === 0 ? 0 : w[w.length - 1]![1]);
    });
  }
});

describe('timeline rwlock: bounded capacity', () => {
  function run(capacity: number): { answers: number[]; holds: Hold[]; floors: number[]; l: TimelineRwlock } {
    const r = rng(99);
    const l = TimelineRwlock.create({ capacity });
    const answers: number[] = [];
    const holds: Hold[] = [];
    const floors: number[] = [];
    for (let k = 0; k < 3000; k++) {
      // Times drift forward (as vCPU clocks do) with slices reaching back up to 2000 ns.
      const t = Math.max(0, Math.floor(k * 20 - r() * 2000));
      const h = 1 + Math.floor(r() * 15);
      const kind: Kind = r() < 0.4 ? 'read' : 'write';
      const wait = kind === 'write' ? l.placeWrite(t, h) : l.placeRead(t, h);
      // A drop happens before the search, so even this request starts at or after its floor
      // (a write: both arrays' drops; a read: only the dropped write holds).
      const st = l.stats();
      const floor = st.floor;
      expect(t + wait).toBeGreaterThanOrEqual(kind === 'write' ? floor : st.readFloor);
      expect(st.readFloor).toBeLessThanOrEqual(floor);
      answers.push(wait);
      holds.push({ kind, s: t + wait, e: t + wait + h });
      floors.push(floor);
    }
    return { answers, holds, floors, l };
  }

  it('drops the oldest quarter, raises the floor, keeps exclusion, and repeats exactly', () => {
    const a = run(8);
    // Exclusion over every hold ever placed, retained or dropped (without the floor, a late
    // request would overlap a dropped hold).
    expectExclusion(a.holds);
    const s = a.l.stats();
    expect(s.drops).toBeGreaterThan(0);
    expect(s.drops % 2).toBe(0); // whole quarters of 8
    expect(s.intervals).toBeLessThanOrEqual(16);
    expect(s.floor).toBeGreaterThan(0);
    for (let k = 1; k < a.floors.length; k++) expect(a.floors[k]).toBeGreaterThanOrEqual(a.floors[k - 1]!);
    const w = pairs(a.l.intervals('write'));
    const rd = pairs(a.l.intervals('read'));
    expectCoalesced(w);
    expectCoalesced(rd);
    for (const [rs, re] of rd) for (const [ws, we] of w) expect(rs < we && ws < re).toBe(false);
    expect(w.length + rd.length).toBe(s.intervals);
    const b = run(8);
    expect(b.answers).toEqual(a.answers);
    expect(b.l.stats()).toEqual(s);
    // A structure that never drops answers differently here (the floor changed answers), so the
    // pruned run is not trivially the unpruned one.
    expect(run(1 << 12).answers).not.toEqual(a.answers);
  });

  it('dropped read holds floor writers only: a lagging reader waits for no one, a lagging writer waits past them', () => {
    // Readers share, so a read needs checking only against write holds. Only read holds here:
    // the read union fills (disjoint holds, capacity 8) and drops quarters, raising the read floor.
    const l = TimelineRwlock.create({ capacity: 8 });
    for (let k = 0; k < 40; k++) expect(l.placeRead(100 * k, 10)).toBe(0);
    const s = l.stats();
    expect(s.drops).toBeGreaterThan(0);
    expect(s.floor).toBeGreaterThan(0);
    expect(s.readFloor).toBe(0);
    // A vCPU whose slice runs late asks for the lock at modeled time 5: no writer ever held it.
    expect(l.placeRead(5, 10)).toBe(0);
    // A writer at the same time must not overlap the dropped reads: it is floored past them.
    const wait = l.placeWrite(5, 10);
    expect(5 + wait).toBeGreaterThanOrEqual(s.floor);
    // Now a write hold is retained, and readers still only avoid it.
    expect(l.placeRead(7, 1)).toBe(0);
  });

  it('reset() forgets holds, floor and counts', () => {
    const a = run(8);
    a.l.reset();
    expect(a.l.stats()).toEqual({ writeHolds: 0, readHolds: 0, intervals: 0, drops: 0, floor: 0, readFloor: 0 });
    expect(a.l.busyUntil()).toBe(0);
    expect(a.l.placeWrite(0, 5)).toBe(0);
  });

  it('rejects bad capacities and requests with EINVAL', () => {
    expect(errnoOf(() => TimelineRwlock.create({ capacity: 3 }))).toBe('EINVAL');
    expect(errnoOf(() => TimelineRwlock.create({ capacity: 4.5 }))).toBe('EINVAL');
    expect(errnoOf(() => new TimelineRwlock(new SharedArrayBuffer(64)))).toBe('EINVAL');
    const l = TimelineRwlock.create({ capacity: 4 });
    expect(errnoOf(() => l.placeWrite(0, -1))).toBe('EINVAL');
    expect(errnoOf(() => l.placeRead(Number.NaN, 1))).toBe('EINVAL');
    expect(errnoOf(() => l.placeWrite(0, Infinity))).toBe('EINVAL');
    expect(errnoOf(() => l.placeRead(-1, 1))).toBe('EINVAL');
    expect(l.stats().writeHolds + l.stats().readHolds).toBe(0); // nothing recorded, lock left free
    expect(l.placeRead(0, 1)).toBe(0);
  });
});

describe('timeline rwlock: two worker threads on one SAB', () => {
  it('places every write disjointly and loses no hold length under the spinlock', async () => {
    const fixture = fileURLToPath(new URL('./fixtures/timeline-rwlock-writers.mjs', import.meta.url));
    const l = TimelineRwlock.create({ capacity: 1 << 17 });
    const barrier = new SharedArrayBuffer(4);
    const threads = 2;
    const iterations = 40_000;
    const runs = Array.from({ length: threads }, (_, t) => new Promise<{ thread: number; sumH: number; iterations: number }>((resolve, reject) => {
      const wk = new Worker(fixture, { workerData: { sab: l.sab, barrier, threads, seed: 11 + t, iterations, span: 400_000 } });
      wk.once('message', (m: { sumH: number; iterations: number }) => resolve({ thread: wk.threadId, ...m }));
      wk.once('error', reject);
    }));
    const done = await Promise.all(runs);
    expect(new Set(done.map((d) => d.thread)).size).toBe(threads);
    const s = l.stats();
    expect(s.writeHolds).toBe(threads * iterations);
    expect(s.drops).toBe(0);
    const w = pairs(l.intervals('write'));
    expectCoalesced(w);
    expect(w.length).toBeGreaterThan(1); // gaps were left and filled, not one appended run
    expect(w.reduce((a, [s0, e0]) => a + (e0 - s0), 0)).toBe(done.reduce((a, d) => a + d.sumH, 0));
  }, 60_000);
});
