/**
 * Seeded, allocation-free randomness for guest access streams. Every stream derives its state
 * from (seed, vm, vcpu, iteration) so a run is reproducible from the seed alone, whichever
 * worker a vCPU lands on.
 */

/** splitmix32-style finaliser: a good 32-bit mix. */
export function mix32(x: number): number {
  x = (x + 0x9e3779b9) | 0;
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b);
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35);
  return (x ^ (x >>> 16)) >>> 0;
}

export function streamSeed(seed: number, vm: number, vcpu: number, iteration: number): number {
  return mix32(mix32(mix32(seed ^ 0x5bd1e995) ^ vm) ^ Math.imul(vcpu + 1, 0x27d4eb2d) ^ Math.imul(iteration + 1, 0x165667b1));
}

/** xorshift32 step (guest_random_u32's role): state must be non-zero. */
export function xorshift32(s: number): number {
  s ^= s << 13;
  s ^= s >>> 17;
  s ^= s << 5;
  return s >>> 0;
}

/**
 * A bijection on [0, n) from a keyed invertible mix on the next power of two, with cycle walking
 * (values ≥ n are mixed again). Visits every page exactly once in a seeded random order, with no
 * permutation array (a 1 TiB guest would need gigabytes for one).
 */
export class Permutation {
  readonly bits: number;
  readonly mask: number;
  constructor(readonly n: number, readonly key: number) {
    let b = 1;
    while (2 ** b < n) b++;
    this.bits = b;
    this.mask = b >= 32 ? 0xffffffff : 2 ** b - 1;
  }
  private round(x: number): number {
    const m = this.mask;
    const h = this.bits >>> 1 || 1;
    x = (Math.imul(x, 0x2545f491) + this.key) & m; // odd multiplier: bijective mod 2^bits
    x ^= x >>> h;
    x = Math.imul(x, 0x9e3779b1 | 1) & m;
    x ^= x >>> h;
    return x >>> 0;
  }
  at(i: number): number {
    let x = i;
    do x = this.round(x);
    while (x >= this.n);
    return x;
  }
}
