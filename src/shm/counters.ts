/**
 * Padded shared counters: one counter per 128-byte line so threads that bump different
 * counters do not share a cache line. Int32 Atomics, because BigInt64 Atomics allocate.
 */
import { allocSab, Arena } from './arena.js';

export class PaddedCounters {
  readonly words: Int32Array;
  constructor(readonly sab: SharedArrayBuffer, readonly count: number) {
    this.words = new Int32Array(sab);
  }
  static create(count: number): PaddedCounters {
    return new PaddedCounters(allocSab(count * Arena.kPadWords * 4), count);
  }
  add(i: number, v: number): number {
    return Atomics.add(this.words, i * Arena.kPadWords, v);
  }
  load(i: number): number {
    return Atomics.load(this.words, i * Arena.kPadWords);
  }
  store(i: number, v: number): void {
    Atomics.store(this.words, i * Arena.kPadWords, v);
  }
}
