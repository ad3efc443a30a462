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
}

export interface RunResult {
  schema: typeof kResultSchema;
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
}
