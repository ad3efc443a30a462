/**
 * The sweep's cells: the cross product of its axes in file order (the last axis varies fastest),
 * each with a stable id made of its axis values (`dirty=pml,split=eager`), a seed derived from the
 * sweep's seed and that id (so adding an axis value never changes another cell's seed), and one
 * planned run per repeat (`<cell>#<k>`, all with the cell's seed: repeats measure the machine).
 * Every cell's flags are parsed and checked as `mmuh run` checks them before anything runs.
 */
import { createHash } from 'node:crypto';
import { UsageError, parseFlags } from '../scenario/flags.js';
import { findScenario } from '../scenario/index.js';
import type { HarnessInfo } from '../scenario/result.js';
import { flagArgv, type LoadedSweep } from './sweep-file.js';
import { kSweepPlanSchema, type AxisValue, type PlannedCell, type SweepPlan, type SweepSpec } from './sweep-result.js';

function sha256(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

/** A cell's seed: 31 bits of sha256("<sweep seed>/<cell id>"), as --seed takes it. */
export function cellSeed(sweepSeed: number, cellId: string): number {
  return sha256(`${sweepSeed}/${cellId}`).readUInt32BE(0) & 0x7fffffff;
}

/** An id safe as a file name and a BullMQ job id (no ':' or '/'); unsafe characters keep it unique with a hash. */
export function cellIdOf(values: Record<string, AxisValue>): string {
  const key = Object.entries(values).map(([k, v]) => `${k}=${String(v)}`).join(',');
  const safe = key.replace(/[^A-Za-z0-9._+=,-]/g, '_');
  return safe === key ? key : `${safe}~${sha256(key).toString('hex').slice(0, 8)}`;
}

/** name-<8 hex of everything that fixes the cells>: a changed file is a different sweep. */
function sweepId(spec: Omit<SweepSpec, 'id'>): string {
  const { scenario, seed, repeat, base, axes } = spec;
  return `${spec.name}-${sha256(JSON.stringify({ scenario, seed, repeat, base, axes })).toString('hex').slice(0, 8)}`;
}

function product(axes: SweepSpec['axes']): Record<string, AxisValue>[] {
  let out: Record<string, AxisValue>[] = [{}];
  for (const a of axes) out = out.flatMap((c) => a.values.map((v) => ({ ...c, [a.flag]: v })));
  return out;
}

export function planSweep(l: LoadedSweep, harness: HarnessInfo): SweepPlan {
  const spec: SweepSpec = { ...l.spec, id: sweepId(l.spec) };
  const scenario = findScenario(spec.scenario)!;
  const byName = new Map(l.flags.map((f) => [f.name, f]));
  const hasSeed = byName.has('seed');
  const baseArgv = Object.entries(spec.base).flatMap(([k, v]) => flagArgv(byName.get(k)!, v));
  const cells: PlannedCell[] = product(spec.axes).map((values) => {
    const id = cellIdOf(values);
    const seed = cellSeed(spec.seed, id);
    const argv = [...baseArgv, ...Object.entries(values).flatMap(([k, v]) => flagArgv(byName.get(k)!, v)), ...(hasSeed ? ['--seed', String(seed)] : [])];
    // The combination must hold as a whole (conflicting flags, a run that will not fit): refuse the
    // sweep now, not one cell an hour in.
    try {
      scenario.check?.(parseFlags(scenario.flags, argv));
    } catch (e) {
      if (e instanceof UsageError) throw new UsageError(`EINVAL: ${l.file}: cell ${id}: ${e.message}`);
      throw e;
    }
    const runs = Array.from({ length: spec.repeat }, (_, i) => ({ runId: `${id}#${i + 1}`, cellId: id, k: i + 1, argv }));
    return { id, values, seed, argv, runs };
  });
  return { schema: kSweepPlanSchema, sweep: spec, cells, harness };
}

/** The cells of shard i of n: every n-th cell, starting at i (a cell's repeats stay together). */
export function shardCells(plan: SweepPlan, i: number, n: number): PlannedCell[] {
  return plan.cells.filter((_, k) => k % n === i);
}

/** `--shard i/n` (JOB_COMPLETION_INDEX, SLURM_ARRAY_TASK_ID), checked. */
export function parseShard(s: string): { i: number; n: number } {
  const m = /^(\d+)\/(\d+)$/.exec(s);
  if (!m) throw new UsageError(`EINVAL: --shard ${s}: give i/n (0 <= i < n), e.g. --shard 0/4`);
  const i = Number(m[1]);
  const n = Number(m[2]);
  if (n < 1 || i >= n) throw new UsageError(`EINVAL: --shard ${s}: need 0 <= i < n`);
  return { i, n };
}
