/**
 * Latency histograms: hdr-histogram-js in its WASM flavour (~20 ns a record here, 5x the JS one),
 * one per worker per operation per clock, encoded as HISTFAAA… strings and merged in the main
 * thread (autocannon's recipe). WASM memory is not garbage collected: destroy() what you build.
 */
import hdr from 'hdr-histogram-js';

export type Clock = 'wall' | 'modeled';

let wasmReady = false;
function ensureWasm(): void {
  if (!wasmReady) {
    hdr.initWebAssemblySync();
    wasmReady = true;
  }
}

export function newHistogram(): hdr.Histogram {
  ensureWasm();
  return hdr.build({ useWebAssembly: true, bitBucketSize: 64, numberOfSignificantValueDigits: 3, autoResize: true, lowestDiscernibleValue: 1 });
}

/**
 * A wall and a modeled histogram for one operation kind. Modeled latencies repeat exactly (every
 * 4K demand fault costs the same), so runs of equal values are recorded with one
 * recordValueWithCount: exact, and one WASM call per run instead of per operation.
 */
export class OpHistograms {
  readonly wall = newHistogram();
  readonly modeled = newHistogram();
  private runValue = 0;
  private runCount = 0;
  record(wallNs: number, modeledNs: number): void {
    this.wall.recordValue(wallNs < 1 ? 1 : wallNs);
    this.recordModeled(modeledNs);
  }
  recordModeled(ns: number): void {
    const v = ns < 1 ? 1 : Math.round(ns);
    if (v === this.runValue) {
      this.runCount++;
      return;
    }
    if (this.runCount > 0) this.modeled.recordValueWithCount(this.runValue, this.runCount);
    this.runValue = v;
    this.runCount = 1;
  }
  /** Push the pending run into the histogram (before reading or encoding it). */
  flush(): void {
    if (this.runCount > 0) this.modeled.recordValueWithCount(this.runValue, this.runCount);
    this.runCount = 0;
    this.runValue = 0;
  }
  destroy(): void {
    this.wall.destroy();
    this.modeled.destroy();
  }
}

/** Encoded histograms as shipped from a worker: op → clock → HISTFAAA… */
export type EncodedHistograms = Record<string, { wall: string; modeled: string }>;

export class HistogramSet {
  private readonly ops = new Map<string, OpHistograms>();
  get(op: string): OpHistograms {
    let h = this.ops.get(op);
    if (h === undefined) {
      h = new OpHistograms();
      this.ops.set(op, h);
    }
    return h;
  }
  encode(): EncodedHistograms {
    const out: EncodedHistograms = {};
    for (const [op, h] of this.ops) {
      h.flush();
      if (h.wall.totalCount === 0 && h.modeled.totalCount === 0) continue;
      out[op] = { wall: hdr.encodeIntoCompressedBase64(h.wall), modeled: hdr.encodeIntoCompressedBase64(h.modeled) };
    }
    return out;
  }
  destroy(): void {
    for (const h of this.ops.values()) h.destroy();
    this.ops.clear();
  }
}

export interface HistogramSummary {
  clock: Clock;
  unit: 'ns';
  count: number;
  min: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
  mean: number;
  stddev: number;
  encoded: string;
}

/** Merges encoded histograms from many workers. */
export class HistogramMerger {
  private readonly merged = new Map<string, hdr.Histogram>();
  add(set: EncodedHistograms, prefix = ''): void {
    ensureWasm();
    for (const [op, clocks] of Object.entries(set)) {
      for (const clock of ['wall', 'modeled'] as const) {
        const key = `${prefix}${op}/${clock}`;
        const d = hdr.decodeFromCompressedBase64(clocks[clock], 64, true);
        let m = this.merged.get(key);
        if (m === undefined) {
          m = newHistogram();
          this.merged.set(key, m);
        }
        m.add(d);
        d.destroy();
      }
    }
  }
  summaries(): Record<string, HistogramSummary> {
    const out: Record<string, HistogramSummary> = {};
    for (const key of [...this.merged.keys()].sort()) {
      const h = this.merged.get(key)!;
      out[key] = summarize(h, key.endsWith('/modeled') ? 'modeled' : 'wall');
    }
    return out;
  }
  destroy(): void {
    for (const h of this.merged.values()) h.destroy();
    this.merged.clear();
  }
}

export function summarize(h: hdr.Histogram, clock: Clock): HistogramSummary {
  const n = h.totalCount;
  return {
    clock, unit: 'ns', count: n,
    min: n ? h.minNonZeroValue : 0,
    p50: h.getValueAtPercentile(50), p90: h.getValueAtPercentile(90), p99: h.getValueAtPercentile(99),
    p999: h.getValueAtPercentile(99.9), max: h.maxValue, mean: Math.round(h.mean * 10) / 10,
    stddev: Math.round(h.stdDeviation * 10) / 10,
    encoded: hdr.encodeIntoCompressedBase64(h),
  };
}
