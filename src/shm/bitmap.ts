/**
 * 1-bit-per-index bitmaps over Int32 words in shared memory: a reader's Atomics.load of a word
 * pairs with a writer's Atomics.or/and of it (whole-word RMWs, so writers of neighbouring bits
 * never lose each other's updates).
 */
/** Bit test in a 1-bit-per-index Int32 bitmap (the pair: the writer's Atomics.or/and). */
export function bitTest(bm: Int32Array, i: number): boolean {
  return (Atomics.load(bm, i >>> 5) & (1 << (i & 31))) !== 0;
}

/**
 * Whether bits [start, end) of `bm` are all `set` (kvm_range_has_memory_attributes() on a
 * bitmap): word at a time, so a 1G range is 8192 word reads.
 */
export function bitRangeAll(bm: Int32Array, start: number, end: number, set: boolean): boolean {
  let i = start;
  while (i < end) {
    const lo = i & 31;
    const n = Math.min(32 - lo, end - i);
    const mask = n === 32 ? -1 : ((1 << n) - 1) << lo;
    const word = Atomics.load(bm, i >>> 5);
    if ((set ? ~word & mask : word & mask) !== 0) return false;
    i += n;
  }
  return true;
}

/** Set or clear bits [start, end); returns how many changed. */
export function bitRangeSet(bm: Int32Array, start: number, end: number, set: boolean): number {
  let changed = 0;
  let i = start;
  while (i < end) {
    const lo = i & 31;
    const n = Math.min(32 - lo, end - i);
    const mask = n === 32 ? -1 : ((1 << n) - 1) << lo;
    const old = set ? Atomics.or(bm, i >>> 5, mask) : Atomics.and(bm, i >>> 5, ~mask);
    changed += popcount(set ? ~old & mask : old & mask);
    i += n;
  }
  return changed;
}

export function popcount(x: number): number {
  x -= (x >>> 1) & 0x55555555;
  x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
  return (((x + (x >>> 4)) & 0x0f0f0f0f) * 0x01010101) >>> 24;
}

/** Set bits in [start, end). */
export function bitCount(bm: Int32Array, start: number, end: number): number {
  let set = 0;
  let i = start;
  while (i < end) {
    const lo = i & 31;
    const n = Math.min(32 - lo, end - i);
    const mask = n === 32 ? -1 : ((1 << n) - 1) << lo;
    set += popcount(Atomics.load(bm, i >>> 5) & mask);
    i += n;
  }
  return set;
}
