/**
 * A sweep's directory, the one format every executor writes and `mmuh merge` reads:
 *   DIR/plan.json          the plan (the same bytes from every shard: rename(2) makes it whole)
 *   DIR/runs/<run>.json    one `mmuh run --json` result per run (`<cell>#<k>`), with `sweepRun`
 * Merging reads the plan and every run it names, so a local sweep, a queue's coordinator and
 * `--shard` + `mmuh merge` produce the same cells from the same runs.
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { UsageError } from '../scenario/flags.js';
import { kResultSchema, type FailedRunResult, type HarnessInfo, type RunResult } from '../scenario/result.js';
import { withRepeats } from '../report/repeat-aggregate.js';
import { writeJsonAtomic } from '../report/json-out.js';
import { mergeCellRuns } from './merge-runs.js';
import {
  kSweepPlanSchema, kSweepSchema, type PlannedRun, type SweepCell, type SweepPlan, type SweepResult, type SweepRunRecord,
} from './sweep-result.js';

/** File name of a run's result: the run id is already file-safe (plan.ts). */
export function runFile(dir: string, runId: string): string {
  return join(dir, 'runs', `${runId}.json`);
}

export function writePlan(dir: string, plan: SweepPlan): void {
  mkdirSync(join(dir, 'runs'), { recursive: true });
  writeJsonAtomic(join(dir, 'plan.json'), plan);
}

/** The id of the sweep whose plan DIR holds, or null when it holds none yet. */
export function sweepIdIn(dir: string): string | null {
  return existsSync(join(dir, 'plan.json')) ? readPlan(dir).sweep.id : null;
}

export function readPlan(dir: string): SweepPlan {
  const file = join(dir, 'plan.json');
  let plan: SweepPlan;
  try {
    plan = JSON.parse(readFileSync(file, 'utf8')) as SweepPlan;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new UsageError(code === 'ENOENT' ? `ENOENT: ${file}: no sweep plan here (run mmuh sweep … --out ${dir} first)` : `EINVAL: ${file}: not a sweep plan (${(e as Error).message.replace(/\s+/g, ' ')})`);
  }
  if (plan?.schema !== kSweepPlanSchema) throw new UsageError(`EINVAL: ${file}: schema ${String(plan?.schema)}, expected ${kSweepPlanSchema}`);
  return plan;
}

/** The run's result file, or null when there is none (or it is not a result, e.g. cut short). */
export function readRun(dir: string, runId: string): RunResult | FailedRunResult | null {
  try {
    const r = JSON.parse(readFileSync(runFile(dir, runId), 'utf8')) as RunResult;
    return r?.schema === kResultSchema ? r : null;
  } catch {
    return null;
  }
}

export function sameHarness(a: HarnessInfo | undefined, b: HarnessInfo | undefined): boolean {
  return a !== undefined && b !== undefined && a.version === b.version && a.commit === b.commit;
}

export function harnessName(h: HarnessInfo | undefined): string {
  return h === undefined ? 'an unknown harness' : `${h.name} ${h.version} (commit ${h.commit ?? 'unknown'})`;
}

/** A run's file is this run's, complete, and from the plan's harness (--resume keeps it). */
export function completeRun(plan: SweepPlan, run: PlannedRun, r: RunResult | FailedRunResult | null): r is RunResult {
  if (r === null || (r.status !== 'ok' && r.status !== 'skipped')) return false;
  const cell = plan.cells.find((c) => c.id === run.cellId)!;
  return r.scenario === plan.sweep.scenario && r.seed === cell.seed && r.sweepRun?.runId === run.runId && sameHarness(r.harness, plan.harness);
}

export interface MergeOptions {
  executor?: SweepResult['executor'];
}

/**
 * The sweep result from DIR. A run from another harness version or commit is refused (its figures
 * are not comparable); a run without a result is `missing` and named in the cell and the notes.
 */
export function mergeSweepDir(dir: string, opts: MergeOptions = {}): SweepResult {
  const plan = readPlan(dir);
  const workers = new Set<string>();
  const cells: SweepCell[] = plan.cells.map((c) => {
    const records: SweepRunRecord[] = [];
    const done: RunResult[] = [];
    for (const run of c.runs) {
      const r = readRun(dir, run.runId);
      if (r !== null && r.harness !== undefined && !sameHarness(r.harness, plan.harness)) {
        throw new UsageError(`EINVAL: ${runFile(dir, run.runId)} was made by ${harnessName(r.harness)}, the sweep by ${harnessName(plan.harness)}: results of different harnesses cannot be merged`);
      }
      if (r?.sweepRun?.worker) workers.add(r.sweepRun.worker);
      const base = { runId: run.runId, k: run.k, ...(r?.sweepRun ? { attempts: r.sweepRun.attempts, worker: r.sweepRun.worker } : {}) };
      if (r === null || r.seed !== c.seed || r.scenario !== plan.sweep.scenario) {
        records.push({ ...base, status: 'missing', error: r === null ? 'no result' : 'the result is another run’s (seed or scenario differs)' });
      } else if (r.status === 'failed') {
        records.push({ ...base, status: 'failed', error: r.error?.message ?? 'failed' });
      } else {
        records.push({ ...base, status: r.status === 'skipped' ? 'skipped' : 'ok', ...(r.status === 'skipped' && r.error ? { error: r.error.message } : {}) });
        if (r.status === 'ok') done.push(r as RunResult);
      }
    }
    const failed = records.find((x) => x.status === 'failed');
    const missing = records.find((x) => x.status === 'missing');
    const status = failed ? 'failed' : missing ? 'missing' : 'ok';
    const error = failed ? `${failed.runId}: ${failed.error}` : missing ? `${missing.runId}: ${missing.error}` : undefined;
    return {
      id: c.id, values: c.values, seed: c.seed, argv: c.argv, status, runs: records,
      result: done.length > 0 ? withRepeats(done) : null, merged: done.length > 0 ? mergeCellRuns(done) : null,
      ...(error !== undefined ? { error } : {}),
    };
  });
  const count = (s: SweepCell['status']) => cells.filter((c) => c.status === s).length;
  const missing = cells.filter((c) => c.status === 'missing');
  const notes: string[] = [];
  if (missing.length > 0) notes.push(`${missing.length} of ${cells.length} cells missing: ${missing.map((c) => c.id).join(' ')}`);
  const failed = cells.filter((c) => c.status === 'failed');
  if (failed.length > 0) notes.push(`${failed.length} of ${cells.length} cells failed: ${failed.map((c) => `${c.id} (${c.error})`).join('; ')}`);
  notes.push(`each cell's runs merged: HDR histograms added, counters summed, stats summed (cumulative, instant) or maxed (peak); every run kept under the cell's result.repeats`);
  return {
    schema: kSweepSchema, sweep: plan.sweep, cells,
    summary: { cells: cells.length, ok: count('ok'), failed: count('failed'), missing: count('missing'), runs: cells.reduce((s, c) => s + c.runs.filter((r) => r.status === 'ok' || r.status === 'skipped').length, 0) },
    executor: opts.executor ?? { mode: 'merge', workers: [...workers].sort(), wallNs: null },
    harness: plan.harness, notes,
  };
}
