/**
 * The result object, schema `kvm-mmu-harness/result@1`: JSON first; the terminal table, Markdown
 * and HTML are views of it. Later schema versions only add fields.
 */
import type { HistogramSummary } from '../metrics/histogram.js';
import type { AuditViolation } from '../kvm/audit.js';
import type { HarnessVcpuStats, VcpuStats, VmStats } from '../kvm/stats.js';
import type { HostInfo } from './host-info.js';

export const kResultSchema = 'kvm-mmu-harness/result@1';

export interface PhaseSummary {
  name: string;
  wallNs: number;
  modeledNs: number;
}

export interface StatsSnapshot {
  total: VmStats & Partial<VcpuStats>;
  /** Per VM: KVM's VM stats, KVM's vCPU stats per vCPU (by vcpu_idx), and the harness's own per-vCPU counters. */
  vms: { vm: VmStats & { id: number }; vcpus: VcpuStats[]; harness: HarnessVcpuStats[] }[];
}

export interface MemoryReport {
  /** SharedArrayBuffer bytes the harness allocated for host and VM state. */
  sabBytes: number;
  /** Guest 4K pages mapped at the end of the run (pages_4k + 512 pages_2m + 262144 pages_1g). */
  guestPagesMapped: number;
  /** sabBytes per mapped 4K guest page. */
  bytesPerGuestPage: number;
  /** Resident set size at the end, and per mapped page. */
  rssBytes: number;
  rssPerGuestPage: number;
  breakdown: Record<string, number>;
  /** Live rmap memory (heads + pte_list_desc) and its share of guest memory, in percent. */
  rmapBytes: number;
  rmapPctOfGuest: number;
  /**
   * Lazy rmaps: each VM whose first shadow root allocated the memslots' rmaps during the run —
   * KiB allocated and how long the allocation held slots_arch_lock (modeled and wall µs).
   */
  lazyRmapAlloc: { vm: number; kib: number; modeledUs: number; wallUs: number }[];
}

/**
 * `ok`: the run completed and every check held. `failed`: a KVM error ended it (EFAULT out of a
 * vCPU, ...), the audit found a violation or a check failed; `error` says which, and only the
 * fields the run got to are present. `skipped`: the upstream test would skip (KSFT_SKIP).
 */
export type RunStatus = 'ok' | 'failed' | 'skipped';

export interface RunError {
  /** The KVM errno ('EFAULT', 'ENOMEM', ...), or null for audit and check failures. */
  errno: string | null;
  message: string;
}

export interface RunResult {
  schema: typeof kResultSchema;
  status: RunStatus;
  error?: RunError;
  scenario: string;
  config: Record<string, unknown>;
  seed: number;
  host: HostInfo;
  phases: PhaseSummary[];
  histograms: Record<string, HistogramSummary>;
  stats: Record<string, StatsSnapshot>;
  counters: Record<string, number>;
  audit: { ok: boolean; violations: AuditViolation[] };
  memory: MemoryReport;
  /** Scenario-specific figures (rates, checks). */
  metrics: Record<string, number | string | boolean>;
  /** The selftest-style lines the run printed, in order. */
  output: string[];
  /** dirty-log-perf: remote TLB flushes during each phase. */
  tlbFlushes?: Record<string, number>;
  /** dirty-log-perf: per-iteration dirty/get/clear times in both clocks. */
  iterations?: Record<string, number>[];
  /** dirty-log-page-splitting: each pass (without / with manual caps) as its own result. */
  passes?: Record<string, PassResult>;
  /** The harness that produced the result (package version, git commit when known). */
  harness?: HarnessInfo;
  /** What the modeled clock assumes and which cost model priced it. */
  model?: ModelInfo;
  /** `--repeat N` (N > 1): every run, and their aggregate. The top-level fields are run 1's. */
  repeats?: Repeats;
  /** A sweep's run (mmuh sweep / worker): which sweep and run, who ran it, in how many tries. */
  sweepRun?: SweepRunInfo;
  /**
   * --profile cpu: per thread ('main', 'worker <threadId>'), its .cpuprofile and the functions
   * with the most self time (selfMs; pct of the profile's duration; line 1-based).
   */
  profiles?: { thread: string; file: string; top: { fn: string; url: string; line: number; selfMs: number; pct: number }[] }[];
}

export interface SweepRunInfo {
  sweepId: string;
  runId: string;
  worker: string;
  attempts: number;
}

export interface HarnessInfo {
  name: string;
  version: string;
  /** `git rev-parse HEAD` of the package's checkout, or $MMUH_GIT_COMMIT; null when unknown. */
  commit: string | null;
  /** Uncommitted changes to the harness's tracked code (src, workers, bin, package files) at run time; null when unknown. */
  dirty: boolean | null;
}

export interface ModelInfo {
  costModel: { name: string; version: string; description: string };
  /** The modeled clock's assumption in one sentence; every view prints it beside modeled figures. */
  assumption: string;
}

/** Statistics of one figure over repeated runs. */
export interface SampleStats {
  n: number;
  median: number;
  min: number;
  max: number;
  mean: number;
  /** Sample standard deviation (n - 1); 0 for one run. */
  stddev: number;
  /** 95 % confidence interval of the mean (Student's t, n - 1 degrees of freedom); null for one run. */
  ci95: [number, number] | null;
  /** Every run gave the same value (modeled figures on one worker). */
  deterministic: boolean;
}

export const kHistogramPercentiles = ['p50', 'p90', 'p99', 'p999', 'max'] as const;
export type HistogramPercentile = (typeof kHistogramPercentiles)[number];

export interface RepeatAggregate {
  /** How ci95 is computed. */
  ci: string;
  phases: { name: string; wall: SampleStats; modeled: SampleStats }[];
  /** Per histogram key, per percentile, over the runs that recorded the histogram. */
  histograms: Record<string, Record<HistogramPercentile, SampleStats>>;
  /** Runs whose host info flagged a noisy machine. */
  noisyRuns: number;
  notes: string[];
}

export interface Repeats {
  n: number;
  /** Every run used the result's seed: the guest's access stream is the same, so the spread is the machine's. */
  seedPolicy: 'same';
  runs: RunResult[];
  aggregate: RepeatAggregate;
}

/** One pass of a multi-pass scenario: its own phases, histograms, counters, memory, audit. */
export type PassResult = Pick<RunResult, 'phases' | 'histograms' | 'stats' | 'counters' | 'audit' | 'memory'>;

/** What a run that did not complete writes: the status, the error, and what is known. */
export type FailedRunResult = Pick<RunResult, 'schema' | 'status' | 'error' | 'scenario' | 'config' | 'seed' | 'output'> & Partial<RunResult>;
