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
 * header. Capacity is bounded: when an array is full its oldest quarter is dropped and `floor`
 * rises to the end of what was dropped; a request with t < floor is treated as made at floor,
 * since it cannot be checked against history that is gone and starting before the floor could
 * overlap a dropped hold. Every start is >= floor >= the end of any dropped interval, so
 * exclusion holds for everything ever placed.
 *
 * Layout (bytes):
 *   0    Int32 lock word (spinlock.ts)       4  Int32 capacity (intervals per array)
 *   8    Int32 retained write intervals      12 Int32 retained read intervals
 *   16   Float64 floor                       24 Float64 write placements
 *   32   Float64 read placements             40 Float64 dropped intervals
 *   128  write intervals: capacity x [start, end) Float64
 *   ...  read intervals:  capacity x [start, end) Float64
 * Every word past the lock word is touched only under the spinlock, whose Atomics acquire and
 * release order those plain accesses between holders.
 *
 * Hot path (every shadow-MMU fault): saturated write holds coalesce into one interval and
 * requests come roughly in time order, so the searches first test the last one or two
 * intervals (O(1)) before a binary search, and appending or extending the last interval does no
 * copying. Nothing is allocated per call.
 */
import { fail } from '../host/errno.js';
import { allocSab } from './arena.js';
import { spinLock, spinUnlock } from './spinlock.js';

export const enum TimelineRwlockLayout {
  /** Int32 index of the spinlock word. */
  kLock = 0,
  /** Int32 index: intervals each array can hold. */
  kCapacity = 1,
  /** Int32 index: retained write intervals. */
  kWriteCount = 2,
  /** Int32 index: retained read intervals. */
  kReadCount = 3,
  /** Float64 index: no placement starts before this time. */
  kFloor = 2,
  /** Float64 index: placeWrite calls since reset. */
  kWriteHolds = 3,
  /** Float64 index: placeRead calls since reset. */
  kReadHolds = 4,
  /** Float64 index: intervals dropped for capacity since reset. */
  kDrops = 5,
  /** Float64 index of the first write interval (byte 128: the header keeps its own line). */
  kWriteBase = 16,
  kDefaultCapacity = 1 << 14,
  /** Smallest capacity: a quarter of it must be at least one interval. */
  kMinCapacity = 4,
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
  /** Requests before this time are treated as made at it. */
  floor: number;
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
    if (!Number.isInteger(capacity) || capacity < TimelineRwlockLayout.kMinCapacity || capacity > 1 << 24) {
      fail('EINVAL', `timeline rwlock capacity ${capacity}: give an integer from ${TimelineRwlockLayout.kMinCapacity} to ${1 << 24}`);
    }
    const sab = allocSab((TimelineRwlockLayout.kWriteBase + 4 * capacity) * 8);
    new Int32Array(sab)[TimelineRwlockLayout.kCapacity] = capacity;
    return new TimelineRwlock(sab);
  }

  /**
   * Place a write hold of h ns requested at t: the earliest s >= max(t, floor) where [s, s + h)
   * overlaps no placed hold. Records it and returns the wait s - t.
   */
  placeWrite(t: number, h: number): number {
    checkRequest(t, h);
    const w = this.words;
    const f = this.f;
    spinLock(w, TimelineRwlockLayout.kLock);
    if (w[TimelineRwlockLayout.kWriteCount] === this.capacity) this.drop(TimelineRwlockLayout.kWriteBase, TimelineRwlockLayout.kWriteCount);
    const nW = w[TimelineRwlockLayout.kWriteCount]!;
    const nR = w[TimelineRwlockLayout.kReadCount]!;
    const wb = TimelineRwlockLayout.kWriteBase;
    const rb = this.readBase;
    let s = Math.max(t, f[TimelineRwlockLayout.kFloor]!);
    // i, j: the first write / read interval ending after s; those before cannot overlap [s, ...).
    let i = firstEndAfter(f, wb, nW, s);
    let j = firstEndAfter(f, rb, nR, s);
    // Interval [a, b) with b > s overlaps [s, s + h) iff a < s + h (for h = 0: s strictly inside).
    for (;;) {
      if (i < nW && f[wb + 2 * i]! < s + h) {
        s = f[wb + 2 * i + 1]!;
        i++;
        while (j < nR && f[rb + 2 * j + 1]! <= s) j++;
      } else if (j < nR && f[rb + 2 * j]! < s + h) {
        s = f[rb + 2 * j + 1]!;
        j++;
        while (i < nW && f[wb + 2 * i + 1]! <= s) i++;
      } else break;
    }
    if (h > 0) w[TimelineRwlockLayout.kWriteCount] = insertDisjoint(f, wb, nW, i, s, s + h);
    f[TimelineRwlockLayout.kWriteHolds] = f[TimelineRwlockLayout.kWriteHolds]! + 1;
    spinUnlock(w, TimelineRwlockLayout.kLock);
    return s - t;
  }

  /**
   * Place a read hold of h ns requested at t: the earliest s >= max(t, floor) where [s, s + h)
   * overlaps no placed write hold (readers share). Records it and returns the wait s - t.
   */
  placeRead(t: number, h: number): number {
    checkRequest(t, h);
    const w = this.words;
    const f = this.f;
    spinLock(w, TimelineRwlockLayout.kLock);
    if (w[TimelineRwlockLayout.kReadCount] === this.capacity) this.drop(this.readBase, TimelineRwlockLayout.kReadCount);
    const nW = w[TimelineRwlockLayout.kWriteCount]!;
    const wb = TimelineRwlockLayout.kWriteBase;
    let s = Math.max(t, f[TimelineRwlockLayout.kFloor]!);
    let i = firstEndAfter(f, wb, nW, s);
    while (i < nW && f[wb + 2 * i]! < s + h) {
      s = f[wb + 2 * i + 1]!;
      i++;
    }
    if (h > 0) w[TimelineRwlockLayout.kReadCount] = insertUnion(f, this.readBase, w[TimelineRwlockLayout.kReadCount]!, s, s + h);
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
    this.f.fill(0, TimelineRwlockLayout.kFloor, TimelineRwlockLayout.kDrops + 1);
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
      floor: f[TimelineRwlockLayout.kFloor]!,
    };
    spinUnlock(w, TimelineRwlockLayout.kLock);
    return r;
  }

  /** End of the last write hold (0 when none is retained). */
  busyUntil(): number {
    const w = this.words;
    spinLock(w, TimelineRwlockLayout.kLock);
    const n = w[TimelineRwlockLayout.kWriteCount]!;
    const end = n === 0 ? 0 : this.f[TimelineRwlockLayout.kWriteBase + 2 * n - 1]!;
    spinUnlock(w, TimelineRwlockLayout.kLock);
    return end;
  }

  /** A copy of the retained intervals as [start0, end0, start1, end1, ...], for audits and tests. */
  intervals(kind: 'write' | 'read'): Float64Array {
    const w = this.words;
    spinLock(w, TimelineRwlockLayout.kLock);
    const base = kind === 'write' ? TimelineRwlockLayout.kWriteBase : this.readBase;
    const n = w[kind === 'write' ? TimelineRwlockLayout.kWriteCount : TimelineRwlockLayout.kReadCount]!;
    const out = this.f.slice(base, base + 2 * n);
    spinUnlock(w, TimelineRwlockLayout.kLock);
    return out;
  }

  /** Under the lock, with the array full: drop its oldest quarter and raise the floor past it. */
  private drop(base: number, countWord: number): void {
    const f = this.f;
    const n = this.words[countWord]!;
    const q = this.capacity >>> 2;
    const end = f[base + 2 * q - 1]!;
    if (end > f[TimelineRwlockLayout.kFloor]!) f[TimelineRwlockLayout.kFloor] = end;
    f.copyWithin(base, base + 2 * q, base + 2 * n);
    this.words[countWord] = n - q;
    f[TimelineRwlockLayout.kDrops] = f[TimelineRwlockLayout.kDrops]! + q;
  }
}

function checkRequest(t: number, h: number): void {
  // One comparison chain rejects NaN, negatives and infinities.
  if (!(t >= 0 && h >= 0 && t + h < Infinity)) fail('EINVAL', `timeline rwlock: request at t=${t} for h=${h} ns; both must be finite and >= 0`);
}

/**
 * Index of the first of the n intervals at f[base..] whose end is > x (n if none). Ends are
 * sorted because the intervals are disjoint and sorted. The last two are tested first: that
 * answers requests at or near the end of the timeline without a search.
 */
function firstEndAfter(f: Float64Array, base: number, n: number, x: number): number {
  if (n === 0 || f[base + 2 * n - 1]! <= x) return n;
  if (n === 1 || f[base + 2 * n - 3]! <= x) return n - 1;
  let lo = 0;
  let hi = n - 2; // f[end of hi] > x
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (f[base + 2 * mid + 1]! > x) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

/**
 * Insert [s, e) into n disjoint sorted intervals at index i (intervals before i end <= s, the
 * one at i starts >= e), coalescing touching neighbours. Returns the new count; the caller made
 * room (n < capacity).
 */
function insertDisjoint(f: Float64Array, base: number, n: number, i: number, s: number, e: number): number {
  const joinsPrev = i > 0 && f[base + 2 * i - 1] === s;
  const joinsNext = i < n && f[base + 2 * i] === e;
  if (joinsPrev && joinsNext) {
    f[base + 2 * i - 1] = f[base + 2 * i + 1]!;
    f.copyWithin(base + 2 * i, base + 2 * i + 2, base + 2 * n);
    return n - 1;
  }
  if (joinsPrev) {
    f[base + 2 * i - 1] = e;
    return n;
  }
  if (joinsNext) {
    f[base + 2 * i] = s;
    return n;
  }
  if (i < n) f.copyWithin(base + 2 * i + 2, base + 2 * i, base + 2 * n);
  f[base + 2 * i] = s;
  f[base + 2 * i + 1] = e;
  return n + 1;
}

/**
 * Add [s, e) to the union held as n disjoint sorted intervals (none touching): every interval
 * that overlaps or touches it merges into one. Returns the new count; the caller made room.
 */
function insertUnion(f: Float64Array, base: number, n: number, s: number, e: number): number {
  // k: the first interval that ends at or after s (so may touch or overlap [s, e)).
  let k = firstEndAfter(f, base, n, s);
  if (k > 0 && f[base + 2 * k - 1] === s) k--;
  let m = k; // one past the last interval that merges
  while (m < n && f[base + 2 * m]! <= e) m++;
  if (m === k) {
    if (k < n) f.copyWithin(base + 2 * k + 2, base + 2 * k, base + 2 * n);
    f[base + 2 * k] = s;
    f[base + 2 * k + 1] = e;
    return n + 1;
  }
  const start = Math.min(s, f[base + 2 * k]!);
  const end = Math.max(e, f[base + 2 * m - 1]!);
  f[base + 2 * k] = start;
  f[base + 2 * k + 1] = end;
  if (m > k + 1) f.copyWithin(base + 2 * k + 2, base + 2 * m, base + 2 * n);
  return n - (m - k - 1);
}
