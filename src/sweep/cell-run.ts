/**
 * One planned run as its own process: `mmuh run <scenario> <argv> --json FILE -q`, exactly what a
 * user would type, so a sweep's cell is the same run as a hand-made one (fresh host, VMs, pool).
 * The child watches its stdin: when the executor dies (SIGKILL, a lost node) the pipe closes and
 * the child exits instead of running on as an orphan that nobody collects.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, unlinkSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import os from 'node:os';
import { kResultSchema, type FailedRunResult, type RunResult } from '../scenario/result.js';
import { estimateRunBytes } from '../scenario/host-sizing.js';
import { memstressConfig } from '../scenario/common-flags.js';
import { memstressLayout } from '../scenario/memstress-vm.js';
import { parseFlags } from '../scenario/flags.js';
import { findScenario } from '../scenario/index.js';
import type { PlannedCell, SweepPlan } from './sweep-result.js';

/** Set in a sweep's child: exit when stdin closes (the parent is gone). main.ts reads it. */
export const kExitOnStdinEofEnv = 'MMUH_EXIT_ON_STDIN_EOF';

export interface RunOutcome {
  status: 'ok' | 'skipped' | 'failed';
  /** The result the child wrote (a failed run writes what it got to), or null. */
  result: RunResult | FailedRunResult | null;
  /** Why it failed: the result's error, else the child's last stderr line, else how it ended. */
  error: string | null;
}

export interface ChildRun {
  child: ChildProcess;
  done: Promise<RunOutcome>;
}

/** bin/mmuh.js of this package (package.json is above src/sweep or dist/src/sweep). */
export function mmuhBin(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json')) && dirname(dir) !== dir) dir = dirname(dir);
  return join(dir, 'bin', 'mmuh.js');
}

/** Start the run; `json` is where the child writes its result (replaced whole, atomically). */
export function startRun(scenario: string, argv: string[], json: string, env: NodeJS.ProcessEnv = process.env): ChildRun {
  if (existsSync(json)) unlinkSync(json); // a stale file must not pass for this run's result
  const child = spawn(process.execPath, [mmuhBin(), 'run', scenario, ...argv, '--json', json, '-q'], {
    env: { ...env, [kExitOnStdinEofEnv]: '1' }, stdio: ['pipe', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (s: string) => {
    stderr = (stderr + s).slice(-8192);
  });
  const done = new Promise<RunOutcome>((resolve) => {
    child.on('error', (e) => resolve({ status: 'failed', result: null, error: `cannot start mmuh run: ${e.message}` }));
    child.on('close', (code, signal) => {
      const result = readResult(json);
      const last = stderr.trim().split('\n').filter((x) => x.trim() !== '').pop()?.replace(/^mmuh: /, '') ?? null;
      if (code === 0 && result?.status === 'ok') return resolve({ status: 'ok', result, error: null });
      if (code === 4 && result?.status === 'skipped') return resolve({ status: 'skipped', result, error: result.error?.message ?? null });
      const how = signal !== null ? `killed by ${signal}` : `exit ${code}`;
      resolve({ status: 'failed', result, error: result?.error?.message ?? (last !== null ? `${last} (${how})` : `mmuh run ended without a result (${how})`) });
    });
  });
  return { child, done };
}

function readResult(json: string): RunResult | FailedRunResult | null {
  try {
    const r = JSON.parse(readFileSync(json, 'utf8')) as RunResult;
    return r && r.schema === kResultSchema ? r : null;
  } catch {
    return null;
  }
}

/**
 * How many runs fit at once: the machine's cores over each run's threads (its workers plus the
 * main thread's share), and the available memory over the largest cell's estimate (the same
 * estimate `mmuh run` refuses ENOMEM by).
 */
export function defaultJobs(plan: SweepPlan, cells: PlannedCell[], availableBytes: number): { jobs: number; why: string } {
  const scenario = findScenario(plan.sweep.scenario)!;
  let threads = 1;
  let bytes = 0;
  for (const c of cells) {
    const f = parseFlags(scenario.flags, c.argv);
    threads = Math.max(threads, typeof f.workers === 'number' ? f.workers : 1);
    bytes = Math.max(bytes, cellBytes(f));
  }
  const cores = os.availableParallelism();
  const byCores = Math.max(1, Math.floor(cores / threads));
  const byMemory = Math.max(1, Math.floor((availableBytes * 0.9) / bytes));
  const runs = cells.reduce((s, c) => s + c.runs.length, 0);
  const jobs = Math.max(1, Math.min(byCores, byMemory, runs));
  return { jobs, why: `${cores} cores / ${threads} worker thread(s) per run = ${byCores}; ${Math.floor(availableBytes / 2 ** 20)} MiB available / ${Math.ceil(bytes / 2 ** 20)} MiB per run = ${byMemory}` };
}

/** The host-sizing estimate for memstress-style flags; 512 MiB for scenarios it does not cover. */
function cellBytes(f: Record<string, unknown>): number {
  if (typeof f.vcpus !== 'number' || typeof f.bytes !== 'number') return 512 * 2 ** 20;
  try {
    const c = memstressConfig(f, { slots: typeof f.slots === 'number' ? f.slots : 1 });
    return estimateRunBytes(c, memstressLayout(c)).bytes;
  } catch {
    return 512 * 2 ** 20;
  }
}
