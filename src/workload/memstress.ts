/**
 * Guest access streams after memstress_guest_code(): a vCPU walks its `pages` guest pages at 4K
 * stride (even on huge backing, so every 4K page is touched), sequentially or in random order,
 * writing with probability writePercent and reading otherwise.
 *
 *   order 'sequential'  page i at step i
 *   order 'permute'     every page exactly once in a seeded random order (demand paging -a)
 *   order 'random'      guest_random_u32() % pages at each step, with repeats (memstress -a)
 */
import type { AccessSource } from '../kvm/vcpu.js';
import { Permutation, mix32, streamSeed, xorshift32 } from './random.js';

export type AccessOrder = 'sequential' | 'permute' | 'random';

export interface StreamSpec {
  /** First gfn of this vCPU's region. */
  baseGfn: number;
  pages: number;
  /** Accesses in this stream (default: pages). */
  accesses?: number;
  order: AccessOrder;
  /** 0..100 */
  writePercent: number;
  seed: number;
  vm: number;
  vcpu: number;
  iteration: number;
}

export class MemstressStream implements AccessSource {
  pos = 0;
  write = false;
  readonly iteration: number;
  private readonly baseGfn: number;
  private readonly pages: number;
  private readonly accesses: number;
  private readonly order: number;
  private readonly writeThreshold: number;
  private rng: number;
  private readonly perm: Permutation | null;
  private readonly writeKey: number;

  constructor(spec: StreamSpec) {
    this.baseGfn = spec.baseGfn;
    this.pages = spec.pages;
    this.accesses = spec.accesses ?? spec.pages;
    this.iteration = spec.iteration;
    this.order = spec.order === 'sequential' ? 0 : spec.order === 'permute' ? 1 : 2;
    // Compare a 32-bit draw against percent * 2^32 / 100 (__guest_random_bool).
    this.writeThreshold = spec.writePercent >= 100 ? 2 ** 32 : Math.floor((spec.writePercent / 100) * 2 ** 32);
    const s = streamSeed(spec.seed, spec.vm, spec.vcpu, spec.iteration);
    this.rng = s === 0 ? 1 : s;
    this.writeKey = mix32(s ^ 0x68e31da4);
    this.perm = this.order === 1 ? new Permutation(spec.pages, s) : null;
  }

  next(): number {
    const i = this.pos;
    if (i >= this.accesses) return -1;
    this.pos = i + 1;
    let page: number;
    const wrapped = i < this.pages ? i : i % this.pages;
    if (this.order === 0) page = wrapped;
    else if (this.order === 1) page = this.perm!.at(wrapped);
    else {
      this.rng = xorshift32(this.rng);
      page = this.rng % this.pages;
    }
    this.write = this.writeThreshold >= 2 ** 32 || mix32(this.writeKey ^ i) < this.writeThreshold;
    return this.baseGfn + page;
  }

  /** Resume at `pos` (a vCPU continuing on another worker); random order replays its draws. */
  seek(pos: number): void {
    while (this.pos < pos && this.next() >= 0) { /* replay */ }
  }
}
