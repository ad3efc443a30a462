/**
 * `mmuh sweep SWEEP.yaml` (local, `--shard i/n`, or `--queue redis://…`), `mmuh worker --queue …`
 * and `mmuh merge DIR`. Exit codes: 0 every cell ok; 1 a cell failed or is missing (the sweep
 * still finishes and writes what it has); 2 bad usage, a bad sweep file, an unreachable Redis, a
 * refused worker — one line on stderr.
 */
import { hostname } from 'node:os';
import { join } from 'node:path';
import { UsageError, parseFlagsAndArgs, type FlagSpec } from '../scenario/flags.js';
import { availableMemory } from '../scenario/host-sizing.js';
import { writeJsonAtomic, checkJsonPath } from '../report/json-out.js';
import { loadSweepFile } from '../sweep/sweep-file.js';
import { parseShard, planSweep, shardCells } from '../sweep/plan.js';
import { defaultJobs } from '../sweep/cell-run.js';
import { runLocal } from '../sweep/local.js';
import { mergeSweepDir, readPlan, sameHarness, harnessName, sweepIdIn, writePlan } from '../sweep/sweep-dir.js';
import { sweepProgress } from '../sweep/progress.js';
import type { SweepResult } from '../sweep/sweep-result.js';
import { harnessInfo } from './build-info.js';

export const kSweepUsage = `usage: mmuh sweep SWEEP.yaml [--dry-run] [--jobs N] [--resume] [--out DIR] [-o sweep.json]
                  [--shard i/n | --queue redis://HOST:PORT/N [--queue-name NAME]]

Runs a scenario over the cross product of the sweep file's axes (YAML or JSON):
  name: dirty-strategies        # optional
  scenario: dirty-log-perf
  seed: 1                       # each cell's seed derives from it and the cell id
  repeat: 3                     # runs per cell (each its own process, same seed)
  attempts: 2                   # tries per run before it counts as failed
  base: { vcpus: 2, bytes: 64M, workers: 1 }
  axes: { dirty: [pml, wrprot], split: [eager, lazy] }
Every run is \`mmuh run SCENARIO … --json DIR/runs/<cell>#<k>.json\`; the merged result
(schema kvm-mmu-harness/sweep@1) goes to -o (default DIR/sweep.json); \`mmuh report\` renders it.

  --dry-run          list the cells (id, seed, command) and exit
  --jobs N           runs at once (default: what the cores and the memory estimate allow)
  --resume           keep the complete results already in DIR (this harness's), run the rest
  --out DIR          the sweep directory (default sweeps/<sweep id>)
  -o FILE            the merged sweep result (default DIR/sweep.json)
  --shard i/n        run every n-th cell from i (Kubernetes JOB_COMPLETION_INDEX, Slurm
                     SLURM_ARRAY_TASK_ID); merge the shards with mmuh merge DIR
  --queue URL        enqueue the runs on BullMQ in Redis; mmuh worker processes run them
  --queue-name NAME  the BullMQ queue (default mmuh-sweep)
  -q, --quiet        no progress lines`;

export const kWorkerUsage = `usage: mmuh worker --queue redis://HOST:PORT/N [--queue-name NAME] [--name NAME] [--concurrency N]
                   [--lock-duration MS] [--stalled-interval MS] [--idle-exit S]

Takes sweep runs from the BullMQ queue once a coordinator (mmuh sweep … --queue) has admitted it
(same harness version and commit), runs each as a child mmuh run, returns the result JSON.

  --name NAME            how the coordinator names this worker (default HOST:PID)
  --concurrency N        runs at once (default 1; more share the cores: wall figures get noisier,
                         modeled ones do not change)
  --lock-duration MS     BullMQ job lock; a dead worker's run is retried after it (default 30000)
  --stalled-interval MS  how often stalled jobs are looked for (default 30000)
  --idle-exit S          exit after S seconds without a run (default 0: never)`;

export const kMergeUsage = `usage: mmuh merge DIR [-o sweep.json]

Merges a sweep directory (DIR/plan.json and DIR/runs/, as mmuh sweep --shard writes them) into one
sweep result (default DIR/sweep.json). A cell without a result is named; the exit code is then 1.`;

const kSweepFlags: FlagSpec[] = [
  { name: 'dry-run', type: 'bool', default: false, help: 'list the cells' },
  { name: 'jobs', type: 'int', default: null, min: 1, max: 1024, help: 'runs at once' },
  { name: 'resume', type: 'bool', default: false, help: 'keep complete results' },
  { name: 'out', type: 'string', default: null, help: 'sweep directory' },
  { name: 'output', short: 'o', type: 'string', default: null, help: 'merged result file' },
  { name: 'shard', type: 'string', default: null, help: 'i/n' },
  { name: 'queue', type: 'string', default: null, help: 'redis://HOST:PORT/N' },
  { name: 'queue-name', type: 'string', default: null, help: 'BullMQ queue name' },
  { name: 'quiet', short: 'q', type: 'bool', default: false, help: 'no progress' },
];

const kWorkerFlags: FlagSpec[] = [
  { name: 'queue', type: 'string', default: null, help: 'redis://HOST:PORT/N' },
  { name: 'queue-name', type: 'string', default: null, help: 'BullMQ queue name' },
  { name: 'name', type: 'string', default: null, help: 'worker name' },
  { name: 'concurrency', type: 'int', default: 1, min: 1, max: 256, help: 'runs at once' },
  { name: 'lock-duration', type: 'int', default: 30_000, min: 500, max: 3_600_000, help: 'ms' },
  { name: 'stalled-interval', type: 'int', default: 30_000, min: 200, max: 3_600_000, help: 'ms' },
  { name: 'idle-exit', type: 'float', default: 0, min: 0, max: 1e7, help: 's' },
];

const kMergeFlags: FlagSpec[] = [{ name: 'output', short: 'o', type: 'string', default: null, help: 'merged result file' }];

type Out = { write(s: string): void };

function summaryLine(s: SweepResult, file: string): string {
  const m = s.summary;
  const wall = s.executor.wallNs === null ? '' : ` in ${(s.executor.wallNs / 1e9).toFixed(1)} s`;
  return `sweep ${s.sweep.id}: ${m.cells} cells (${m.ok} ok, ${m.failed} failed, ${m.missing} missing), ${m.runs} runs${wall} -> ${file}`;
}

/** Write the merged result; 1 when a cell failed or is missing (named on stderr), else 0. */
function finishMerged(s: SweepResult, file: string, out: Out): number {
  writeJsonAtomic(file, s);
  out.write(summaryLine(s, file) + '\n');
  const bad = s.cells.filter((c) => c.status !== 'ok');
  for (const c of bad) process.stderr.write(`mmuh: cell ${c.id} ${c.status}: ${c.error ?? ''}\n`);
  return bad.length > 0 ? 1 : 0;
}

export async function sweepCommand(argv: string[], out: Out): Promise<number> {
  const { flags: f, args } = parseFlagsAndArgs(kSweepFlags, argv);
  if (args.length !== 1) throw new UsageError('mmuh sweep needs one sweep file (mmuh sweep --help)');
  if (f.shard !== null && f.queue !== null) throw new UsageError('EINVAL: --shard and --queue are two ways to spread a sweep: give one');
  if (f['queue-name'] !== null && f.queue === null) throw new UsageError('EINVAL: --queue-name has no effect without --queue');
  if (f.jobs !== null && f.queue !== null) throw new UsageError('EINVAL: --jobs has no effect with --queue (each worker has --concurrency)');
  const harness = harnessInfo();
  const plan = planSweep(loadSweepFile(args[0]!), harness);
  const shard = typeof f.shard === 'string' ? parseShard(f.shard) : null;
  const cells = shard ? shardCells(plan, shard.i, shard.n) : plan.cells;
  const dir = typeof f.out === 'string' ? f.out : join('sweeps', plan.sweep.id);
  if (f['dry-run'] === true) {
    const runs = cells.reduce((s, c) => s + c.runs.length, 0);
    out.write(`sweep ${plan.sweep.id}: scenario ${plan.sweep.scenario}, ${cells.length}${shard ? ` of ${plan.cells.length}` : ''} cells x ${plan.sweep.repeat} repeat(s) = ${runs} runs, seed ${plan.sweep.seed}\n`);
    for (const c of cells) out.write(`${c.id}  seed=${c.seed}  mmuh run ${plan.sweep.scenario} ${c.argv.join(' ')}\n`);
    return 0;
  }
  const output = typeof f.output === 'string' ? f.output : join(dir, 'sweep.json');
  // Everything that can be refused is, before the directory is written.
  const queue = typeof f.queue === 'string' ? await import('../sweep/queue.js') : null;
  const target = queue ? queue.parseQueueUrl(f.queue as string, typeof f['queue-name'] === 'string' ? f['queue-name'] : undefined) : null;
  if (shard && typeof f.output === 'string') throw new UsageError('EINVAL: -o with --shard: a shard writes its runs into --out DIR; merge them with mmuh merge DIR -o FILE');
  // An unreachable Redis is refused before anything is written (coordinate() connects again).
  if (queue && target) (await queue.probeRedis(target)).disconnect();
  // Another sweep's directory is not overwritten: its plan names the runs it merges.
  const prev = sweepIdIn(dir);
  if (prev !== null && prev !== plan.sweep.id) throw new UsageError(`EEXIST: --out ${dir} holds sweep ${prev}, not ${plan.sweep.id}: give another --out`);
  try {
    writePlan(dir, plan);
  } catch (e) {
    throw new UsageError(`EACCES: --out ${dir}: cannot write the sweep directory (${(e as Error).message})`);
  }
  if (!shard) checkJsonPath(output);
  const progress = sweepProgress(process.stderr, f.quiet === true);
  const t0 = process.hrtime.bigint();
  if (queue && target) {
    const r = await queue.coordinate(plan, target, { dir, progress });
    const s = mergeSweepDir(dir, { executor: { mode: 'queue', workers: r.workers, wallNs: Number(process.hrtime.bigint() - t0) } });
    return finishMerged(s, output, out);
  }
  const jobs = typeof f.jobs === 'number' ? f.jobs : defaultJobs(plan, cells, availableMemory().bytes).jobs;
  const worker = shard ? `shard ${shard.i}/${shard.n}` : 'local';
  const r = await runLocal(plan, { dir, jobs, resume: f.resume === true, cells, worker, progress });
  const wallNs = Number(process.hrtime.bigint() - t0);
  if (shard) {
    out.write(`sweep ${plan.sweep.id} shard ${shard.i}/${shard.n}: ${cells.length} cells, ${r.ran} runs (${r.failed} failed, ${r.kept} kept) in ${(wallNs / 1e9).toFixed(1)} s -> ${dir}/runs (mmuh merge ${dir})\n`);
    return r.failed > 0 ? 1 : 0;
  }
  return finishMerged(mergeSweepDir(dir, { executor: { mode: 'local', jobs, workers: ['local'], wallNs } }), output, out);
}

export async function workerCommand(argv: string[], out: Out): Promise<number> {
  const { flags: f, args } = parseFlagsAndArgs(kWorkerFlags, argv);
  if (args.length > 0) throw new UsageError(`unexpected argument '${args[0]}'`);
  if (typeof f.queue !== 'string') throw new UsageError('mmuh worker needs --queue redis://HOST:PORT/N');
  const { parseQueueUrl, runWorker } = await import('../sweep/queue.js');
  const target = parseQueueUrl(f.queue, typeof f['queue-name'] === 'string' ? f['queue-name'] : undefined);
  return runWorker(target, {
    name: typeof f.name === 'string' ? f.name : `${hostname()}:${process.pid}`, harness: harnessInfo(),
    concurrency: f.concurrency as number, lockDuration: f['lock-duration'] as number, stalledInterval: f['stalled-interval'] as number,
    idleExitS: f['idle-exit'] as number, log: (s) => out.write(s + '\n'),
  });
}

export function mergeCommand(argv: string[], out: Out): number {
  const { flags: f, args } = parseFlagsAndArgs(kMergeFlags, argv);
  if (args.length !== 1) throw new UsageError('mmuh merge needs one sweep directory (mmuh merge --help)');
  const dir = args[0]!;
  const plan = readPlan(dir);
  const here = harnessInfo();
  if (!sameHarness(plan.harness, here)) process.stderr.write(`mmuh: note: the sweep was planned by ${harnessName(plan.harness)}; merging with ${harnessName(here)}\n`);
  const output = typeof f.output === 'string' ? f.output : join(dir, 'sweep.json');
  checkJsonPath(output);
  return finishMerged(mergeSweepDir(dir), output, out);
}
