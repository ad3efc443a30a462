/**
 * A confidential guest that converts memory between private and shared while it runs, as a
 * guest with SWIOTLB bounce buffers does for every virtio DMA: it asks the host with
 * KVM_HC_MAP_GPA_RANGE (what a TDX/SNP guest's MapGPA / page-state change becomes; on a
 * KVM_X86_SW_PROTECTED_VM the hypercall itself) to share a range, uses it, and asks for it back
 * private. Between conversions it stores to its own private memory at random.
 *
 *   populate      every page of the region is written once (private), in order
 *   bounce        conversion c shares page bounce[c % bouncePages] (the first pages of the region,
 *                 a bounce-buffer pool), `uses` stores to it, makes it private again
 *   random        conversion c shares a seeded random range of 1..maxRangePages pages (4K aligned)
 *
 * The hypercall's answer is checked: a non-zero ret counts in `failed` (the host must retry an
 * EAGAIN itself, as a VMM does, never hand it to the guest).
 */
import { KVM_HC_MAP_GPA_RANGE, KVM_MAP_GPA_RANGE_ENCRYPTED, kAccessHypercall, type AccessSource, type GuestHypercall } from '../kvm/vcpu.js';
import { mix32, streamSeed, xorshift32 } from './random.js';

export interface ConversionGuestSpec {
  kind: 'conversion';
  baseGfn: number;
  pages: number;
  mode: 'populate' | 'bounce' | 'random';
  /** Conversions (share + unshare pairs) in this stream. */
  conversions: number;
  bouncePages: number;
  maxRangePages: number;
  /** Stores to the shared range while it is shared. */
  uses: number;
  /** Random private stores between two conversions. */
  between: number;
  seed: number;
  vm: number;
  vcpu: number;
  iteration: number;
}

const enum Step {
  kShare = 0,
  kUse = 1,
  kUnshare = 2,
  kBetween = 3,
  kDone = 4,
}

export class ConversionGuest implements AccessSource {
  write = true;
  readonly iteration: number;
  readonly hypercall: GuestHypercall = { nr: KVM_HC_MAP_GPA_RANGE, args: [0, 0, 0], ret: 0 };
  /** Hypercalls the host answered with a non-zero ret. */
  failed = 0;
  get guestFailures(): number {
    return this.failed;
  }
  /** Conversions (share + unshare) completed. */
  done = 0;
  private readonly s: ConversionGuestSpec;
  private rng: number;
  private pos = 0;
  private step = Step.kShare;
  private left = 0;
  private rangeGfn = 0;
  private rangePages = 1;
  private pendingHypercall = false;

  constructor(spec: ConversionGuestSpec) {
    this.s = spec;
    this.iteration = spec.iteration;
    const seed = streamSeed(spec.seed, spec.vm, spec.vcpu, spec.iteration);
    this.rng = seed === 0 ? 1 : seed;
    if (spec.mode !== 'populate' && spec.conversions === 0) this.step = Step.kDone;
  }

  /** Total accesses and hypercalls the stream makes (the progress view's denominator). */
  static length(s: ConversionGuestSpec): number {
    return s.mode === 'populate' ? s.pages : s.conversions * (2 + s.uses + s.between);
  }

  private rand(): number {
    this.rng = xorshift32(this.rng);
    return this.rng >>> 0;
  }

  next(): number {
    const s = this.s;
    if (this.pendingHypercall) {
      // The host answered the last hypercall (complete_hypercall_exit wrote ret).
      this.pendingHypercall = false;
      if (this.hypercall.ret !== 0) this.failed++;
    }
    if (s.mode === 'populate') return this.pos < s.pages ? s.baseGfn + this.pos++ : -1;
    switch (this.step) {
      case Step.kShare: {
        if (s.mode === 'bounce') {
          this.rangeGfn = s.baseGfn + (this.done % s.bouncePages);
          this.rangePages = 1;
        } else {
          this.rangePages = 1 + (this.rand() % s.maxRangePages);
          this.rangeGfn = s.baseGfn + (this.rand() % (s.pages - this.rangePages + 1));
        }
        this.step = Step.kUse;
        this.left = s.uses;
        return this.mapGpaRange(false);
      }
      case Step.kUse:
        if (this.left > 0) {
          this.left--;
          return this.rangeGfn + (mix32(this.left ^ this.done) >>> 0) % this.rangePages;
        }
        this.step = Step.kBetween;
        this.left = s.between;
        return this.mapGpaRange(true);
      case Step.kBetween:
        if (this.left > 0) {
          this.left--;
          // Private memory outside the range just converted back (its pages are private again too).
          return s.baseGfn + (this.rand() % s.pages);
        }
        this.done++;
        this.step = this.done < s.conversions ? Step.kShare : Step.kDone;
        return this.next();
      default:
        return -1;
    }
  }

  /** KVM_HC_MAP_GPA_RANGE(gpa, npages, attrs): ENCRYPTED for private, 0 for shared (4K pages). */
  private mapGpaRange(priv: boolean): number {
    const hc = this.hypercall;
    hc.args[0] = this.rangeGfn * 4096;
    hc.args[1] = this.rangePages;
    hc.args[2] = priv ? KVM_MAP_GPA_RANGE_ENCRYPTED : 0;
    hc.ret = 0;
    this.pendingHypercall = true;
    return kAccessHypercall;
  }
}
