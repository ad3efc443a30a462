/**
 * One cell's runs merged into one set of figures: HDR histograms added (hdr's add() is lossless:
 * the merged counts are the runs' counts summed, bucket by bucket), harness counters summed, and
 * each stats snapshot's totals combined by the stat's KVM_STATS_TYPE — cumulative and instant
 * stats summed (KVM's debugfs files sum a stat over VMs, kvm_main.c vm_stat_get()), peak stats
 * maxed (a sum of maxima is no figure), log histograms added bucket by bucket.
 */
import hdr from 'hdr-histogram-js';
import { newHistogram, summarize, type HistogramSummary } from '../metrics/histogram.js';
import { KVM_STATS_TYPE_MASK, KVM_STATS_TYPE_PEAK, kVcpuStatDescs, kVmStatDescs } from '../kvm/stats.js';
import type { RunResult } from '../scenario/result.js';
import { median } from '../report/significance.js';
import { unionInOrder } from '../report/repeat-aggregate.js';
import type { MergedRuns } from './sweep-result.js';

const kPeakStats: ReadonlySet<string> = new Set(
  [...kVmStatDescs, ...kVcpuStatDescs].filter((d) => (d.flags & KVM_STATS_TYPE_MASK) === KVM_STATS_TYPE_PEAK).map((d) => d.name),
);

/** Histograms with the same key added; `encoded` strings are HdrHistogram HISTFAAA… as the runs wrote them. */
export function addHistograms(list: HistogramSummary[]): HistogramSummary {
  const m = newHistogram();
  try {
    for (const h of list) {
      const d = hdr.decodeFromCompressedBase64(h.encoded, 64, true);
      m.add(d);
      d.destroy();
    }
    return summarize(m, list[0]!.clock);
  } finally {
    m.destroy();
  }
}

export function sumCounters(list: Record<string, number>[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const c of list) for (const [k, v] of Object.entries(c)) if (typeof v === 'number') out[k] = (out[k] ?? 0) + v;
  return out;
}

/** Stats totals combined as the header says; a stat missing from a run counts as absent there. */
export function combineStats(list: Record<string, unknown>[]): Record<string, number | number[]> {
  const out: Record<string, number | number[]> = {};
  for (const t of list) {
    for (const [name, v] of Object.entries(t)) {
      const prev = out[name];
      if (Array.isArray(v)) {
        const a = Array.isArray(prev) ? prev : new Array<number>(v.length).fill(0);
        out[name] = a.map((x, i) => x + ((v as number[])[i] ?? 0));
      } else if (typeof v === 'number') {
        const p = typeof prev === 'number' ? prev : null;
        out[name] = p === null ? v : kPeakStats.has(name) ? Math.max(p, v) : p + v;
      }
    }
  }
  return out;
}

export function mergeCellRuns(runs: RunResult[]): MergedRuns {
  const histograms: Record<string, HistogramSummary> = {};
  for (const key of unionInOrder(runs.map((r) => Object.keys(r.histograms ?? {})))) {
    const list = runs.map((r) => r.histograms[key]).filter((h): h is HistogramSummary => h !== undefined && typeof h.encoded === 'string');
    if (list.length > 0) histograms[key] = addHistograms(list);
  }
  const stats: MergedRuns['stats'] = {};
  for (const key of unionInOrder(runs.map((r) => Object.keys(r.stats ?? {})))) {
    stats[key] = combineStats(runs.map((r) => r.stats?.[key]?.total).filter((t) => t !== undefined) as Record<string, unknown>[]);
  }
  const phases = unionInOrder(runs.map((r) => r.phases.map((p) => p.name))).map((name) => {
    const ps = runs.map((r) => r.phases.find((p) => p.name === name)).filter((p) => p !== undefined);
    return { name, modeledNs: ps.map((p) => p.modeledNs), wallMedianNs: median(ps.map((p) => p.wallNs)) };
  });
  return { runs: runs.length, histograms, counters: sumCounters(runs.map((r) => r.counters ?? {})), stats, phases };
}
