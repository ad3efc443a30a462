/**
 * Shared pieces of the benchmark suite: what a benchmark returns (figures plus the evidence
 * behind them), statistics over repeated runs, and measurement windows that record what the
 * machine was doing (load average, this process's CPU against wall, CPU other processes took,
 * steal) so a noisy run is flagged rather than believed.
 *
 * This is a 2-vCPU shared guest (node-platform.md section 5): a background process can take a
 * whole vCPU, so every window reports `otherCores`, the CPU used by anything that is not this
 * process (or the child it ran), in cores.
 */
import { cpus, loadavg } from 'node:os';
import { readProcStat, type ProcStat } from '../src/scenario/host-info.js';

// ---------------------------------------------------------------------------------------------
// Figures and results

export type Better = 'higher' | 'lower' | 'none';

export interface Target {
  /** e.g. ">= 3000000 faults/s" or "completes" */
  text: string;
  ok: boolean;
}

export interface Spread {
  n: number;
  median: number;
  min: number;
  max: number;
  mean: number;
  /** (max - min) / median, in percent. */
  spreadPct: number;
  /** tinybench's relative margin of error (95%), when the figure comes from tinybench. */
  rmePct?: number;
}

/** One row of the table and of the baseline. */
export interface Figure {
  name: string;
  value: number;
  unit: string;
  better: Better;
  target?: Target;
  stats?: Spread;
  noisy: boolean;
  notes: string[];
}

export interface BenchResult {
  /** Benchmark id (what --only matches). */
  name: string;
  description: string;
  seed: number;
  config: Record<string, unknown>;
  figures: Figure[];
  /** The window around the whole benchmark. */
  window: Window;
  /** Per-repetition evidence (values and the window of each). */
  samples: Record<string, unknown>[];
  details: Record<string, unknown>;
  noisy: boolean;
  notes: string[];
  error?: string;
}

export interface BenchOptions {
  quick: boolean;
  seed: number;
  /** Repository root (where bin/ and dist/ live). */
  root: string;
  log(line: string): void;
}

export interface Benchmark {
  name: string;
  description: string;
  /** Skipped under --quick. */
  skipQuick?: boolean;
  run(o: BenchOptions): Promise<BenchResult>;
}

// ---------------------------------------------------------------------------------------------
// Statistics

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export function spread(xs: readonly number[]): Spread {
  const med = median(xs);
  const min = Math.min(...xs);
  const max = Math.max(...xs);
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
  return { n: xs.length, median: med, min, max, mean, spreadPct: med !== 0 ? round(((max - min) / Math.abs(med)) * 100, 1) : 0 };
}

export function round(x: number, digits = 3): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/** Spread above which repeated runs are called noisy. */
export const kNoisySpreadPct = 10;

// ---------------------------------------------------------------------------------------------
// Measurement windows

let clkTck = 100;
export function setClockTicks(n: number): void {
  clkTck = n;
}

export interface WindowStart {
  t: number;
  cpu: NodeJS.CpuUsage;
  stat: ProcStat | null;
  loadavg: number[];
}

export interface Window {
  wallMs: number;
  loadavgBefore: number[];
  loadavgAfter: number[];
  /** This process (all its threads). */
  cpuUserMs: number;
  cpuSystemMs: number;
  /** CPU of a child process measured in this window (ms), when there was one. */
  childCpuMs: number;
  /** (this process + child) CPU / wall. */
  cpuPerWall: number;
  /** Threads meant to be busy (what cpuPerWall should approach). */
  busyThreads: number;
  /** Cores' worth of CPU taken by other processes during the window (from /proc/stat). */
  otherCores: number | null;
  stealPct: number | null;
  noisy: boolean;
  notes: string[];
}

export function openWindow(): WindowStart {
  return { t: performance.now(), cpu: process.cpuUsage(), stat: readProcStat(), loadavg: loadavg() };
}

/**
 * Close a window. Thresholds: another process using more than 0.25 cores on average, more than
 * 5% steal, or CPU/wall below 80% of the threads meant to be busy (a wait, or a busy machine).
 * Windows shorter than 200 ms are too short for /proc/stat's 10 ms ticks and are not judged.
 */
export function closeWindow(s: WindowStart, busyThreads: number, childCpuMs = 0): Window {
  const wallMs = performance.now() - s.t;
  const cpu = process.cpuUsage(s.cpu);
  const stat = readProcStat();
  const ownMs = (cpu.user + cpu.system) / 1000 + childCpuMs;
  let otherCores: number | null = null;
  let stealPct: number | null = null;
  if (s.stat && stat && wallMs > 0) {
    const busyMs = ((stat.busy - s.stat.busy) * 1000) / clkTck;
    otherCores = round(Math.max(0, busyMs - ownMs) / wallMs, 2);
    const dt = stat.total - s.stat.total;
    stealPct = dt > 0 ? round(((stat.steal - s.stat.steal) / dt) * 100, 1) : 0;
  }
  const cpuPerWall = wallMs > 0 ? round(ownMs / wallMs, 2) : 0;
  const notes: string[] = [];
  if (wallMs >= 200) {
    if (otherCores !== null && otherCores > 0.25) notes.push(`other processes used ${otherCores} cores`);
    if (stealPct !== null && stealPct > 5) notes.push(`${stealPct}% steal`);
    const expect = Math.min(busyThreads, cpus().length);
    if (busyThreads > 0 && cpuPerWall < 0.8 * expect) notes.push(`CPU/wall ${cpuPerWall} for ${expect} busy thread(s)`);
  }
  return {
    wallMs: round(wallMs, 1), loadavgBefore: s.loadavg.map((x) => round(x, 2)), loadavgAfter: loadavg().map((x) => round(x, 2)),
    cpuUserMs: round(cpu.user / 1000, 1), cpuSystemMs: round(cpu.system / 1000, 1), childCpuMs: round(childCpuMs, 1), cpuPerWall, busyThreads,
    otherCores, stealPct, noisy: notes.length > 0, notes,
  };
}

/** A figure from repeated values (median, spread, noisy flag from spread and windows). */
export function repeatedFigure(
  name: string, values: number[], unit: string, better: Better, windows: Window[], target?: (v: number) => Target,
): Figure {
  const st = spread(values);
  const notes: string[] = [];
  if (values.length > 1 && st.spreadPct > kNoisySpreadPct) notes.push(`spread ${st.spreadPct}% over ${values.length} runs`);
  const noisyRuns = windows.filter((w) => w.noisy).length;
  if (noisyRuns > 0) notes.push(`${noisyRuns}/${windows.length} run(s) noisy: ${[...new Set(windows.flatMap((w) => w.notes))].join('; ')}`);
  return {
    name, value: st.median, unit, better, stats: st, noisy: notes.length > 0, notes,
    ...(target ? { target: target(st.median) } : {}),
  };
}

export function atLeast(min: number, unit: string): (v: number) => Target {
  return (v) => ({ text: `>= ${fmtNumber(min)} ${unit}`, ok: v >= min });
}

export function atMost(max: number, unit: string): (v: number) => Target {
  return (v) => ({ text: `<= ${fmtNumber(max)} ${unit}`, ok: v <= max });
}

/** 3 significant digits with k/M/G suffixes for large values. */
export function fmtNumber(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  const a = Math.abs(v);
  if (a >= 1e9) return `${(v / 1e9).toPrecision(3)}G`;
  if (a >= 1e6) return `${(v / 1e6).toPrecision(3)}M`;
  if (a >= 1e4) return `${(v / 1e3).toPrecision(3)}k`;
  if (Number.isInteger(v)) return String(v);
  return v.toPrecision(3);
}

/** The result of a benchmark that threw: no figures, the error kept. */
export function failedResult(b: Benchmark, o: BenchOptions, w: WindowStart, e: unknown): BenchResult {
  const err = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
  return {
    name: b.name, description: b.description, seed: o.seed, config: {}, figures: [], window: closeWindow(w, 0), samples: [],
    details: {}, noisy: false, notes: [`failed: ${err}`], error: err,
  };
}
