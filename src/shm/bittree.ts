/**
 * A hierarchical bitmap: level 0 has one bit per item, each higher level one bit per word
 * below it that is non-zero, so "lowest set bit" is O(levels) instead of a scan. Not atomic:
 * callers hold a lock (the buddy allocator's zone lock). All levels live in one SAB.
 */
import { allocSab } from './arena.js';

export interface BitTreeHandle {
  readonly sab: SharedArrayBuffer;
  readonly nbits: number;
}

export class BitTree {
  readonly w: Int32Array;
  readonly nbits: number;
  /** Word offset of each level; level L has levelWords[L] words. */
  readonly levelOff: number[] = [];
  readonly levelWords: number[] = [];

  constructor(readonly handle: BitTreeHandle) {
    this.w = new Int32Array(handle.sab);
    this.nbits = handle.nbits;
    BitTree.shape(handle.nbits, this.levelOff, this.levelWords);
  }

  private static shape(nbits: number, off: number[], words: number[]): number {
    let n = Math.max(1, Math.ceil(nbits / 32));
    let total = 0;
    for (;;) {
      off.push(total);
      words.push(n);
      total += n;
      if (n === 1) return total;
      n = Math.ceil(n / 32);
    }
  }

  static create(nbits: number): BitTree {
    const total = BitTree.shape(nbits, [], []);
    return new BitTree({ sab: allocSab(total * 4), nbits });
  }

  test(i: number): boolean {
    return (this.w[this.levelOff[0]! + (i >>> 5)]! & (1 << (i & 31))) !== 0;
  }

  set(i: number): void {
    const w = this.w;
    for (let L = 0; L < this.levelOff.length; L++) {
      const idx = this.levelOff[L]! + (i >>> 5);
      const before = w[idx]!;
      w[idx] = before | (1 << (i & 31));
      if (before !== 0) return;
      i >>>= 5;
    }
  }

  clear(i: number): void {
    const w = this.w;
    for (let L = 0; L < this.levelOff.length; L++) {
      const idx = this.levelOff[L]! + (i >>> 5);
      const after = w[idx]! & ~(1 << (i & 31));
      w[idx] = after;
      if (after !== 0) return;
      i >>>= 5;
    }
  }

  /** Lowest set bit, or -1. */
  findFirst(): number {
    const top = this.levelOff.length - 1;
    let word = this.w[this.levelOff[top]!]!;
    if (word === 0) return -1;
    let i = 31 - Math.clz32(word & -word);
    for (let L = top - 1; L >= 0; L--) {
      word = this.w[this.levelOff[L]! + i]!;
      i = (i << 5) | (31 - Math.clz32(word & -word));
    }
    return i;
  }
}
