/**
 * The distributed executor on BullMQ (Redis). The coordinator (`mmuh sweep … --queue URL`) enqueues
 * one job per run with job id `<sweep id>.<run id>` — BullMQ ignores an add whose id exists, so a
 * run is enqueued once however often the coordinator restarts, and its result is the job's single
 * return value: a run is never counted twice. Workers (`mmuh worker --queue URL`, any number, any
 * machine) take jobs, run them as child processes and return the result JSON (histograms as
 * HdrHistogram HISTFAAA strings). A worker that dies mid-run stops renewing its job's lock; BullMQ's
 * stalled-job check moves the job back to wait and another worker runs it (maxStalledCount 1); a
 * run that fails `attempts` times is failed with its error and the sweep still finishes.
 *
 * Admission: a worker registers (name, host, harness version and commit) and takes no job until a
 * coordinator has admitted it; a coordinator refuses, by name, a worker of another harness, since
 * its figures would not be comparable. Each result's harness is checked again on arrival.
 */
import { hostname } from 'node:os';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Queue, Worker, UnrecoverableError, type ConnectionOptions, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import { UsageError } from '../scenario/flags.js';
import type { HarnessInfo, RunResult } from '../scenario/result.js';
import { writeJsonAtomic } from '../report/json-out.js';
import { startRun } from './cell-run.js';
import { recordRun } from './local.js';
import { completeRun, harnessName, readRun, runFile, sameHarness } from './sweep-dir.js';
import type { SweepProgress } from './progress.js';
import type { PlannedRun, SweepPlan } from './sweep-result.js';

export const kDefaultQueueName = 'mmuh-sweep';

export interface QueueTarget {
  url: string;
  /** ioredis options from the URL (redis://[user:pass@]host:port/db). */
  connection: { host: string; port: number; db: number; username?: string; password?: string };
  queueName: string;
}

export function parseQueueUrl(url: string, queueName = kDefaultQueueName): QueueTarget {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new UsageError(`EINVAL: --queue ${url}: not a URL (give redis://HOST:PORT/N)`);
  }
  if (u.protocol !== 'redis:') throw new UsageError(`EINVAL: --queue ${url}: only redis:// URLs (BullMQ on Redis)`);
  const db = u.pathname === '' || u.pathname === '/' ? 0 : Number(u.pathname.slice(1));
  if (!Number.isInteger(db) || db < 0) throw new UsageError(`EINVAL: --queue ${url}: the database is a number (redis://HOST:PORT/N)`);
  if (!/^[A-Za-z0-9._-]+$/.test(queueName)) throw new UsageError(`EINVAL: --queue-name ${queueName}: letters, digits, '.', '_' and '-' only`);
  return {
    url, queueName,
    connection: {
      host: u.hostname || '127.0.0.1', port: u.port ? Number(u.port) : 6379, db,
      ...(u.username ? { username: decodeURIComponent(u.username) } : {}), ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
    },
  };
}

/**
 * One connection attempt, no retries, a 2 s deadline: an unreachable Redis is one line and exit 2
 * within seconds, not ioredis's endless reconnect loop.
 */
export async function probeRedis(t: QueueTarget): Promise<Redis> {
  const r = new Redis({ ...t.connection, lazyConnect: true, connectTimeout: 2000, maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => null });
  // connect() rejects with "Connection is closed"; the socket's own error says why.
  let cause: NodeJS.ErrnoException | null = null;
  r.on('error', (e: NodeJS.ErrnoException) => { cause ??= e; });
  try {
    await r.connect();
    await r.ping();
    return r;
  } catch (e) {
    r.disconnect();
    const err = cause ?? (e as NodeJS.ErrnoException);
    const code = err.code && /^E[A-Z]+$/.test(err.code) ? err.code : 'ECONNREFUSED';
    throw new UsageError(`${code}: --queue ${t.url}: cannot reach Redis (${err.message.split('\n')[0]})`);
  }
}

/** BullMQ's connection: it needs maxRetriesPerRequest null for its blocking commands. */
function bullConnection(t: QueueTarget): ConnectionOptions {
  return { ...t.connection, maxRetriesPerRequest: null };
}

const workersKey = (t: QueueTarget) => `mmuh:${t.queueName}:workers`;
const verdictsKey = (t: QueueTarget) => `mmuh:${t.queueName}:verdicts`;

interface WorkerEntry {
  name: string;
  host: string;
  pid: number;
  harness: HarnessInfo;
}

interface Verdict {
  ok: boolean;
  reason: string;
  sweepId: string;
}

export interface JobData {
  sweepId: string;
  runId: string;
  scenario: string;
  argv: string[];
  harness: HarnessInfo;
}

export interface JobReturn {
  result: RunResult;
  worker: string;
}

export function jobId(plan: SweepPlan, run: PlannedRun): string {
  return `${plan.sweep.id}.${run.runId}`;
}

export interface CoordinatorOptions {
  dir: string;
  progress: SweepProgress;
  /** Poll period (ms) for job states and worker admissions. */
  pollMs?: number;
}

/**
 * Enqueue the runs without a complete result in DIR, admit or refuse workers, wait for every job
 * to complete or fail, and write each result into DIR/runs/ (the merge reads them from there).
 */
export async function coordinate(plan: SweepPlan, t: QueueTarget, o: CoordinatorOptions): Promise<{ workers: string[]; failed: number }> {
  const redis = await probeRedis(t);
  const queue = new Queue<JobData, JobReturn>(t.queueName, { connection: bullConnection(t) });
  const pollMs = o.pollMs ?? 500;
  const admitted = new Set<string>();
  const judged = new Set<string>();
  try {
    const runs = plan.cells.flatMap((c) => c.runs);
    const pending = new Map<string, PlannedRun>();
    let kept = 0;
    for (const run of runs) {
      if (completeRun(plan, run, readRun(o.dir, run.runId))) kept++;
      else pending.set(jobId(plan, run), run);
    }
    // A failed job an earlier coordinator left (it died before collecting it) gets its tries
    // again; a completed one is collected below as it is (same id, same run).
    for (const id of pending.keys()) {
      const j = await queue.getJob(id);
      if (j && (await j.getState()) === 'failed') await j.retry('failed');
    }
    await queue.addBulk([...pending].map(([id, run]) => ({
      name: run.runId,
      data: { sweepId: plan.sweep.id, runId: run.runId, scenario: plan.sweep.scenario, argv: run.argv, harness: plan.harness },
      opts: { jobId: id, attempts: plan.sweep.attempts, removeOnComplete: false, removeOnFail: false },
    })));
    o.progress.start(runs.length, kept);
    let failed = 0;
    const active = new Set<string>();
    const t0 = new Map<string, number>();
    while (pending.size > 0) {
      await admitWorkers(redis, t, plan, admitted, judged, o.progress);
      for (const [id, run] of [...pending]) {
        const polled = await pollJob(queue, id);
        if (polled.state === 'active' && !active.has(id)) {
          active.add(id);
          t0.set(id, Date.now());
          o.progress.running(run.runId, +1);
        }
        if (polled.job === null) continue;
        const { job, state } = polled;
        const rec = collect(plan, run, job, state);
        writeJsonAtomic(runFile(o.dir, run.runId), rec.file);
        // The result is in DIR now (a restarted coordinator keeps it, --resume-style): the job's
        // copy in Redis would only grow the server. A failed run's job goes too, so a rerun of the
        // sweep enqueues it afresh.
        await job.remove();
        if (active.delete(id)) o.progress.running(run.runId, -1);
        if (rec.status === 'failed') failed++;
        o.progress.finished(run.runId, rec.status, (job.finishedOn ?? Date.now()) - (job.processedOn ?? t0.get(id) ?? Date.now()), rec.error);
        pending.delete(id);
      }
      if (pending.size > 0) await new Promise((r) => setTimeout(r, pollMs));
    }
    o.progress.close();
    return { workers: [...admitted].sort(), failed };
  } finally {
    await queue.close();
    redis.disconnect();
  }
}

/** The part of BullMQ's Queue that pollJob() reads (a test gives it a queue that changes between calls). */
export interface JobSource<J> {
  getJobState(id: string): Promise<string>;
  getJob(id: string): Promise<J | undefined>;
}

export type Polled<J> = { state: 'completed' | 'failed'; job: J } | { state: string; job: null };

/**
 * One job's state, and the job itself once it has finished. The state is read first and the job
 * after it: completed and failed are final here (only this coordinator retries or removes a job),
 * so a job read after them holds its return value or failure. Read the other way round, a job
 * that finishes between the two reads is seen completed with the return value it had while active
 * (none): the cause of a coordinator's exit 1 on a loaded CI machine.
 */
export async function pollJob<J>(queue: JobSource<J>, id: string): Promise<Polled<J>> {
  const state = await queue.getJobState(id);
  if (state !== 'completed' && state !== 'failed') return { state, job: null };
  const job = await queue.getJob(id);
  if (job === undefined) return { state: 'unknown', job: null };
  return { state, job };
}

/** A finished job as the result file the merge reads; a result of another harness is a failure. */
function collect(plan: SweepPlan, run: PlannedRun, job: Job<JobData, JobReturn>, state: 'completed' | 'failed'): { file: object; status: string; error: string | null } {
  // attemptsStarted counts a try cut short by a dead worker (a stall) too; attemptsMade does not.
  const attempts = Math.max(job.attemptsStarted ?? 0, job.attemptsMade);
  if (state === 'completed') {
    const rv = job.returnvalue;
    if (!sameHarness(rv.result.harness, plan.harness)) {
      const error = `worker ${rv.worker} returned a result of ${harnessName(rv.result.harness)}, the sweep is ${harnessName(plan.harness)}`;
      return { file: recordRun(plan, run, { status: 'failed', result: null, error }, attempts, rv.worker), status: 'failed', error };
    }
    const status = rv.result.status === 'skipped' ? 'skipped' : 'ok';
    return { file: recordRun(plan, run, { status, result: rv.result, error: null }, attempts, rv.worker), status, error: null };
  }
  const error = job.failedReason || 'failed';
  return { file: recordRun(plan, run, { status: 'failed', result: null, error }, attempts, 'queue'), status: 'failed', error };
}

/** Judge every registered worker once: the same harness version and commit as the plan, or refused by name. */
async function admitWorkers(redis: Redis, t: QueueTarget, plan: SweepPlan, admitted: Set<string>, judged: Set<string>, progress: SweepProgress): Promise<void> {
  const all = await redis.hgetall(workersKey(t));
  for (const [name, json] of Object.entries(all)) {
    if (judged.has(name)) continue;
    judged.add(name);
    let w: WorkerEntry;
    try {
      w = JSON.parse(json) as WorkerEntry;
    } catch {
      continue;
    }
    const ok = sameHarness(w.harness, plan.harness);
    const reason = ok ? `admitted to sweep ${plan.sweep.id}` : `refused: it is ${harnessName(w.harness)}, sweep ${plan.sweep.id} is ${harnessName(plan.harness)}`;
    const v: Verdict = { ok, reason, sweepId: plan.sweep.id };
    await redis.hset(verdictsKey(t), name, JSON.stringify(v));
    if (ok) admitted.add(name);
    progress.say(`worker ${name} on ${w.host} ${reason}`);
  }
}

export interface WorkerOptions {
  name: string;
  harness: HarnessInfo;
  concurrency: number;
  /** BullMQ lock duration and stalled-check interval (ms): how soon a dead worker's job moves on. */
  lockDuration: number;
  stalledInterval: number;
  /** Exit after this many seconds without a job (0: never). */
  idleExitS: number;
  log: (line: string) => void;
}

/**
 * Register, wait for a coordinator's verdict, then take jobs until idle for idleExitS (or SIGTERM /
 * SIGINT: finish the runs in hand, then exit). Returns the exit code: 0, or 2 when refused.
 */
export async function runWorker(t: QueueTarget, o: WorkerOptions): Promise<number> {
  const redis = await probeRedis(t);
  const entry: WorkerEntry = { name: o.name, host: hostname(), pid: process.pid, harness: o.harness };
  // A stale verdict (an earlier worker of this name) must not admit this one.
  await redis.hdel(verdictsKey(t), o.name);
  await redis.hset(workersKey(t), o.name, JSON.stringify(entry));
  o.log(`worker ${o.name}: ${harnessName(o.harness)}, waiting for a coordinator on ${t.url} (queue ${t.queueName})`);
  let verdict: Verdict | null = null;
  const since = Date.now();
  while (verdict === null) {
    const v = await redis.hget(verdictsKey(t), o.name);
    if (v !== null) verdict = JSON.parse(v) as Verdict;
    else if (o.idleExitS > 0 && Date.now() - since > o.idleExitS * 1000) {
      await redis.hdel(workersKey(t), o.name);
      redis.disconnect();
      o.log(`worker ${o.name}: no coordinator admitted it in ${o.idleExitS} s (--idle-exit); stopped`);
      return 0;
    } else await new Promise((r) => setTimeout(r, 250));
  }
  if (!verdict.ok) {
    await redis.hdel(workersKey(t), o.name);
    redis.disconnect();
    throw new UsageError(`EPERM: worker ${o.name} ${verdict.reason}`);
  }
  o.log(`worker ${o.name}: ${verdict.reason}`);
  const scratch = mkdtempSync(join(tmpdir(), 'mmuh-worker-'));
  let lastJob = Date.now();
  let busy = 0;
  const worker = new Worker<JobData, JobReturn>(t.queueName, async (job) => {
    busy++;
    try {
      if (!sameHarness(job.data.harness, o.harness)) {
        throw new UnrecoverableError(`worker ${o.name} is ${harnessName(o.harness)}, the sweep is ${harnessName(job.data.harness)}`);
      }
      o.log(`worker ${o.name}: ${job.data.runId} (try ${job.attemptsMade + 1})`);
      const json = join(scratch, `${job.data.runId}.json`);
      const outcome = await startRun(job.data.scenario, job.data.argv, json).done;
      if (outcome.status === 'failed') throw new Error(outcome.error ?? 'failed');
      return { result: outcome.result as RunResult, worker: o.name };
    } finally {
      busy--;
      lastJob = Date.now();
    }
  }, { connection: bullConnection(t), concurrency: o.concurrency, lockDuration: o.lockDuration, stalledInterval: o.stalledInterval, maxStalledCount: 1 });
  worker.on('error', (e) => o.log(`worker ${o.name}: ${e.message}`));
  let stop!: () => void;
  const stopped = new Promise<void>((r) => { stop = r; });
  const onSignal = () => stop();
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);
  const idle = o.idleExitS > 0 ? setInterval(() => { if (busy === 0 && Date.now() - lastJob > o.idleExitS * 1000) stop(); }, 250) : null;
  await stopped;
  if (idle) clearInterval(idle);
  process.off('SIGTERM', onSignal);
  process.off('SIGINT', onSignal);
  await worker.close();
  await redis.hdel(workersKey(t), o.name);
  redis.disconnect();
  rmSync(scratch, { recursive: true, force: true });
  o.log(`worker ${o.name}: stopped`);
  return 0;
}
