/**
 * The benchmark suite's entry point (`npm run bench` = build + `node dist/benchmarks/run.js`).
 *
 *   node dist/benchmarks/run.js [--quick] [--only <substring>[,<substring>...]] [--out FILE] [--update-baseline] [--seed N]
 *
 * Runs the benchmarks in order, writes a JSON report (default reports/bench-<date>T<time>.json),
 * compares every figure with benchmarks/baselines/baseline.json and prints
 * name | value | unit | baseline | ratio | target | verdict | flags.
 *
 * Benchmarks report; they do not gate: a missed target prints MISSED and the exit code stays 0.
 * Exit 1 only when a benchmark could not run at all (it threw), 2 on bad usage.
 */
import { cpus, availableParallelism, loadavg, release, totalmem } from 'node:os';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { fault4k1worker, fault4kScaling, fault4k1vm2vcpusScaling } from './fault.js';
import { demandPaging416, memoryPerPage, scale256, scale1024 } from './scenario-child.js';
import { microBenchmarks } from './micro.js';
import { dirtyClear1g, dirtyGetLegacy1g, dirtyGetManualCopy, dirtyLogPerf64, wrprotFault1worker } from './dirty.js';
import { childCpuMsTotal } from './child.js';
import { report20 } from './report.js';
import { memslots32764 } from './memslots.js';
import { gmemBenchmarks } from './gmem.js';
import { parseFlags, UsageError, type FlagSpec } from '../src/scenario/flags.js';
import {
  closeWindow, failedResult, fmtNumber, openWindow, round, type BenchOptions, type BenchResult, type Benchmark,
} from './lib.js';

const kReportSchema = 'kvm-mmu-harness/bench@1';
const kBaselineSchema = 'kvm-mmu-harness/bench-baseline@1';
/** A figure this much worse than its baseline is flagged (machine noise here is ~5-10%). */
const kRegressionPct = 15;

/** Repository root: dist/benchmarks/run.js -> ../../ */
const kRoot = resolve(fileURLToPath(new URL('../../', import.meta.url)));
const kBaselinePath = join(kRoot, 'benchmarks', 'baselines', 'baseline.json');

/** Order: main-thread micro-benchmarks first (clean heap), then workers, then child processes. */
const kBenchmarks: Benchmark[] = [
  ...microBenchmarks, dirtyGetManualCopy, dirtyClear1g, dirtyGetLegacy1g, ...gmemBenchmarks,
  fault4k1worker, fault4kScaling, fault4k1vm2vcpusScaling, wrprotFault1worker,
  memoryPerPage, scale256, scale1024, demandPaging416, dirtyLogPerf64, memslots32764, report20,
];

interface Args {
  quick: boolean;
  only: string | null;
  out: string | null;
  updateBaseline: boolean;
  seed: number;
}

const kUsage = `usage: node dist/benchmarks/run.js [options]   (npm run bench -- [options])

  --quick             smaller sizes, fewer repetitions, no 256-VM or 64-vCPU run: a smoke run (not for baselines)
  --only <substring>  run only benchmarks whose name contains <substring> (a,b: any of them)
  --out FILE          write the JSON report here (default reports/bench-<date>.json)
  --update-baseline   rewrite benchmarks/baselines/baseline.json from this run's figures
  --seed N            guest_random_seed for every benchmark (default 1)

benchmarks: ${kBenchmarks.map((b) => b.name).join(', ')}`;

// The benchmarks' flags, parsed by the same getopt-style parser as mmuh's scenario flags.
const kBenchFlags: FlagSpec[] = [
  { name: 'quick', type: 'bool', default: false, help: 'smoke run' },
  { name: 'only', type: 'string', default: null, help: 'benchmarks whose name contains this' },
  { name: 'out', type: 'string', default: null, help: 'JSON report path' },
  { name: 'update-baseline', type: 'bool', default: false, help: 'rewrite the baseline' },
  { name: 'seed', type: 'int', default: 1, min: 0, max: 2 ** 31 - 1, help: 'guest_random_seed' },
];

function parseArgs(argv: string[]): Args {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(kUsage + '\n');
    process.exit(0);
  }
  const f = parseFlags(kBenchFlags, argv);
  const a: Args = { quick: f.quick as boolean, only: f.only as string | null, out: f.out as string | null, updateBaseline: f['update-baseline'] as boolean, seed: f.seed as number };
  if (a.updateBaseline && a.quick) throw new UsageError('--update-baseline with --quick would record smoke-run sizes as the baseline; drop one');
  return a;
}

// ---------------------------------------------------------------------------------------------
// Environment

function git(args: string[]): string | null {
  try {
    return execFileSync('git', args, { cwd: kRoot, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return null;
  }
}

function environment(): Record<string, unknown> {
  const c = cpus();
  const status = git(['status', '--porcelain', '--untracked-files=no']);
  return {
    node: process.version, v8: process.versions.v8, platform: `${process.platform}-${process.arch}`, kernel: release(),
    cpus: c.length, availableParallelism: availableParallelism(), cpuModel: c[0]?.model ?? 'unknown',
    totalMemBytes: totalmem(), loadavgAtStart: loadavg().map((x) => round(x, 2)),
    git: { commit: git(['rev-parse', 'HEAD']), dirty: status === null ? null : status.length > 0 },
  };
}

// ---------------------------------------------------------------------------------------------
// Baseline

interface BaselineEntry {
  value: number;
  unit: string;
  better: string;
  /** When and at which commit this figure was recorded (figures merged with --only differ). */
  recordedAt?: string;
  commit?: string | null;
}

interface Baseline {
  schema: string;
  createdAt: string;
  commit: string | null;
  dirty: boolean | null;
  env: Record<string, unknown>;
  note: string;
  figures: Record<string, BaselineEntry>;
}

function loadBaseline(): Baseline | null {
  if (!existsSync(kBaselinePath)) return null;
  try {
    const b = JSON.parse(readFileSync(kBaselinePath, 'utf8')) as Baseline;
    return b.schema === kBaselineSchema ? b : null;
  } catch {
    return null;
  }
}

interface Row {
  name: string;
  value: number;
  unit: string;
  baseline: number | null;
  ratio: number | null;
  target: string;
  verdict: 'ok' | 'MISSED' | '-' | 'ERROR';
  flags: string[];
}

function rowsOf(results: BenchResult[], base: Baseline | null, quick: boolean): Row[] {
  const rows: Row[] = [];
  for (const r of results) {
    if (r.error) {
      rows.push({ name: r.name, value: NaN, unit: '', baseline: null, ratio: null, target: '', verdict: 'ERROR', flags: [r.error] });
      continue;
    }
    for (const f of r.figures) {
      const b = base?.figures[f.name];
      const ratio = b && b.value !== 0 && b.unit === f.unit ? f.value / b.value : null;
      const flags: string[] = [];
      if (f.noisy) flags.push('noisy');
      if (ratio !== null && !quick) {
        if (f.better === 'higher' && ratio < 1 - kRegressionPct / 100) flags.push(`${Math.round((1 - ratio) * 100)}% below baseline`);
        if (f.better === 'lower' && ratio > 1 + kRegressionPct / 100) flags.push(`${Math.round((ratio - 1) * 100)}% above baseline`);
      }
      rows.push({
        name: f.name, value: f.value, unit: f.unit, baseline: b?.value ?? null, ratio: ratio === null ? null : round(ratio, 3),
        target: f.target?.text ?? '', verdict: f.target ? (f.target.ok ? 'ok' : 'MISSED') : '-', flags,
      });
    }
  }
  return rows;
}

function renderTable(rows: Row[]): string {
  const header = ['name', 'value', 'unit', 'baseline', 'ratio', 'target', 'verdict', 'flags'];
  const cells = rows.map((r) => [
    r.name, Number.isNaN(r.value) ? '-' : fmtNumber(r.value), r.unit, r.baseline === null ? '-' : fmtNumber(r.baseline),
    r.ratio === null ? '-' : `${r.ratio.toFixed(2)}x`, r.target || '-', r.verdict, r.flags.join('; '),
  ]);
  const all = [header, ...cells];
  const widths = header.map((_, i) => Math.max(...all.map((c) => c[i]!.length)));
  const left = new Set([0, 2, 5, 6, 7]);
  const line = (c: string[]) => c.map((x, i) => (left.has(i) ? x.padEnd(widths[i]!) : x.padStart(widths[i]!))).join(' | ').trimEnd();
  return [line(header), widths.map((w) => '-'.repeat(w)).join('-|-'), ...cells.map(line)].join('\n');
}

function writeBaseline(results: BenchResult[], env: Record<string, unknown>, only: string | null): number {
  const old = loadBaseline();
  const g = env.git as { commit: string | null; dirty: boolean | null };
  const now = new Date().toISOString();
  const figures: Record<string, BaselineEntry> = {};
  if (only && old) {
    // Kept figures keep their provenance (the old file's, unless they carry their own).
    for (const [k, e] of Object.entries(old.figures)) figures[k] = { recordedAt: old.createdAt, commit: old.commit, ...e };
  }
  let n = 0;
  for (const r of results) {
    if (r.error) continue;
    for (const f of r.figures) {
      figures[f.name] = { value: f.value, unit: f.unit, better: f.better, recordedAt: now, commit: g.commit };
      n++;
    }
  }
  const b: Baseline = {
    schema: kBaselineSchema, createdAt: now, commit: g.commit, dirty: g.dirty,
    env: { node: env.node, cpus: env.cpus, cpuModel: env.cpuModel, loadavgAtStart: env.loadavgAtStart },
    note: only && old
      ? 'Written by `npm run bench -- --update-baseline --only ...`: this run\'s figures merged into the previous file; each figure has its own recordedAt/commit. Ratios against it only mean something on the same machine.'
      : 'Written by `npm run bench -- --update-baseline`: medians of one full run on the machine named in env. Ratios against it only mean something on the same machine.',
    figures,
  };
  mkdirSync(dirname(kBaselinePath), { recursive: true });
  writeFileSync(kBaselinePath, JSON.stringify(b, null, 2) + '\n');
  return n;
}

// ---------------------------------------------------------------------------------------------

function stamp(d: Date): string {
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}${p(d.getMinutes())}${p(d.getSeconds())}`;
}

async function main(argv: string[]): Promise<number> {
  let args: Args;
  try {
    args = parseArgs(argv);
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`bench: ${e.message}\n${kUsage}\n`);
      return 2;
    }
    throw e;
  }
  // --only a,b: benchmarks whose name contains any of the comma-separated substrings.
  const only = args.only === null ? null : args.only.split(',').filter((x) => x.length > 0);
  const selected = kBenchmarks.filter((b) => (only === null || only.some((x) => b.name.includes(x))));
  if (selected.length === 0) {
    process.stderr.write(`bench: no benchmark name contains '${args.only}'\n${kUsage}\n`);
    return 2;
  }
  const started = new Date();
  const env = environment();
  const log = (line: string) => process.stdout.write(line + '\n');
  log(`kvm-mmu-harness benchmarks${args.quick ? ' (quick)' : ''}: node ${env.node}, ${env.cpus} CPUs (${env.cpuModel}), load ${(env.loadavgAtStart as number[]).join(' ')}, seed ${args.seed}`);
  const opts: BenchOptions = { quick: args.quick, seed: args.seed, root: kRoot, log };
  const results: BenchResult[] = [];
  const whole = openWindow();
  const childCpu0 = childCpuMsTotal;
  for (const b of selected) {
    if (args.quick && b.skipQuick) {
      log(`\n== ${b.name}: skipped (--quick)`);
      continue;
    }
    log(`\n== ${b.name}: ${b.description}`);
    const w = openWindow();
    const t0 = performance.now();
    try {
      const r = await b.run(opts);
      results.push(r);
    } catch (e) {
      log(`  ERROR: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
      results.push(failedResult(b, opts, w, e));
    }
    log(`  (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
  }
  const wholeWindow = closeWindow(whole, 0, childCpuMsTotal - childCpu0);
  const base = loadBaseline();
  const rows = rowsOf(results, base, args.quick);
  const finished = new Date();
  const report = {
    schema: kReportSchema, startedAt: started.toISOString(), finishedAt: finished.toISOString(),
    durationS: round((finished.getTime() - started.getTime()) / 1000, 1),
    options: { quick: args.quick, only: args.only, seed: args.seed },
    env: { ...env, loadavgAtEnd: loadavg().map((x) => round(x, 2)), window: wholeWindow },
    baseline: base ? { path: 'benchmarks/baselines/baseline.json', createdAt: base.createdAt, commit: base.commit } : null,
    table: rows, benchmarks: results,
  };
  const out = args.out ? resolve(args.out) : join(kRoot, 'reports', `bench-${stamp(started)}.json`);
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, JSON.stringify(report, null, 2) + '\n');

  log('');
  log(renderTable(rows));
  log('');
  const missed = rows.filter((r) => r.verdict === 'MISSED');
  const errors = rows.filter((r) => r.verdict === 'ERROR');
  const noisy = rows.filter((r) => r.flags.includes('noisy'));
  if (missed.length > 0) log(`MISSED ${missed.length} target(s): ${missed.map((r) => `${r.name} (${fmtNumber(r.value)} ${r.unit}, target ${r.target})`).join(', ')}`);
  else if (rows.some((r) => r.verdict === 'ok')) log('all targets met');
  if (errors.length > 0) log(`ERROR in ${errors.length} benchmark(s): ${errors.map((r) => r.name).join(', ')}`);
  if (noisy.length > 0) log(`noisy: ${noisy.map((r) => r.name).join(', ')} (see the report for why)`);
  if (!base) log('no baseline yet (benchmarks/baselines/baseline.json): run with --update-baseline on a quiet machine');
  else if (args.quick) log('quick run: sizes differ from the baseline\'s, ratios are not comparable');
  log(`machine: load ${report.env.loadavgAtEnd.join(' ')} at end; whole run ${report.durationS} s, other processes used ${wholeWindow.otherCores ?? '?'} cores on average, steal ${wholeWindow.stealPct ?? '?'}%`);
  log(`report: ${out}`);
  if (args.updateBaseline) {
    const n = writeBaseline(results, env, args.only);
    log(`baseline: wrote ${n} figure(s) to ${kBaselinePath}${args.only ? ' (merged into the existing ones)' : ''}`);
  }
  return errors.length > 0 ? 1 : 0;
}

process.exitCode = await main(process.argv.slice(2));
