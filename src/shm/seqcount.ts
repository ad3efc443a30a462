/**
 * A seqcount on one Int32 word: writers (already serialized by a lock) make it odd while they
 * update, readers retry when they saw an odd value or the value changed under them.
 */
export function writeSeqBegin(a: Int32Array, i: number): void {
  Atomics.add(a, i, 1);
}
export function writeSeqEnd(a: Int32Array, i: number): void {
  Atomics.add(a, i, 1);
}
/** Spins past an in-progress write and returns the even sequence to hand to readSeqRetry. */
export function readSeqBegin(a: Int32Array, i: number): number {
  for (;;) {
    const s = Atomics.load(a, i);
    if ((s & 1) === 0) return s;
  }
}
export function readSeqRetry(a: Int32Array, i: number, seq: number): boolean {
  return Atomics.load(a, i) !== seq;
}
