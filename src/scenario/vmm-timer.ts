/**
 * Timing VMM-side calls (the main thread's ioctls) in both clocks: wall ns from
 * performance.now(), modeled ns from the main thread's counters, recorded per call into HDR
 * histograms and summed into a phase.
 */
import { HistogramSet } from '../metrics/histogram.js';
import { kOpCount } from '../metrics/ops.js';
import type { Metrics } from '../metrics/counters.js';

export interface Timed<T> {
  value: T;
  wallNs: number;
  modeledNs: number;
}

export class VmmTimer {
  readonly hists = new HistogramSet();
  private snap = new Float64Array(kOpCount);
  constructor(readonly metrics: Metrics) {}

  /** Start a span: counters are measured from here. */
  begin(): void {
    this.snap = this.metrics.c.slice();
  }
  /** Counters since begin(). */
  delta(): Float64Array {
    const d = new Float64Array(kOpCount);
    for (let i = 0; i < kOpCount; i++) d[i] = this.metrics.c[i]! - this.snap[i]!;
    return d;
  }

  /** Run one call, timing it into histogram `op`. */
  call<T>(op: string, fn: () => T): Timed<T> {
    const t0 = this.metrics.t;
    const w0 = performance.now();
    const value = fn();
    const wallNs = (performance.now() - w0) * 1e6;
    const modeledNs = this.metrics.t - t0;
    this.hists.get(op).record(Math.max(1, Math.round(wallNs)), Math.max(1, Math.round(modeledNs)));
    return { value, wallNs, modeledNs };
  }
}
