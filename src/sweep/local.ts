/**
 * The local executor (also what `--shard i/n` runs): the cells' runs as child processes, `jobs` at
 * a time, each retried until it has had `attempts` tries; results land in DIR/runs/ as they finish,
 * so a sweep cut short resumes where it stopped (`--resume` keeps every complete result of this
 * harness and reruns the rest).
 */
import { kResultSchema, type FailedRunResult, type HarnessInfo, type RunResult } from '../scenario/result.js';
import { writeJsonAtomic } from '../report/json-out.js';
import { startRun, type RunOutcome } from './cell-run.js';
import { completeRun, readRun, runFile } from './sweep-dir.js';
import type { SweepProgress } from './progress.js';
import type { PlannedCell, PlannedRun, SweepPlan } from './sweep-result.js';

export interface LocalOptions {
  dir: string;
  jobs: number;
  resume: boolean;
  cells: PlannedCell[];
  /** Recorded as each run's worker: 'local', 'shard 1/4'. */
  worker: string;
  progress: SweepProgress;
}

/** What a run that left no result file records, so the merge can name its error. */
export function failedRecord(plan: SweepPlan, run: PlannedRun, error: string, harness: HarnessInfo): FailedRunResult {
  const cell = plan.cells.find((c) => c.id === run.cellId)!;
  return {
    schema: kResultSchema, status: 'failed', error: { errno: null, message: error }, scenario: plan.sweep.scenario,
    config: { argv: run.argv }, seed: cell.seed, output: [], harness,
  };
}

/** Try a run up to `attempts` times; returns the outcome of the last try and how many it took. */
export async function runWithRetries(plan: SweepPlan, run: PlannedRun, json: string, onTry?: (attempt: number) => void): Promise<{ outcome: RunOutcome; attempts: number }> {
  let outcome: RunOutcome = { status: 'failed', result: null, error: 'not run' };
  let attempt = 0;
  while (attempt < plan.sweep.attempts) {
    attempt++;
    onTry?.(attempt);
    outcome = await startRun(plan.sweep.scenario, run.argv, json).done;
    if (outcome.status !== 'failed') break;
  }
  return { outcome, attempts: attempt };
}

/** The result file as the sweep keeps it: the child's result (or a failure record) with sweepRun. */
export function recordRun(plan: SweepPlan, run: PlannedRun, outcome: RunOutcome, attempts: number, worker: string): RunResult | FailedRunResult {
  const r = outcome.result !== null && outcome.status !== 'failed' ? outcome.result
    : { ...(outcome.result ?? failedRecord(plan, run, outcome.error ?? 'failed', plan.harness)), status: 'failed' as const, error: { errno: outcome.result?.error?.errno ?? null, message: outcome.error ?? 'failed' } };
  return { ...r, sweepRun: { sweepId: plan.sweep.id, runId: run.runId, worker, attempts } };
}

export async function runLocal(plan: SweepPlan, o: LocalOptions): Promise<{ ran: number; kept: number; failed: number }> {
  const todo: PlannedRun[] = [];
  let kept = 0;
  for (const c of o.cells) {
    for (const run of c.runs) {
      if (o.resume && completeRun(plan, run, readRun(o.dir, run.runId))) kept++;
      else todo.push(run);
    }
  }
  o.progress.start(todo.length + kept, kept);
  let failed = 0;
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < todo.length) {
      const run = todo[next++]!;
      const t0 = performance.now();
      o.progress.running(run.runId, +1);
      const json = runFile(o.dir, run.runId);
      const { outcome, attempts } = await runWithRetries(plan, run, json, (a) => { if (a > 1) o.progress.retry(run.runId, a); });
      writeJsonAtomic(json, recordRun(plan, run, outcome, attempts, o.worker));
      if (outcome.status === 'failed') failed++;
      o.progress.running(run.runId, -1);
      o.progress.finished(run.runId, outcome.status, performance.now() - t0, outcome.error);
    }
  };
  await Promise.all(Array.from({ length: Math.min(o.jobs, Math.max(1, todo.length)) }, lane));
  o.progress.close();
  return { ran: todo.length, kept, failed };
}
