/**
 * A thread's operation counters and modeled clock. Not shared: each worker owns one and ships
 * it back with its results; the main thread sums them. `t` is the modeled clock in ns.
 */
import { kOpCount, kOpNames } from './ops.js';

export class Metrics {
  readonly c = new Float64Array(kOpCount);
  /** Modeled ns accumulated by this thread. */
  t = 0;
  constructor(readonly cost: Float64Array) {}

  reset(): void {
    this.c.fill(0);
    this.t = 0;
  }

  toJSON(): Record<string, number> {
    return countersToRecord(this.c);
  }
}

/** Count one `op`: bumps its counter and advances the modeled clock by its price. */
export function count(m: Metrics, op: number): void {
  m.c[op]!++;
  m.t += m.cost[op]!;
}

export function countN(m: Metrics, op: number, n: number): void {
  m.c[op]! += n;
  m.t += m.cost[op]! * n;
}

/** Wall-clock wait: counted, never priced. */
export function countWaitNs(m: Metrics, op: number, ns: number): void {
  m.c[op]! += ns;
}

export function countersToRecord(c: ArrayLike<number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (let i = 0; i < kOpCount; i++) out[kOpNames[i]!] = c[i]!;
  return out;
}

export function addCounters(into: Float64Array, from: ArrayLike<number>): void {
  for (let i = 0; i < kOpCount; i++) into[i]! += from[i]!;
}

export function modeledNs(c: ArrayLike<number>, cost: Float64Array): number {
  let t = 0;
  for (let i = 0; i < kOpCount; i++) t += c[i]! * cost[i]!;
  return t;
}
