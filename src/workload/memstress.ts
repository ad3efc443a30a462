/**
 * Guest access streams after memstress_guest_code(): a vCPU walks its `pages` guest pages at 4K
 * stride (even on huge backing, so every 4K page is touched), sequentially or in random order,
 * writing with probability writePercent and reading otherwise.
 *
 *   order 'sequential'  page i at step i
 *   order 'permute'     every page exactly once in a seeded random order (demand paging -a)
 *   order 'random'      guest_random_u32() % pages at each step, with repeats (memstress -a)
 *
 * MMIO (a harness knob; memstress has none): with `mmioEvery` N > 0, after every N-th access to
 * guest memory the stream makes one access to a device page in [mmioGfn, mmioGfn + mmioPages),
 * a gfn range no memslot covers, in turn, a store or a load by the same write-percent rule. A
 * stream of `accesses` memory accesses makes floor(accesses / N) MMIO accesses, each a
 * KVM_EXIT_MMIO the VMM completes; the memory accesses are those of the stream without MMIO.
 *
 * Until stopped (memstress_args.stop_vcpus): with `stop`, the stream repeats its pass over the
 * pages (`accesses` may be Infinity) and ends at the first pass boundary — memstress's
 * GUEST_SYNC(1), where the vCPU thread re-checks stop_vcpus before entering again — after the
 * VMM stored a non-zero word 0 in `stop` (the pair: the VMM's seq-cst store, this Atomics.load).
 */
import { kAccessEnterL2, type AccessSource } from '../kvm/vcpu.js';
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
  /** One MMIO access after every mmioEvery memory accesses (0 or absent: none). */
  mmioEvery?: number;
  /** First gfn of the device pages (outside every memslot) and how many there are. */
  mmioGfn?: number;
  mmioPages?: number;
  /** Word 0 non-zero: end at the next pass boundary (memstress_args.stop_vcpus). */
  stop?: SharedArrayBuffer;
  /**
   * A nested guest: after this many accesses the vCPU launches L2 (VMLAUNCH) on the EPT12 tables
   * at `ept12Gfn`, and the rest of the stream is L2's (a harness knob, for lazy rmaps). Absent: never.
   */
  l2At?: number;
  ept12Gfn?: number;
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
  private readonly mmioEvery: number;
  private readonly mmioGfn: number;
  private readonly mmioPages: number;
  /** Memory accesses since the last MMIO access, and MMIO accesses made so far. */
  private sinceMmio = 0;
  private mmioCount = 0;
  private mmioDue = false;
  private readonly stop: Int32Array | null;
  private readonly l2At: number;
  readonly ept12Gfn: number;

  constructor(spec: StreamSpec) {
    this.l2At = spec.l2At ?? -1;
    this.ept12Gfn = spec.ept12Gfn ?? 0;
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
    this.mmioEvery = spec.mmioEvery ?? 0;
    this.mmioGfn = spec.mmioGfn ?? 0;
    this.mmioPages = spec.mmioPages ?? 1;
    this.stop = spec.stop !== undefined ? new Int32Array(spec.stop) : null;
    if (!Number.isInteger(this.mmioEvery) || this.mmioEvery < 0) throw new RangeError(`mmioEvery must be a non-negative integer, got ${this.mmioEvery}`);
    if (this.mmioEvery > 0 && (!Number.isInteger(this.mmioPages) || this.mmioPages < 1)) throw new RangeError(`mmioPages must be a positive integer, got ${this.mmioPages}`);
  }

  next(): number {
    if (this.mmioDue) return this.nextMmio();
    const i = this.pos;
    if (i === this.l2At && !this.l2Launched) {
      this.l2Launched = true;
      return kAccessEnterL2;
    }
    if (i >= this.accesses) return -1;
    const wrapped = i < this.pages ? i : i % this.pages;
    if (wrapped === 0 && i > 0 && this.stop !== null && Atomics.load(this.stop, 0) !== 0) return -1;
    this.pos = i + 1;
    let page: number;
    if (this.order === 0) page = wrapped;
    else if (this.order === 1) page = this.perm!.at(wrapped);
    else {
      this.rng = xorshift32(this.rng);
      page = this.rng % this.pages;
    }
    this.write = this.writeThreshold >= 2 ** 32 || mix32(this.writeKey ^ i) < this.writeThreshold;
    if (this.mmioEvery > 0 && ++this.sinceMmio === this.mmioEvery) {
      this.sinceMmio = 0;
      this.mmioDue = true;
    }
    return this.baseGfn + page;
  }

  private l2Launched = false;

  private nextMmio(): number {
    this.mmioDue = false;
    const k = this.mmioCount++;
    this.write = this.writeThreshold >= 2 ** 32 || mix32(this.writeKey ^ 0x4d4d494f ^ Math.imul(k, 0x9e3779b1)) < this.writeThreshold;
    return this.mmioGfn + (k % this.mmioPages);
  }

  /** MMIO accesses a stream of `accesses` memory accesses makes. */
  static mmioAccesses(accesses: number, mmioEvery: number): number {
    return mmioEvery > 0 ? Math.floor(accesses / mmioEvery) : 0;
  }

  /** Resume at `pos` (a vCPU continuing on another worker); random order replays its draws. */
  seek(pos: number): void {
    while (this.pos < pos && this.next() >= 0) { /* replay */ }
  }
}
