/**
 * A reader/writer lock simulated on a modeled-time timeline, so that the deterministic modeled
 * clock (not only wall time) sees lock waits.
 *
 * What is modeled. A thread that acquires the lock at modeled time t and holds it for h ns of
 * modeled work is *placed* on one shared timeline: a write hold at the earliest s >= t where
 * [s, s + h) overlaps no placed hold, read or write; a read hold at the earliest s >= t where it
 * overlaps no placed write hold (readers share). The caller adds the wait s - t to its clock.
 * h is the modeled cost of the operations done under the lock, known only at release, so the
 * caller notes t at acquire and places (t, h) at release; the operations do not depend on the
 * wait, so placing after the fact is exact for the model.
 *
 * Why gaps are filled, not appended to. Threads place in the order they run, which is not
 * modeled-time order: a worker runs one thread's slice of thousands of accesses, then another's,
 * and the second asks for times earlier than the first already reached. A FIFO "free-at" lock
 * (s = max(t, end of the last hold)) would make every hold of the second slice wait for the end
 * of the first slice, serialising the two slices' non-lock work as well as their critical
 * sections. Placing into the earliest gap that fits interleaves the holds as threads running at
 * the same time would.
 *
 * What is not modeled.
 * - Writer preference / fairness: a queued writer in a real qrwlock holds off readers that come
 *   after it; here a writer placed after readers waits for a gap in their union, however long.
 *   Acceptable because readers and writers from the vCPU side mix only when a TDP VM also runs
 *   a nested guest (the nested guest's faults go through the shadow MMU, under write).
 * - Arrival order within modeled time: a hold placed earlier (in real order) keeps its place
 *   when a request with an earlier t arrives later; the late request fills the gaps around it.
 * - Handoff cost, spinning or sleeping: the cost model counts the lock operations themselves.
 * - Zero-length holds occupy no time: they are counted and placed but not stored, so a later
 *   hold may cover their instant without costing anyone. One never starts strictly inside the
 *   (coalesced) write holds, nor, for a writer, the read union: not even at the instant one
 *   write hold hands over to the next, since touching holds are one interval here.
 *
 * Storage: one SAB shared by the workers running one VM's threads. A spinlock word guards two
 * sorted arrays of [start, end) Float64 pairs — the write holds (disjoint, touching neighbours
 * coalesced) and the union of the read holds (overlapping or touching ones coalesced) — plus a
 * header. Capacity is bounded: when an array is full its oldest quarter is dropped and that
 * array's floor rises to the end of what was dropped; a request that would have to be checked
 * against a dropped interval is treated as made at that floor, since the history is gone and
 * starting before it could overlap a dropped hold. A write checks both arrays, so it starts at or
 * after both floors; a read checks only the write holds (readers share), so only the write floor
 * bounds it: a dropped read interval excludes no reader, and flooring readers at it would make a
 * lagging vCPU's TDP faults wait in modeled time for nothing (4 vCPUs x 1 GiB, 2 workers: 92 ms
 * of phantom read waits, up to 17 ms each, before the floors were split). Every write starts
 * after every dropped interval and every read after every dropped write, so exclusion holds for
 * everything ever placed. Size the capacity above the holds one round of
 * slices leaves apart (threads x holds per slice, when the lock is not saturated): below that,
 * the floor overtakes threads whose slice has not run yet and inflates their waits (16 threads
 * x 2000-fault slices, lightly loaded: mean wait 599 ns at 1<<14, 249.5 ns at 1<<16 and above).
 *
 * Each array is a gap buffer: its free slots form one gap at a logical index, and an insertion
 * first moves the gap there. A slice's holds are placed in increasing time, so successive
 * insertions into the middle of the timeline move the gap a short way each instead of shifting
 * the whole tail every time (a copyWithin on a SAB moved ~7 µs per 128 KiB here).
 *
 * Layout (bytes):
 *   0    Int32 lock word (spinlock.ts)       4  Int32 capacity (intervals per array)
 *   8    Int32 retained write intervals      12 Int32 retained read intervals
 *   16   Float64 write floor                 24 Float64 write placements
 *   32   Float64 read placements             40 Float64 dropped intervals
 *   48   Int32 write gap (logical index)     52 Int32 read gap
 *   56   Float64 read floor
 *   128  write intervals: capacity x [start, end) Float64
 *   ...  read intervals:  capacity x [start, end) Float64
 * Every word past the lock word is touched only under the spinlock, whose Atomics acquire and
 * release order those plain accesses between holders.
 *
 * Hot path (every shadow-MMU fault): saturated write holds coalesce into one interval and
 * requests come roughly in time order, so the searches first test the last one or two
 * intervals (O(1)) before a binary search, and extending the last interval or appending after
 * it (the gap stays at the end) copies nothing. Nothing is allocated per call.
 */
import { fail } from '../host/errno.js';
import { allocSab } from './arena.js';
import { spinLock, spinUnlock } from './spinlock.js';

export const enum TimelineRwlockLayout {
  /** Int32 index of the spinlock word. */
  kLock = 0,
  /** Int32 index: intervals each array can hold. */
  kCapacity = 1,
  /** Int32 index: retained write intervals (the read count follows). */
  kWriteCount = 2,
  kReadCount = 3,
  /** Int32 index: logical index of the write array's gap (the read gap follows). */
  kWriteGap = 12,
  kReadGap = 13,
  /** Float64 index: end of the dropped write holds; no placement starts before it. */
  kWriteFloor = 2,
  /** Float64 index: placeWrite calls since reset. */
  kWriteHolds = 3,
  /** Float64 index: placeRead calls since reset. */
  kReadHolds = 4,
  /** Float64 index: intervals dropped for capacity since reset. */
  kDrops = 5,
  /** Float64 index: end of the dropped read union; no write starts before it. */
  kReadFloor = 7,
  /** Float64 index of the first write interval (byte 128: the header keeps its own line). */
  kWriteBase = 16,
  kDefaultCapacity = 1 << 14,
  /** Smallest capacity: a quarter of it must be at least one interval. */
  kMinCapacity = 4,
  kMaxCapacity = 1 << 24,
}

export interface TimelineRwlockStats {
  /** placeWrite calls since reset. */
  writeHolds: number;
  /** placeRead calls since reset. */
  readHolds: number;
  /** Intervals retained now (write + read arrays). */
  intervals: number;
  /** Intervals dropped to stay within capacity since reset. */
  drops: number;
  /** Write requests before this time are treated as made at it (both arrays' drops). */
  floor: number;
  /** Read requests before this time are treated as made at it (the write holds' drops). */
  readFloor: number;
}

export class TimelineRwlock {
  private readonly words: Int32Array;
  private readonly f: Float64Array;
  private readonly capacity: number;
  private readonly readBase: number;

  /** Attach to a timeline created by `create()` (in this thread or another). */
  constructor(readonly sab: SharedArrayBuffer) {
    this.words = new Int32Array(sab);
    this.f = new Float64Array(sab);
    // Written once before the SAB was shared (postMessage orders it), never again.
    this.capacity = this.words[TimelineRwlockLayout.kCapacity]!;
    this.readBase = TimelineRwlockLayout.kWriteBase + 2 * this.capacity;
    if (this.capacity < TimelineRwlockLayout.kMinCapacity || sab.byteLength < (this.readBase + 2 * this.capacity) * 8) {
      fail('EINVAL', 'timeline rwlock: this SharedArrayBuffer was not made by TimelineRwlock.create()');
    }
  }

  /** `capacity`: intervals retained per array before the oldest quarter is dropped (default 16384). */
  static create(opts: { capacity?: number } = {}): TimelineRwlock {
    const capacity = opts.capacity ?? TimelineRwlockLayout.kDefaultCapacity;
    if (!Number.isInteger(capacity) || capacity < TimelineRwlockLayout.kMinCapacity || capacity > TimelineRwlockLayout.kMaxCapacity) {
      fail('EINVAL', `timeline rwlock capacity ${capacity}: give an integer from ${TimelineRwlockLayout.kMinCapacity} to ${TimelineRwlockLayout.kMaxCapacity}`);
    }
    const sab = allocSab((TimelineRwlockLayout.kWriteBase + 4 * capacity) * 8);
    new Int32Array(sab)[TimelineRwlockLayout.kCapacity] = capacity;
    return new TimelineRwlock(sab);
  }

  /**
   * Place a write hold of h ns requested at t: the earliest s >= max(t, both floors) where [s, s + h)
   * overlaps no placed hold. Records it and returns the wait s - t.
   */
  placeWrite(t: number, h: number): number {
    checkRequest(t, h);
    const w = this.words;
    const f = this.f;
    const cap = this.capacity;
    spinLock(w, TimelineRwlockLayout.kLock);
    if (w[TimelineRwlockLayout.kWriteCount] === cap) this.drop(TimelineRwlockLayout.kWriteBase, TimelineRwlockLayout.kWriteCount, TimelineRwlockLayout.kWriteGap, TimelineRwlockLayout.kWriteFloor);
    const wb = TimelineRwlockLayout.kWriteBase;
    const nW = w[TimelineRwlockLayout.kWriteCount]!;
    const gW = w[TimelineRwlockLayout.kWriteGap]!;
    const glW = cap - nW;
    const rb = this.readBase;
    const nR = w[TimelineRwlockLayout.kReadCount]!;
    const gR = w[TimelineRwlockLayout.kReadGap]!;
    const glR = cap - nR;
    let s = Math.max(t, f[TimelineRwlockLayout.kWriteFloor]!, f[TimelineRwlockLayout.kReadFloor]!);
    // i, j: the first write / read interval ending after s; those before cannot overlap [s, ...).
    let i = firstEndAfter(f, wb, nW, gW, glW, s);
    let j = firstEndAfter(f, rb, nR, gR, glR, s);
    // Interval [a, b) with b > s overlaps [s, s + h) iff a < s + h (for h = 0: s strictly inside).
    for (;;) {
      if (i < nW && f[px(wb, gW, glW, i)]! < s + h) {
        s = f[px(wb, gW, glW, i) + 1]!;
        i++;
        while (j < nR && f[px(rb, gR, glR, j) + 1]! <= s) j++;
      } else if (j < nR && f[px(rb, gR, glR, j)]! < s + h) {
        s = f[px(rb, gR, glR, j) + 1]!;
        j++;
        while (i < nW && f[px(wb, gW, glW, i) + 1]! <= s) i++;
      } else break;
    }
    if (h > 0) insertDisjoint(f, w, wb, TimelineRwlockLayout.kWriteCount, TimelineRwlockLayout.kWriteGap, cap, i, s, s + h);
    f[TimelineRwlockLayout.kWriteHolds] = f[TimelineRwlockLayout.kWriteHolds]! + 1;
    spinUnlock(w, TimelineRwlockLayout.kLock);
    return s - t;
  }

  /**
   * Place a read hold of h ns requested at t: the earliest s >= max(t, write floor) where
   * [s, s + h) overlaps no placed write hold (readers share: the read floor does not apply).
   * Records it and returns the wait s - t.
   */
  placeRead(t: number, h: number): number {
    checkRequest(t, h);
    const w = this.words;
    const f = this.f;
    const cap = this.capacity;
    spinLock(w, TimelineRwlockLayout.kLock);
    if (w[TimelineRwlockLayout.kReadCount] === cap) this.drop(this.readBase, TimelineRwlockLayout.kReadCount, TimelineRwlockLayout.kReadGap, TimelineRwlockLayout.kReadFloor);
    const wb = TimelineRwlockLayout.kWriteBase;
    const nW = w[TimelineRwlockLayout.kWriteCount]!;
    const gW = w[TimelineRwlockLayout.kWriteGap]!;
    const glW = cap - nW;
    let s = Math.max(t, f[TimelineRwlockLayout.kWriteFloor]!);
    let i = firstEndAfter(f, wb, nW, gW, glW, s);
    while (i < nW && f[px(wb, gW, glW, i)]! < s + h) {
      s = f[px(wb, gW, glW, i) + 1]!;
      i++;
    }
    if (h > 0) insertUnion(f, w, this.readBase, TimelineRwlockLayout.kReadCount, TimelineRwlockLayout.kReadGap, cap, s, s + h);
    f[TimelineRwlockLayout.kReadHolds] = f[TimelineRwlockLayout.kReadHolds]! + 1;
    spinUnlock(w, TimelineRwlockLayout.kLock);
    return s - t;
  }

  /** Forget every hold and the floor (between phases, when no thread places). */
  reset(): void {
    const w = this.words;
    spinLock(w, TimelineRwlockLayout.kLock);
    w[TimelineRwlockLayout.kWriteCount] = 0;
    w[TimelineRwlockLayout.kReadCount] = 0;
    w[TimelineRwlockLayout.kWriteGap] = 0;
    w[TimelineRwlockLayout.kReadGap] = 0;
    this.f.fill(0, TimelineRwlockLayout.kWriteFloor, TimelineRwlockLayout.kDrops + 1);
    this.f[TimelineRwlockLayout.kReadFloor] = 0;
    spinUnlock(w, TimelineRwlockLayout.kLock);
  }

  stats(): TimelineRwlockStats {
    const w = this.words;
    const f = this.f;
    spinLock(w, TimelineRwlockLayout.kLock);
    const r: TimelineRwlockStats = {
      writeHolds: f[TimelineRwlockLayout.kWriteHolds]!,
      readHolds: f[TimelineRwlockLayout.kReadHolds]!,
      intervals: w[TimelineRwlockLayout.kWriteCount]! + w[TimelineRwlockLayout.kReadCount]!,
      drops: f[TimelineRwlockLayout.kDrops]!,
      floor: Math.max(f[TimelineRwlockLayout.kWriteFloor]!, f[TimelineRwlockLayout.kReadFloor]!),
      readFloor: f[TimelineRwlockLayout.kWriteFloor]!,
    };
    spinUnlock(w, TimelineRwlockLayout.kLock);
    return r;
  }

  /** End of the last write hold (0 when none is retained). */
  busyUntil(): number {
    const w = this.words;
    spinLock(w, TimelineRwlockLayout.kLock);
    const n = w[TimelineRwlockLayout.kWriteCount]!;
    const g = w[TimelineRwlockLayout.kWriteGap]!;
    const end = n === 0 ? 0 : this.f[px(TimelineRwlockLayout.kWriteBase, g, this.capacity - n, n - 1) + 1]!;
    spinUnlock(w, TimelineRwlockLayout.kLock);
    return end;
  }

  /** A copy of the retained intervals in time order as [start0, end0, start1, end1, ...], for audits and tests. */
  intervals(kind: 'write' | 'read'): Float64Array {
    const w = this.words;
    const a = kind === 'write' ? 0 : 1;
    const base = a === 0 ? TimelineRwlockLayout.kWriteBase : this.readBase;
    spinLock(w, TimelineRwlockLayout.kLock);
    const n = w[TimelineRwlockLayout.kWriteCount + a]!;
    const g = w[TimelineRwlockLayout.kWriteGap + a]!;
    const out = new Float64Array(2 * n);
    out.set(this.f.subarray(base, base + 2 * g), 0);
    out.set(this.f.subarray(base + 2 * (g + this.capacity - n), base + 2 * this.capacity), 2 * g);
    spinUnlock(w, TimelineRwlockLayout.kLock);
    return out;
  }

  /**
   * Under the lock, with the array full (no gap, so logical = physical): drop its oldest quarter
   * and raise its floor (`floorIdx`) past it. The dropped quarter becomes the gap, at logical index 0.
   */
  private drop(base: number, countWord: number, gapWord: number, floorIdx: number): void {
    const f = this.f;
    const w = this.words;
    const q = this.capacity >>> 2;
    const end = f[base + 2 * q - 1]!;
    if (end > f[floorIdx]!) f[floorIdx] = end;
    w[countWord] = this.capacity - q;
    w[gapWord] = 0;
    f[TimelineRwlockLayout.kDrops] = f[TimelineRwlockLayout.kDrops]! + q;
  }
}

function checkRequest(t: number, h: number): void {
  // One comparison chain rejects NaN, negatives and infinities.
  if (!(t >= 0 && h >= 0 && t + h < Infinity)) fail('EINVAL', `timeline rwlock: request at t=${t} for h=${h} ns; both must be finite and >= 0`);
}

/** Float64 index of the start of logical interval i in an array at `base` whose gap of gl slots is at logical g. */
function px(base: number, g: number, gl: number, i: number): number {
  return base + 2 * (i < g ? i : i + gl);
}

/** Move an array's gap from logical g to logical `to`, shifting the intervals between. */
function moveGap(f: Float64Array, base: number, g: number, gl: number, to: number): void {
  if (to < g) f.copyWithin(base + 2 * (to + gl), base + 2 * to, base + 2 * g);
  else if (to > g) f.copyWithin(base + 2 * g, base + 2 * (g + gl), base + 2 * (to + gl));
}

/**
 * Logical index of the first of the n intervals whose end is > x (n if none). Ends are sorted
 * because the intervals are disjoint and sorted. The last two are tested first: that answers
 * requests at or near the end of the timeline without a search.
 */
function firstEndAfter(f: Float64Array, base: number, n: number, g: number, gl: number, x: number): number {
  if (n === 0 || f[px(base, g, gl, n - 1) + 1]! <= x) return n;
  if (n === 1 || f[px(base, g, gl, n - 2) + 1]! <= x) return n - 1;
  let lo = 0;
  let hi = n - 2; // the end of hi is > x
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (f[px(base, g, gl, mid) + 1]! > x) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

/**
 * Insert [s, e) into an array of disjoint sorted intervals at logical index i (those before i
 * end <= s, the one at i starts >= e), coalescing touching neighbours. The caller made room.
 */
function insertDisjoint(f: Float64Array, w: Int32Array, base: number, countWord: number, gapWord: number, cap: number, i: number, s: number, e: number): void {
  const n = w[countWord]!;
  const g = w[gapWord]!;
  const gl = cap - n;
  const joinsPrev = i > 0 && f[px(base, g, gl, i - 1) + 1] === s;
  const joinsNext = i < n && f[px(base, g, gl, i)] === e;
  if (joinsPrev && joinsNext) {
    f[px(base, g, gl, i - 1) + 1] = f[px(base, g, gl, i) + 1]!;
    // Interval i becomes the last slot before the gap, then part of it.
    moveGap(f, base, g, gl, i + 1);
    w[gapWord] = i;
    w[countWord] = n - 1;
  } else if (joinsPrev) {
    f[px(base, g, gl, i - 1) + 1] = e;
  } else if (joinsNext) {
    f[px(base, g, gl, i)] = s;
  } else {
    insertAt(f, w, base, countWord, gapWord, n, g, gl, i, s, e);
  }
}

function insertAt(f: Float64Array, w: Int32Array, base: number, countWord: number, gapWord: number, n: number, g: number, gl: number, i: number, s: number, e: number): void {
  moveGap(f, base, g, gl, i);
  f[base + 2 * i] = s;
  f[base + 2 * i + 1] = e;
  w[gapWord] = i + 1;
  w[countWord] = n + 1;
}

/**
 * Add [s, e) to the union held as disjoint sorted intervals (none touching): every interval
 * that overlaps or touches it merges into one. The caller made room.
 */
function insertUnion(f: Float64Array, w: Int32Array, base: number, countWord: number, gapWord: number, cap: number, s: number, e: number): void {
  const n = w[countWord]!;
  const g = w[gapWord]!;
  const gl = cap - n;
  // k: the first interval that ends at or after s (so may touch or overlap [s, e)).
  let k = firstEndAfter(f, base, n, g, gl, s);
  if (k > 0 && f[px(base, g, gl, k - 1) + 1] === s) k--;
  let m = k; // one past the last interval that merges
  while (m < n && f[px(base, g, gl, m)]! <= e) m++;
  if (m === k) {
    insertAt(f, w, base, countWord, gapWord, n, g, gl, k, s, e);
    return;
  }
  const at = px(base, g, gl, k);
  if (s < f[at]!) f[at] = s;
  const last = f[px(base, g, gl, m - 1) + 1]!;
  f[at + 1] = e > last ? e : last;
  if (m > k + 1) {
    // Intervals k+1 .. m-1 end up just before the gap, then become part of it.
    moveGap(f, base, g, gl, m);
    w[gapWord] = k + 1;
    w[countWord] = n - (m - k - 1);
  }
}
