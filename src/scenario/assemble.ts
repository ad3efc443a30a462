/**
 * Result assembly: stats snapshots with KVM's names, the memory report, the audit, and the
 * RunResult every view renders.
 */
import type { Host } from '../host/host.js';
import type { Vm } from '../kvm/vm.js';
import { audit } from '../kvm/audit.js';
import { ShadowCtl } from '../kvm/mmu/shadow/mmu-page.js';
import { kVcpuStatNames, kVmStatNames, type VcpuStats, type VmStats } from '../kvm/stats.js';
import { addCounters, countersToRecord } from '../metrics/counters.js';
import { kOpCount } from '../metrics/ops.js';
import type { Runner } from './runner.js';
import type { HostInfo } from './host-info.js';
import { kResultSchema, type MemoryReport, type RunResult, type StatsSnapshot } from './result.js';

export function statsSnapshot(vms: Vm[]): StatsSnapshot {
  const total = {} as VmStats & Partial<VcpuStats>;
  for (const n of kVmStatNames) total[n] = 0;
  for (const n of kVcpuStatNames) total[n] = 0;
  const out: StatsSnapshot['vms'] = [];
  for (const vm of vms) {
    const s = vm.getStats();
    for (const n of kVmStatNames) total[n] += s[n];
    const vcpus = vm.vcpuStats();
    for (const v of vcpus) for (const n of kVcpuStatNames) total[n] = (total[n] ?? 0) + v[n];
    // Ring-full and PML-full exits are the harness's counters, not KVM stats.
    const harness = vm.vcpuWords.map((_, i) => vm.vcpu(i).harnessStats());
    out.push({ vm: { id: vm.id, ...s }, vcpus, harness });
  }
  return { total, vms: out };
}

export function memoryReport(host: Host, vms: Vm[]): MemoryReport {
  const a = host.accounting();
  let pool = 0;
  let vma = 0;
  let lpage = 0;
  let vcpu = 0;
  let bitmap = 0;
  let mapped = 0;
  let rmaps = 0;
  let writeTrack = 0;
  let shadow = 0;
  let guestBytes = 0;
  for (const vm of vms) {
    pool += vm.pool.bytes();
    const rb = vm.rmaps.bytes();
    rmaps += rb.heads + rb.descs;
    writeTrack += rb.track;
    shadow += vm.sp.handle.info.byteLength + vm.sp.handle.xlat.byteLength + vm.sp.ctl.byteLength;
    for (const s of vm.slots.values()) guestBytes += s.npages * 4096;
    for (const v of vm.vmas) vma += v.bytes();
    for (const s of vm.slots.values()) {
      for (const l of s.lpage) lpage += l.byteLength;
      if (s.dirtyBitmap) bitmap += s.dirtyBitmap.byteLength;
    }
    vcpu += vm.vcpuWords.reduce((n, w) => n + w.byteLength, 0) + vm.w.byteLength + vm.epoch.words.byteLength;
    const st = vm.getStats();
    mapped += st.pages_4k + 512 * st.pages_2m + 262144 * st.pages_1g;
  }
  const content = host.content === null ? 0 : host.content.bytes();
  const breakdown = {
    frameTable: a.frameTableBytes, buddy: a.buddyBytes, ptPool: pool, hostPageTables: vma, lpageInfo: lpage, dirtyBitmaps: bitmap, vmAndVcpu: vcpu,
    rmaps, gfnWriteTrack: writeTrack, shadowPages: shadow, guestPageTables: content,
  };
  const sabBytes = Object.values(breakdown).reduce((s, x) => s + x, 0);
  const rss = process.memoryUsage().rss;
  return {
    sabBytes, guestPagesMapped: mapped, bytesPerGuestPage: mapped ? Math.round((sabBytes / mapped) * 100) / 100 : 0,
    rssBytes: rss, rssPerGuestPage: mapped ? Math.round((rss / mapped) * 100) / 100 : 0, breakdown,
    // KVM's own rmap memory (kvm_rmap_head 8 B per gfn and level, pte_list_desc 128 B): what lazy
    // rmaps save until the first shadow root, as a share of the VMs' guest memory (~0.2 %).
    rmapBytes: rmaps, rmapPctOfGuest: guestBytes > 0 ? Math.round((rmaps / guestBytes) * 1e6) / 1e4 : 0,
    lazyRmapAlloc: vms.map((vm) => ({
      vm: vm.id, kib: vm.sp.stat(ShadowCtl.kRmapAllocKiB), modeledUs: vm.sp.stat(ShadowCtl.kRmapAllocModeledUs), wallUs: vm.sp.stat(ShadowCtl.kRmapAllocWallUs),
    })).filter((x) => x.kib > 0),
  };
}

export interface AssembleInput {
  scenario: string;
  config: Record<string, unknown>;
  seed: number;
  host: Host;
  vms: Vm[];
  runner: Runner;
  info: HostInfo;
  stats: Record<string, StatsSnapshot>;
  metrics: Record<string, number | string | boolean>;
  output: string[];
}

export function assembleResult(i: AssembleInput): RunResult {
  // Every vCPU phase and every VMM-side phase (runner.vmmPhase) is in the runner's counters.
  const counters = new Float64Array(kOpCount);
  addCounters(counters, i.runner.counters);
  const memory = memoryReport(i.host, i.vms);
  const a = audit(i.host, i.vms);
  return {
    schema: kResultSchema, status: 'ok', scenario: i.scenario, config: i.config, seed: i.seed, host: i.info,
    phases: i.runner.phases.map((p) => ({ name: p.name, wallNs: Math.round(p.wallNs), modeledNs: Math.round(p.modeledNs) })),
    histograms: i.runner.histograms.summaries(), stats: i.stats, counters: countersToRecord(counters),
    audit: { ok: a.ok, violations: a.violations }, memory, metrics: i.metrics, output: i.output,
  };
}
