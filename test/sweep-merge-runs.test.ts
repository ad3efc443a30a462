/**
 * A cell's runs merged: HDR histograms added losslessly (the merge equals one histogram that
 * recorded every value), counters summed, stats combined by KVM_STATS_TYPE (cumulative and
 * instant summed, peak maxed, log histograms bucket by bucket).
 */
import { describe, expect, it } from 'vitest';
import hdr from 'hdr-histogram-js';
import { newHistogram, summarize } from '../src/metrics/histogram.js';
import { addHistograms, combineStats, sumCounters } from '../src/sweep/merge-runs.js';

function summaryOf(values: number[]) {
  const h = newHistogram();
  for (const v of values) h.recordValue(v);
  const s = summarize(h, 'modeled');
  h.destroy();
  return s;
}

describe('merging a cell\'s runs', () => {
  it('adds HDR histograms losslessly', () => {
    const a = Array.from({ length: 5000 }, (_, i) => 100 + ((i * 7919) % 90_000));
    const b = Array.from({ length: 3000 }, (_, i) => 5000 + ((i * 104729) % 2_000_000));
    const merged = addHistograms([summaryOf(a), summaryOf(b)]);
    const whole = summaryOf([...a, ...b]);
    expect(merged.count).toBe(8000);
    const { encoded: _e, max: mMax, ...m } = merged;
    const { encoded: _w, max: wMax, ...w } = whole;
    expect(m).toEqual(w);
    // Bucket for bucket the same distribution; the max is its bucket's (HDR keeps values to 3
    // significant digits, and a decoded histogram knows the bucket, not the exact value).
    const dm = hdr.decodeFromCompressedBase64(merged.encoded, 64, true);
    const dw = hdr.decodeFromCompressedBase64(whole.encoded, 64, true);
    expect(dm.outputPercentileDistribution()).toBe(dw.outputPercentileDistribution());
    expect(Math.abs(mMax - wMax) / wMax).toBeLessThan(1e-3);
    dm.destroy();
    dw.destroy();
  });

  it('sums counters and combines stats by their KVM type', () => {
    expect(sumCounters([{ faults: 3, flushes: 1 }, { faults: 4, retries: 2 }])).toEqual({ faults: 7, flushes: 1, retries: 2 });
    const t = combineStats([
      { pages_4k: 3, remote_tlb_flush: 10, max_mmu_rmap_size: 5, max_mmu_page_hash_collisions: 1, halt_poll_fail_hist: [1, 2, 0] },
      { pages_4k: 4, remote_tlb_flush: 1, max_mmu_rmap_size: 2, max_mmu_page_hash_collisions: 7, halt_poll_fail_hist: [3, 4, 5] },
    ]);
    expect(t).toEqual({ pages_4k: 7, remote_tlb_flush: 11, max_mmu_rmap_size: 5, max_mmu_page_hash_collisions: 7, halt_poll_fail_hist: [4, 6, 5] });
  });
});
