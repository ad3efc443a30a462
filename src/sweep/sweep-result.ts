/**
 * A sweep and its merged result, schema `kvm-mmu-harness/sweep@1`: the plan (scenario, base flags,
 * axes, repeat, seed), one record per cell (the cross product of the axes) with its repeats kept
 * as `mmuh run --repeat` keeps them, and each cell's runs merged losslessly (HDR histograms added,
 * counters summed, KVM stats summed or maxed by their KVM_STATS_TYPE). Local, queued and sharded
 * sweeps of the same file produce the same cells: only wall-clock fields and who ran what differ.
 */
import type { HistogramSummary } from '../metrics/histogram.js';
import type { HarnessInfo, RunResult } from '../scenario/result.js';

export const kSweepSchema = 'kvm-mmu-harness/sweep@1';
export const kSweepPlanSchema = 'kvm-mmu-harness/sweep-plan@1';

/** A flag value as the sweep file gives it (sizes stay strings: '64M'). */
export type AxisValue = string | number | boolean;

export interface SweepAxis {
  /** The scenario flag's long name ('dirty', 'bytes', 'vcpus'). */
  flag: string;
  values: AxisValue[];
}

/** The sweep file, normalised: flags by long name, the derived id. */
export interface SweepSpec {
  /** The sweep's name (the file's `name`, else its base name). */
  name: string;
  /** name + a hash of everything that fixes the cells: two different sweeps never share an id. */
  id: string;
  scenario: string;
  /** The sweep's seed; each cell's seed is derived from it and the cell id. */
  seed: number;
  /** Runs per cell (each a whole `mmuh run` with the cell's seed). */
  repeat: number;
  /** Tries per run before it is reported as failed (a crashed or killed run is retried once). */
  attempts: number;
  base: Record<string, AxisValue>;
  axes: SweepAxis[];
}

/** One run of one cell: `cellId#k`, k = 1..repeat. */
export interface PlannedRun {
  runId: string;
  cellId: string;
  k: number;
  /** `mmuh run <scenario> <argv…>` without --json/-q (the executor adds them). */
  argv: string[];
}

export interface PlannedCell {
  id: string;
  /** The axis values that make this cell, by flag, in axis order. */
  values: Record<string, AxisValue>;
  seed: number;
  argv: string[];
  runs: PlannedRun[];
}

/** What a shard or a coordinator writes next to the results (DIR/plan.json): what to merge. */
export interface SweepPlan {
  schema: typeof kSweepPlanSchema;
  sweep: SweepSpec;
  cells: PlannedCell[];
  /** The harness that planned it: every result must come from the same version and commit. */
  harness: HarnessInfo;
}

export type SweepRunStatus = 'ok' | 'failed' | 'skipped' | 'missing';

export interface SweepRunRecord {
  runId: string;
  k: number;
  status: SweepRunStatus;
  /** The run's error (failed), or why it is missing. */
  error?: string;
  /** Tries it took (queue and local executors). */
  attempts?: number;
  /** Who ran it: a queue worker's name, 'local', or 'shard i/n'. */
  worker?: string;
}

/** A cell's runs merged: one distribution and one set of totals over its repeats. */
export interface MergedRuns {
  runs: number;
  /** HDR histograms added (lossless): counts are the sum of the runs' counts. */
  histograms: Record<string, HistogramSummary>;
  /** Harness counters summed over the runs. */
  counters: Record<string, number>;
  /**
   * The stats snapshots' totals (per snapshot key) over the runs: cumulative and instant stats
   * summed, as KVM's debugfs aggregate sums them; peak stats (max_mmu_rmap_size, …) the maximum,
   * since a sum of maxima is no figure; log histograms added bucket by bucket.
   */
  stats: Record<string, Record<string, number | number[]>>;
  /** Per phase: the modeled time of every run (identical on one worker) and the wall median. */
  phases: { name: string; modeledNs: number[]; wallMedianNs: number }[];
}

export type SweepCellStatus = 'ok' | 'failed' | 'missing';

export interface SweepCell {
  id: string;
  values: Record<string, AxisValue>;
  seed: number;
  argv: string[];
  /** ok: every run completed (ok or skipped); failed: a run failed twice; missing: a run has no result. */
  status: SweepCellStatus;
  runs: SweepRunRecord[];
  /** The completed runs as one result (`--repeat`'s shape: run 1 on top, every run in repeats); null without any. */
  result: RunResult | null;
  merged: MergedRuns | null;
  error?: string;
}

export interface SweepResult {
  schema: typeof kSweepSchema;
  sweep: SweepSpec;
  cells: SweepCell[];
  summary: { cells: number; ok: number; failed: number; missing: number; runs: number };
  /** How it ran: the executor, its parallelism, the workers seen, the sweep's wall time. */
  executor: { mode: 'local' | 'queue' | 'merge'; jobs?: number; workers: string[]; wallNs: number | null };
  /** The harness that merged it (the plan's harness must match every run's). */
  harness: HarnessInfo;
  notes: string[];
}
