// Latency histograms report exact statistics (as tinybench pins p75 = 4.75 on 1..6): HdrHistogram
// with 3 significant digits is exact below 2048 and within 0.1 % above; percentiles follow its
// rule (the smallest recorded value v with count(<= v) >= ceil(p/100 * n)); run-length recording
// of modeled latencies loses nothing; merging two workers' encoded histograms equals one
// histogram that recorded both.
import { afterEach, describe, expect, it } from 'vitest';
import { HistogramMerger, HistogramSet, newHistogram, summarize, OpHistograms } from '../src/metrics/histogram.js';

const destroyers: { destroy(): void }[] = [];
afterEach(() => {
  for (const d of destroyers.splice(0)) d.destroy();
});
function track<T extends { destroy(): void }>(x: T): T {
  destroyers.push(x);
  return x;
}

describe('histogram values', () => {
  it('1..6: count, min, max, p50 = 3, p90 = p99 = 6, mean 3.5, stddev 1.7 (population)', () => {
    const h = track(newHistogram());
    for (let v = 1; v <= 6; v++) h.recordValue(v);
    const s = summarize(h, 'wall');
    expect({ count: s.count, min: s.min, max: s.max, p50: s.p50, p90: s.p90, p99: s.p99, p999: s.p999, mean: s.mean, stddev: s.stddev })
      .toEqual({ count: 6, min: 1, max: 6, p50: 3, p90: 6, p99: 6, p999: 6, mean: 3.5, stddev: 1.7 });
  });

  it('1..1000: each percentile is the exact rank', () => {
    const h = track(newHistogram());
    for (let v = 1; v <= 1000; v++) h.recordValue(v);
    const s = summarize(h, 'modeled');
    expect([s.count, s.min, s.p50, s.p90, s.p99, s.p999, s.max, s.mean]).toEqual([1000, 1, 500, 900, 990, 999, 1000, 500.5]);
    expect(s.stddev).toBe(Math.round(Math.sqrt((1000 * 1000 - 1) / 12) * 10) / 10);
  });

  it('large values within HdrHistogram precision (3 significant digits)', () => {
    const h = track(newHistogram());
    h.recordValue(123_456);
    h.recordValueWithCount(45, 3);
    const s = summarize(h, 'wall');
    expect(s.count).toBe(4);
    expect(s.p50).toBe(45);
    expect(Math.abs(s.max - 123_456) / 123_456).toBeLessThanOrEqual(1e-3);
    expect(Math.abs(s.p99 - 123_456) / 123_456).toBeLessThanOrEqual(1e-3);
  });

  it('OpHistograms: run-length modeled recording is exact; values below 1 count as 1', () => {
    const o = track(new OpHistograms());
    for (const v of [5, 5, 5, 7, 7, 5, 0.2, 3.6]) o.recordModeled(v);
    o.flush();
    const s = summarize(o.modeled, 'modeled');
    // 5 x4, 7 x2, 1 (0.2 rounded up), 4 (3.6 rounded)
    // mean (5*4 + 7*2 + 1 + 4) / 8 = 4.875, reported to one decimal
    expect([s.count, s.min, s.max, s.p50, s.mean]).toEqual([8, 1, 7, 5, 4.9]);
    o.record(0, 9);
    o.flush();
    expect(o.wall.totalCount).toBe(1);
    expect(o.wall.minNonZeroValue).toBe(1);
  });

  it('merged across two encoded histograms = one histogram that recorded both', () => {
    const a = track(new HistogramSet());
    const b = track(new HistogramSet());
    const both = track(new HistogramSet());
    const values = Array.from({ length: 2000 }, (_, i) => 1 + ((i * 7919) % 5000) * 37);
    values.forEach((v, i) => {
      (i % 3 === 0 ? a : b).get('fault').record(v, 100 + (v % 13));
      both.get('fault').record(v, 100 + (v % 13));
    });
    const m2 = track(new HistogramMerger());
    m2.add(a.encode());
    m2.add(b.encode());
    const m1 = track(new HistogramMerger());
    m1.add(both.encode());
    const s2 = m2.summaries();
    const s1 = m1.summaries();
    expect(Object.keys(s2).sort()).toEqual(['fault/modeled', 'fault/wall']);
    for (const k of Object.keys(s1)) {
      const { encoded: _e1, ...x1 } = s1[k]!;
      const { encoded: _e2, ...x2 } = s2[k]!;
      expect(x2).toEqual(x1);
    }
    expect(s2['fault/wall']!.count).toBe(2000);
    expect(s2['fault/modeled']!.min).toBe(100);
    expect(s2['fault/modeled']!.max).toBe(112);
  });
});
