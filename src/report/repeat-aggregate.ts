/**
 * `--repeat N`: N runs of one configuration become one result. The top-level fields stay run 1's
 * (so a reader of a single run reads it unchanged); `repeats` keeps every run and the aggregate:
 * per phase (wall, modeled) and per histogram percentile the median, min, max, mean, stddev and
 * the 95 % confidence interval of the mean (Student's t with n - 1 degrees of freedom).
 */
import {
  kHistogramPercentiles, type HistogramPercentile, type RepeatAggregate, type RunResult, type SampleStats,
} from '../scenario/result.js';
import { sampleStats } from './significance.js';

export const kCiMethod = "Student's t 95% confidence interval of the mean (n - 1 degrees of freedom)";

/** The runs behind a result: its repeats, or the result itself. */
export function runsOf(r: RunResult): RunResult[] {
  return r.repeats ? r.repeats.runs : [r];
}

/** A phase's values over runs, in run order (runs without the phase are left out). */
export function phaseValues(runs: RunResult[], phase: string, clock: 'wall' | 'modeled'): number[] {
  const out: number[] = [];
  for (const r of runs) {
    const p = r.phases?.find((x) => x.name === phase);
    if (p) out.push(clock === 'wall' ? p.wallNs : p.modeledNs);
  }
  return out;
}

/** A histogram percentile's values over the runs that recorded the histogram. */
export function histogramValues(runs: RunResult[], key: string, pct: HistogramPercentile): number[] {
  const out: number[] = [];
  for (const r of runs) {
    const h = r.histograms?.[key];
    if (h && h.count > 0) out.push(h[pct]);
  }
  return out;
}

/** Names in first-seen order over the runs (phases, histogram keys). */
export function unionInOrder(lists: string[][]): string[] {
  const seen = new Set<string>();
  for (const l of lists) for (const x of l) seen.add(x);
  return [...seen];
}

export function aggregateRepeats(runs: RunResult[]): RepeatAggregate {
  const phaseNames = unionInOrder(runs.map((r) => r.phases.map((p) => p.name)));
  const phases = phaseNames.map((name) => ({
    name, wall: sampleStats(phaseValues(runs, name, 'wall')), modeled: sampleStats(phaseValues(runs, name, 'modeled')),
  }));
  const histograms: RepeatAggregate['histograms'] = {};
  for (const key of unionInOrder(runs.map((r) => Object.keys(r.histograms)))) {
    const per = {} as Record<HistogramPercentile, SampleStats>;
    let any = false;
    for (const pct of kHistogramPercentiles) {
      const v = histogramValues(runs, key, pct);
      if (v.length === 0) continue;
      per[pct] = sampleStats(v);
      any = true;
    }
    if (any) histograms[key] = per;
  }
  const noisyRuns = runs.filter((r) => r.host?.noisy).length;
  const workers = typeof runs[0]?.config.workers === 'number' ? runs[0].config.workers : null;
  const notes = [
    workers === 1
      ? 'modeled figures are deterministic for a seed on one worker: every run gives the same value, so their CI is zero; wall figures carry the noise'
      : 'modeled figures are deterministic for a seed on one worker; with several workers the interleaving of vCPUs (cmpxchg retries, lock order) may vary them a little; wall figures carry the noise',
    `every run used seed ${runs[0]?.seed ?? 0}: the guest's access stream is the same, so the spread is the machine's, not the workload's`,
  ];
  if (noisyRuns > 0) notes.push(`${noisyRuns} of ${runs.length} runs were on a noisy machine (see each run's host notes)`);
  return { ci: kCiMethod, phases, histograms, noisyRuns, notes };
}

/** Run 1's result with every run and the aggregate attached (N > 1); a single run is returned as is. */
export function withRepeats(runs: RunResult[]): RunResult {
  if (runs.length === 1) return runs[0]!;
  return { ...runs[0]!, repeats: { n: runs.length, seedPolicy: 'same', runs, aggregate: aggregateRepeats(runs) } };
}
