/**
 * The comparison every view renders (`mmuh compare`, the report's table, its Markdown): one row
 * per phase and clock and per histogram percentile, the first input as the baseline, and for
 * every other input the ratio of means (hyperfine's Relative column, with its propagated error)
 * and the verdict of testDifference(), Holm-corrected per input over its Welch rows.
 */
import type { Clock } from '../metrics/histogram.js';
import { kHistogramPercentiles, type HistogramPercentile, type SampleStats } from '../scenario/result.js';
import type { ReportInput } from './inputs.js';
import { histogramValues, phaseValues, unionInOrder } from './repeat-aggregate.js';
import { holmCorrect, sampleStats, testDifference, type TestResult } from './significance.js';
import { fmtNs } from './text.js';

export const kAlpha = 0.05;

export const kMethod =
  `significance: Welch's t-test over the repeats of each side (two-sided), Holm-corrected over each column's tests at alpha ${kAlpha}; ` +
  'exact: both sides repeat without variance (modeled figures on one worker), so any difference is real; ' +
  'n/a: a side has one run. Relative: mean / baseline mean ± the propagated standard deviations (hyperfine\'s convention)';

export interface Versus {
  /** mean / baseline mean; NaN when the baseline is 0. */
  relative: number;
  relErr: number | null;
  test: TestResult;
}

export interface ComparisonRow {
  kind: 'phase' | 'histogram';
  /** The phase name, or the histogram key without its clock ("populate.page_fault"). */
  name: string;
  clock: Clock;
  metric: 'time' | HistogramPercentile;
  /** Per input; null where it lacks the figure. */
  stats: (SampleStats | null)[];
  /** Per input against input 0; null for input 0 and where either side lacks the figure. */
  vs: (Versus | null)[];
}

export interface Comparison {
  labels: string[];
  rows: ComparisonRow[];
}

function versus(a: SampleStats | null, b: SampleStats | null): Versus | null {
  if (a === null || b === null) return null;
  const relative = a.mean === 0 ? NaN : b.mean / a.mean;
  const relErr = a.n > 1 && b.n > 1 && a.mean !== 0 && b.mean !== 0 && !(a.deterministic && b.deterministic)
    ? relative * Math.sqrt((a.stddev / a.mean) ** 2 + (b.stddev / b.mean) ** 2) : null;
  return { relative, relErr, test: testDifference(a, b) };
}

function row(kind: ComparisonRow['kind'], name: string, clock: Clock, metric: ComparisonRow['metric'], values: number[][]): ComparisonRow {
  const stats = values.map((v) => (v.length > 0 ? sampleStats(v) : null));
  return { kind, name, clock, metric, stats, vs: stats.map((s, i) => (i === 0 ? null : versus(stats[0]!, s))) };
}

export function compareInputs(inputs: ReportInput[]): Comparison {
  const rows: ComparisonRow[] = [];
  const phases = unionInOrder(inputs.map((x) => x.result.phases.map((p) => p.name)));
  for (const clock of ['wall', 'modeled'] as const) {
    for (const p of phases) rows.push(row('phase', p, clock, 'time', inputs.map((x) => phaseValues(x.runs, p, clock))));
  }
  const keys = unionInOrder(inputs.map((x) => Object.keys(x.result.histograms)));
  for (const key of keys) {
    const clock: Clock = key.endsWith('/modeled') ? 'modeled' : 'wall';
    const name = key.replace(/\/(wall|modeled)$/, '');
    for (const pct of kHistogramPercentiles) rows.push(row('histogram', name, clock, pct, inputs.map((x) => histogramValues(x.runs, key, pct))));
  }
  for (let i = 1; i < inputs.length; i++) holmCorrect(rows.map((r) => r.vs[i]?.test).filter((t): t is TestResult => t !== undefined), kAlpha);
  return { labels: inputs.map((x) => x.label), rows };
}

// ---------------------------------------------------------------------------------------------
// Cells: the strings the terminal, Markdown and HTML tables share.

const kPctName: Record<HistogramPercentile, string> = { p50: 'p50', p90: 'p90', p99: 'p99', p999: 'p99.9', max: 'max' };

export function rowName(r: ComparisonRow): string {
  return r.kind === 'phase' ? r.name : `${r.name} ${kPctName[r.metric as HistogramPercentile]}`;
}

/** mean ± stddev over repeats (hyperfine), the value alone for one run or no spread. */
export function fmtStats(s: SampleStats | null): string {
  if (s === null) return '-';
  return s.n > 1 && !s.deterministic ? `${fmtNs(s.mean)} ± ${fmtNs(s.stddev)}` : fmtNs(s.mean);
}

export function fmtRelative(v: Versus | null): string {
  if (v === null || Number.isNaN(v.relative)) return '-';
  return v.relErr === null ? v.relative.toFixed(2) : `${v.relative.toFixed(2)} ± ${v.relErr.toFixed(2)}`;
}

export function fmtTest(v: Versus | null): string {
  if (v === null) return '-';
  return v.test.test === 'welch-t' ? 'Welch t' : v.test.note;
}

export function fmtP(v: Versus | null): string {
  if (v === null || v.test.p === null) return '-';
  if (v.test.test === 'exact') return '-';
  return v.test.p < 1e-4 ? v.test.p.toExponential(1) : v.test.p.toFixed(4);
}

export function fmtSignificant(v: Versus | null): string {
  if (v === null || v.test.significant === null) return '-';
  return v.test.significant ? 'yes' : 'no';
}

/** Header and rows: metric, clock, the baseline, then per other input value, relative, test, p, significant. */
export function comparisonCells(c: Comparison): { header: string[]; rows: string[][] } {
  const header = ['metric', 'clock', `${c.labels[0]} (baseline)`];
  for (const l of c.labels.slice(1)) header.push(l, `${l} relative`, 'test', 'p', 'significant');
  const rows = c.rows.map((r) => {
    const cells = [rowName(r), r.clock, fmtStats(r.stats[0]!)];
    for (let i = 1; i < c.labels.length; i++) {
      const v = r.vs[i]!;
      cells.push(fmtStats(r.stats[i]!), fmtRelative(v), fmtTest(v), fmtP(v), fmtSignificant(v));
    }
    return cells;
  });
  return { header, rows };
}

/** How many rows each input differs in significantly (the verdict line under the table). */
export function verdicts(c: Comparison): string[] {
  return c.labels.slice(1).map((l, k) => {
    const i = k + 1;
    const sig = c.rows.filter((r) => r.vs[i]?.test.significant === true);
    const tested = c.rows.filter((r) => r.vs[i] && r.vs[i]!.test.test !== 'n/a').length;
    if (tested === 0) return `${l} vs ${c.labels[0]}: no test (1 run a side; use --repeat N)`;
    const clocks = (['modeled', 'wall'] as const).map((clock) => `${sig.filter((r) => r.clock === clock).length} ${clock}`).join(', ');
    return sig.length === 0
      ? `${l} vs ${c.labels[0]}: no significant difference in ${tested} tested figures`
      : `${l} vs ${c.labels[0]}: ${sig.length} of ${tested} tested figures differ significantly (${clocks})`;
  });
}
