// A .hgrm written by the harness parses back (a line parser, as the HdrHistogram plotter reads it)
// to the percentiles the result holds: the 50 % and 90 % ticks give the summary's p50 and p90, the
// last line is the max, the footer has the count, mean and stddev; every line is the histogram's
// value at that percentile; and the text is byte for byte what hdr-histogram-js's JS build prints
// (the harness walks the counts itself: the library's WASM formatter mangles decimals and its JS
// one is slow).
import { afterEach, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import hdr from 'hdr-histogram-js';
import { newHistogram, summarize, type HistogramSummary } from '../src/metrics/histogram.js';
import { xorshift32 } from '../src/workload/random.js';
import { hgrmText, parseHgrm, percentilePoints } from '../src/report/hgrm.js';
import type { RunResult } from '../src/scenario/result.js';

const destroyers: { destroy(): void }[] = [];
afterEach(() => {
  for (const d of destroyers.splice(0)) d.destroy();
});

/** n latencies, log-uniform over [lo, hi) ns, from seed (xorshift32). */
function seededSummary(seed: number, n: number, lo: number, hi: number): HistogramSummary {
  const h = newHistogram();
  destroyers.push(h);
  let s = seed;
  for (let i = 0; i < n; i++) {
    s = xorshift32(s);
    h.recordValue(Math.round(lo * (hi / lo) ** (s / 2 ** 32)));
  }
  return summarize(h, 'wall');
}

function checkRoundTrip(sum: HistogramSummary): void {
  const text = hgrmText([sum.encoded]);
  const parsed = parseHgrm(text);
  // The value at p: the first line at or past p (a tick the cumulative count jumps over, when it
  // reaches the total at one bucket, is not printed: the next line is that bucket, the max).
  const at = (p: number) => parsed.lines.find((l) => l.percentile >= p);
  // Values are µs with three decimals: ×1000 gives the ns back exactly.
  const ns = (v: number) => Math.round(v * 1000);
  expect(parsed.totalCount).toBe(sum.count);
  expect(ns(at(0.5)!.value)).toBe(sum.p50);
  expect(ns(at(0.9)!.value)).toBe(sum.p90);
  const js = hdr.decodeFromCompressedBase64(sum.encoded, 64, false);
  const last = parsed.lines[parsed.lines.length - 1]!;
  expect(last.percentile).toBe(1);
  expect(last.inverted).toBeNull();
  expect(last.totalCount).toBe(sum.count);
  // The encoding keeps buckets, not the exact max: the file has the max's bucket's top.
  expect(ns(parsed.max!)).toBe(js.highestEquivalentValue(sum.max));
  expect(ns(last.value)).toBe(js.highestEquivalentValue(sum.max));
  expect(Math.abs(parsed.mean! * 1000 - sum.mean)).toBeLessThan(1);
  expect(Math.abs(parsed.stddev! * 1000 - sum.stddev)).toBeLessThan(1);
  // Every line: its tick is reached (count up to it >= tick x N), and its value is the value of
  // the sample at that rank (the printed 12-digit percentile is rounded, so the rank is what checks).
  for (const l of parsed.lines.slice(0, -1)) {
    expect(l.totalCount).toBeGreaterThanOrEqual(Math.floor(l.percentile * sum.count - 1e-6));
    expect(ns(l.value), `p ${l.percentile}`).toBe(js.getValueAtPercentile((100 * l.totalCount) / sum.count));
    expect(l.inverted!).toBeCloseTo(1 / (1 - l.percentile), 1);
  }
  // Cumulative counts never go down, percentiles go up.
  for (let i = 1; i < parsed.lines.length; i++) {
    expect(parsed.lines[i]!.totalCount).toBeGreaterThanOrEqual(parsed.lines[i - 1]!.totalCount);
    expect(parsed.lines[i]!.percentile).toBeGreaterThan(parsed.lines[i - 1]!.percentile);
  }
  expect(text).toBe(js.outputPercentileDistribution(5, 1000));
}

describe('.hgrm', () => {
  it('seeded log-uniform latencies (seed 7, 20000 values, 300 ns .. 40 ms) round-trip', () => {
    checkRoundTrip(seededSummary(7, 20000, 300, 40e6));
  });
  it('a few values and one repeated value (modeled latencies repeat exactly)', () => {
    checkRoundTrip(seededSummary(11, 3, 1000, 2000));
    const h = newHistogram();
    destroyers.push(h);
    h.recordValueWithCount(835, 16384);
    const s = summarize(h, 'modeled');
    checkRoundTrip(s);
    // The plot: one flat line from 0 % to the max at 1/(1-p) = N.
    expect(percentilePoints([s.encoded])).toEqual([{ x: 1, y: 835 }, { x: 16384, y: 835 }]);
  });
  it('real histograms of the checked-in example round-trip', () => {
    const r = JSON.parse(readFileSync(join(__dirname, '..', 'reports', 'example', 'dirty-log-perf-wrprot.json'), 'utf8')) as RunResult;
    const runs = r.repeats!.runs;
    for (const run of runs) for (const h of Object.values(run.histograms)) checkRoundTrip(h);
    // A repeat set's file merges its runs: the counts add up.
    const key = 'populate.page_fault/wall';
    const merged = parseHgrm(hgrmText(runs.map((x) => x.histograms[key]!.encoded)));
    expect(merged.totalCount).toBe(runs.reduce((n, x) => n + x.histograms[key]!.count, 0));
    expect(Math.round(merged.max! * 1000)).toBe(Math.max(...runs.map((x) => x.histograms[key]!.max)));
  });
  it('the parser skips the header, blank and comment lines', () => {
    const p = parseHgrm('       Value     Percentile TotalCount 1/(1-Percentile)\n\n       1.000 0.000000000000          1           1.00\n       2.000 1.000000000000          2\n#[Mean    =        1.500, StdDeviation   =        0.500]\n#[Max     =        2.000, Total count    =            2]\n');
    expect(p.lines).toEqual([{ value: 1, percentile: 0, totalCount: 1, inverted: 1 }, { value: 2, percentile: 1, totalCount: 2, inverted: null }]);
    expect([p.mean, p.stddev, p.max, p.totalCount]).toEqual([1.5, 0.5, 2, 2]);
  });
});
