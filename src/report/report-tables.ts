/**
 * The tables of a report, as plain header + rows of strings, so the HTML and the Markdown views
 * show the same figures: the inputs, the comparison, page sizes and TLB flushes after every phase,
 * the configuration (differing rows marked), the environment with its noise, CPU profiles.
 */
import { kModeledAssumption } from '../metrics/cost-model.js';
import type { RunResult } from '../scenario/result.js';
import { compareInputs, comparisonCells, kMethod, verdicts, type Comparison } from './comparison.js';
import type { ReportInput } from './inputs.js';
import { unionInOrder } from './repeat-aggregate.js';

export interface Table {
  /** data-table attribute in HTML, and the section it belongs to. */
  id: string;
  caption: string;
  header: string[];
  rows: string[][];
  /** Row indices to highlight (configuration rows that differ between inputs). */
  marked?: Set<number>;
  /** Printed under the table. */
  notes: string[];
}

/** The cost models (name@version) and the assumption behind every modeled figure. */
export function modelNote(inputs: ReportInput[]): string {
  const models = unionInOrder([inputs.map((x) => (x.result.model ? `${x.result.model.costModel.name}@${x.result.model.costModel.version}` : 'unknown (not recorded)'))]);
  const assumption = inputs.find((x) => x.result.model)?.result.model!.assumption ?? kModeledAssumption;
  return `Modeled figures: ${assumption}. Cost model ${models.join(', ')}.`;
}

/** Host notes that say the machine was busy (notes about flags start with '--'). */
export function noiseNotes(r: RunResult): string[] {
  return r.host.notes.filter((n) => !n.startsWith('--'));
}

export interface NoisyInput {
  label: string;
  noisyRuns: number;
  runs: number;
  /** The first noisy run (1-based) and its notes: they speak for the rest (the figures differ, the causes rarely do). */
  firstNoisy: number;
  notes: string[];
}

/** "b: 3 of 3 runs noisy (run 1: load average 9.00 exceeds …)" */
export function noisyText(n: NoisyInput): string {
  return `${n.label}: ${n.noisyRuns} of ${n.runs} runs noisy (${n.runs > 1 ? `run ${n.firstNoisy}: ` : ''}${n.notes.join('; ')})`;
}

export function noisyInputs(inputs: ReportInput[]): NoisyInput[] {
  return inputs.map((x) => {
    const noisy = x.runs.filter((r) => r.host.noisy);
    return {
      label: x.label, noisyRuns: noisy.length, runs: x.runs.length, firstNoisy: noisy.length === 0 ? 0 : x.runs.indexOf(noisy[0]!) + 1,
      notes: noisy.length === 0 ? [] : noiseNotes(noisy[0]!),
    };
  }).filter((n) => n.noisyRuns > 0);
}

function inputsTable(inputs: ReportInput[]): Table {
  return {
    id: 'inputs', caption: 'Inputs', header: ['label', 'file', 'scenario', 'runs', 'seed', 'noisy runs'],
    rows: inputs.map((x) => [x.label, x.file, x.result.scenario, String(x.runs.length), String(x.result.seed), String(x.runs.filter((r) => r.host.noisy).length)]),
    notes: [],
  };
}

function comparisonTable(inputs: ReportInput[], cmp: Comparison): Table {
  const { header, rows } = comparisonCells(cmp);
  const notes = inputs.length > 1 ? [...verdicts(cmp), kMethod] : ['one input: nothing to compare against (give two or more result files)'];
  return { id: 'comparison', caption: `Comparison against ${cmp.labels[0]}`, header, rows, notes: [...notes, modelNote(inputs)] };
}

/** Per phase (after it): pages_4k/2m/1g and the remote TLB flushes during it, per input (run 1). */
export interface PhaseStats {
  phases: string[];
  perInput: { label: string; pages4k: (number | null)[]; pages2m: (number | null)[]; pages1g: (number | null)[]; tlbFlushes: (number | null)[] }[];
}

export function phaseStats(inputs: ReportInput[]): PhaseStats {
  const phases = unionInOrder(inputs.map((x) => x.result.phases.map((p) => p.name)));
  return {
    phases,
    perInput: inputs.map((x) => {
      const r = x.result;
      const total = (p: string, k: string): number | null => {
        const s = r.stats[p]?.total as Record<string, number> | undefined;
        return s && typeof s[k] === 'number' ? s[k] : null;
      };
      // tlbFlushes is per phase (dirty-log-perf); otherwise the stats' cumulative remote_tlb_flush, differenced.
      const flushes = phases.map((p, i) => {
        if (r.tlbFlushes && p in r.tlbFlushes) return r.tlbFlushes[p]!;
        const now = total(p, 'remote_tlb_flush');
        const before = i === 0 ? 0 : total(phases[i - 1]!, 'remote_tlb_flush');
        return now === null || before === null ? null : now - before;
      });
      return {
        label: x.label, pages4k: phases.map((p) => total(p, 'pages_4k')), pages2m: phases.map((p) => total(p, 'pages_2m')),
        pages1g: phases.map((p) => total(p, 'pages_1g')), tlbFlushes: flushes,
      };
    }),
  };
}

function phaseStatsTable(ps: PhaseStats): Table {
  const n = (v: number | null) => (v === null ? '-' : String(v));
  const header = ['phase'];
  for (const x of ps.perInput) header.push(`${x.label} pages_4k`, 'pages_2m', 'pages_1g', 'TLB flushes');
  return {
    id: 'phase-stats', caption: 'pages_4k / pages_2m / pages_1g after each phase, remote TLB flushes during it (run 1)', header,
    rows: ps.phases.map((p, i) => [p, ...ps.perInput.flatMap((x) => [n(x.pages4k[i]!), n(x.pages2m[i]!), n(x.pages1g[i]!), n(x.tlbFlushes[i]!)])]),
    notes: [],
  };
}

function cell(v: unknown): string {
  if (v === undefined) return '-';
  if (v === null) return 'null';
  return typeof v === 'object' ? JSON.stringify(v) : String(v);
}

/** Configuration: the harness, the cost model and seed, then every flag (differing rows marked). */
function configTable(inputs: ReportInput[]): Table {
  const rows: string[][] = [];
  const per = (f: (r: RunResult) => unknown) => inputs.map((x) => cell(f(x.result)));
  rows.push(['harness version', ...per((r) => r.harness?.version ?? 'unknown')]);
  rows.push(['git commit', ...per((r) => (r.harness ? `${r.harness.commit ?? 'unknown'}${r.harness.dirty ? ' (uncommitted changes)' : ''}` : 'unknown'))]);
  rows.push(['cost model', ...per((r) => (r.model ? `${r.model.costModel.name}@${r.model.costModel.version}` : 'unknown'))]);
  rows.push(['seed', ...per((r) => r.seed)]);
  rows.push(['runs', ...inputs.map((x) => String(x.runs.length))]);
  // Output paths say nothing about the run; seed and repeat are shown above.
  const skip = new Set(['json', 'quiet', 'seed', 'repeat']);
  for (const k of unionInOrder(inputs.map((x) => Object.keys(x.result.config)))) {
    if (skip.has(k)) continue;
    const v = inputs.map((x) => x.result.config[k]);
    // A derived object (the dirty-logging strategy) gets a row per field.
    if (v.every((o) => typeof o === 'object' && o !== null && !Array.isArray(o))) {
      for (const f of unionInOrder(v.map((o) => Object.keys(o as object)))) rows.push([`${k}.${f}`, ...v.map((o) => cell((o as Record<string, unknown>)[f]))]);
    } else {
      rows.push([k, ...v.map(cell)]);
    }
  }
  const marked = new Set<number>();
  rows.forEach((r, i) => {
    if (new Set(r.slice(1)).size > 1) marked.add(i);
  });
  return {
    id: 'config', caption: 'Configuration and strategies', header: ['', ...inputs.map((x) => x.label)], rows, marked,
    notes: marked.size > 0 ? ['marked rows differ between the inputs'] : [],
  };
}

function range(xs: number[], digits = 2): string {
  if (xs.length === 0) return '-';
  const lo = Math.min(...xs);
  const hi = Math.max(...xs);
  return lo === hi ? lo.toFixed(digits) : `${lo.toFixed(digits)}..${hi.toFixed(digits)}`;
}

/** Environment per input, over all its runs (ranges where the runs differ). */
function environmentTable(inputs: ReportInput[]): Table {
  const h = (x: ReportInput) => x.result.host;
  const over = (x: ReportInput, f: (r: RunResult) => number | null | undefined) => x.runs.map(f).filter((v): v is number => typeof v === 'number');
  const rows: string[][] = [
    ['Node / V8', ...inputs.map((x) => `${h(x).node} / ${h(x).v8}`)],
    ['platform', ...inputs.map((x) => h(x).platform)],
    ['CPUs', ...inputs.map((x) => `${h(x).cpus} × ${h(x).cpuModel}`)],
    ['load average (1 min) before', ...inputs.map((x) => range(over(x, (r) => r.host.loadavg.before[0])))],
    ['load average (1 min) after', ...inputs.map((x) => range(over(x, (r) => r.host.loadavg.after[0])))],
    ['CPU / wall', ...inputs.map((x) => range(over(x, (r) => r.host.cpuUsage.cpuPerWall)))],
    ['steal %', ...inputs.map((x) => range(over(x, (r) => r.host.stealPercent), 1))],
    ['other processes (cores)', ...inputs.map((x) => range(over(x, (r) => r.host.otherCores)))],
    ['noisy runs', ...inputs.map((x) => `${x.runs.filter((r) => r.host.noisy).length} of ${x.runs.length}`)],
  ];
  const notes = noisyInputs(inputs).map(noisyText);
  return { id: 'environment', caption: 'Environment', header: ['', ...inputs.map((x) => x.label)], rows, notes };
}

/** One table per input and thread that carries a CPU profile (`--profile cpu`); none without. */
function profileTables(inputs: ReportInput[]): Table[] {
  const out: Table[] = [];
  for (const x of inputs) {
    for (const p of x.result.profiles ?? []) {
      out.push({
        id: 'profile', caption: `CPU profile: ${x.label}, ${p.thread} (${p.file})`, header: ['function', 'location', 'self ms', 'self %'],
        rows: p.top.map((t) => [t.fn || '(anonymous)', `${t.url}:${t.line}`, t.selfMs.toFixed(1), t.pct.toFixed(1)]), notes: [],
      });
    }
  }
  return out;
}

export interface ReportTables {
  comparison: Comparison;
  phaseStats: PhaseStats;
  tables: Table[];
}

export function reportTables(inputs: ReportInput[]): ReportTables {
  const comparison = compareInputs(inputs);
  const ps = phaseStats(inputs);
  return {
    comparison, phaseStats: ps,
    tables: [inputsTable(inputs), comparisonTable(inputs, comparison), phaseStatsTable(ps), configTable(inputs), environmentTable(inputs), ...profileTables(inputs)],
  };
}
