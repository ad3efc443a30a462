/**
 * Scenario `dirty-log-page-splitting`, after x86/dirty_log_page_splitting_test.c: with 2 vCPUs
 * and 2 memslots on huge backing, run its stages without and then with manual protect +
 * INITIALLY_SET, read pages_4k/2m/1g after each stage, and check its invariants:
 *   after populate             every page is huge-mapped
 *   after enabling (no caps)   no huge pages, pages_4k ≥ guest pages (eager split at enable)
 *   after enabling (caps)      page counts unchanged (nothing happens at enable)
 *   after the first clear      no huge pages, pages_4k ≥ guest pages
 *   after disable + re-touch   pages_2m and pages_1g as after populate
 * Each check prints PASS or FAIL; any FAIL makes the run exit non-zero. Each pass is reported
 * whole (result.passes: phases, histograms, counters, stats, memory, audit); the top level holds
 * both passes' phases and histograms (prefixed by pass), summed counters and the larger memory.
 * Where the upstream test skips (TEST_REQUIRE(get_kvm_param_bool("eager_page_split")), i.e.
 * --split on-fault; the TDP MMU is always on here) the run exits with KSFT_SKIP (4).
 */
import { Runner } from './runner.js';
import { createMemstressVms, memstressStream } from './memstress-vm.js';
import { checkMemstressFlags, memstressConfig, memstressFlags } from './common-flags.js';
import { assembleResult, statsSnapshot } from './assemble.js';
import { hostInfo, snapshot } from './host-info.js';
import { dirtyStrategyFlags, strategyFromFlags } from './dirty-log-perf.js';
import { kVmmWarmupRounds, vmmWarmupFlag, vmmWarmupNote, warmVmmPaths, type VmmWarmupOutcome } from './vmm-warmup.js';
import { KVM_MEM_LOG_DIRTY_PAGES } from '../kvm/memslot.js';
import { KVM_DIRTY_LOG_INITIALLY_SET, KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE } from '../kvm/dirty/strategy.js';
import { SkipError, type ScenarioDef, type ScenarioIo } from './scenario.js';
import type { PassResult, RunResult, StatsSnapshot } from './result.js';
import type { Vm } from '../kvm/vm.js';
import { kVmStatNames, type VmStats } from '../kvm/stats.js';

export const dirtyLogPageSplitting: ScenarioDef = {
  name: 'dirty-log-page-splitting',
  summary: 'checks huge page splitting and recovery around dirty logging (page stats per stage)',
  after: 'tools/testing/selftests/kvm/x86/dirty_log_page_splitting_test.c',
  flags: [
    ...memstressFlags({ bytes: 2 ** 30, vcpus: 2 }).map((s) => (s.name === 'backing' ? { ...s, default: 'anonymous_hugetlb_2mb' } : s)),
    ...dirtyStrategyFlags.filter((s) => s.name !== 'dirty' && s.name !== 'ring-entries' && s.name !== 'enable'),
    { name: 'dirty', type: 'enum', choices: ['pml', 'wrprot'], default: 'pml', help: 'dirty tracking: PML (D bits) or write-protection' },
    vmmWarmupFlag,
  ],
  check: checkMemstressFlags,
  async run(f, io) {
    return runPageSplitting(f, io);
  },
};

export async function runPageSplitting(f: Record<string, unknown>, io: ScenarioIo): Promise<RunResult> {
  if (f.split === 'on-fault') {
    throw new SkipError('- Requirement not met: get_kvm_param_bool("eager_page_split") (--split on-fault models kvm.eager_page_split=N)');
  }
  if (!(f.backing as string).includes('hugetlb')) {
    io.print('This test will only work reliably with HugeTLB memory. It can work with THP, but that is best effort.');
  }
  const checks: { mode: string; stage: string; ok: boolean; detail: string }[] = [];
  const stats: Record<string, StatsSnapshot> = {};
  const passes: Record<string, RunResult> = {};
  const warm: VmmWarmupOutcome[] = [];
  const start = snapshot();
  for (const caps of [0, KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE | KVM_DIRTY_LOG_INITIALLY_SET]) {
    const mode = caps ? 'manual-protect' : 'no-manual-caps';
    io.print(`Testing ${caps ? 'with' : 'without'} MANUAL_PROTECT`);
    const c = memstressConfig(f, { slots: 2 });
    const vmOpts = {
      strategy: strategyFromFlags(f),
      beforeVcpus(vm: Vm) {
        if (caps) vm.enableCap('KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2', caps);
      },
    };
    const setup = createMemstressVms(c, vmOpts);
    // Each pass has its own caps, so each warms its own paths (see vmm-warmup.ts).
    if (f['vmm-warmup'] === true) warm.push(warmVmmPaths(c, vmOpts, { collect: caps ? 'get-clear' : 'get', ...kVmmWarmupRounds }));
    const { host, vms, layout } = setup;
    const hostPages = layout.guestPages * c.vms;
    const runner = new Runner(host, vms, { workers: c.workers, cost: setup.cost, sliceAccesses: f.slice as number, wallEvery: f['wall-sample'] as number, observer: io.observer });
    const total = (): VmStats => {
      const t = Object.fromEntries(kVmStatNames.map((n) => [n, 0])) as VmStats;
      for (const vm of vms) {
        const s = vm.getStats();
        for (const k of Object.keys(t) as (keyof VmStats)[]) t[k] += s[k];
      }
      return t;
    };
    const stage = (name: string): VmStats => {
      const s = total();
      stats[`${mode}.${name}`] = statsSnapshot(vms);
      io.print(`Page stats after ${name}: 4K: ${s.pages_4k} 2M: ${s.pages_2m} 1G: ${s.pages_1g} huge: ${s.pages_2m + s.pages_1g}`);
      return s;
    };
    const check = (name: string, ok: boolean, detail: string) => {
      checks.push({ mode, stage: name, ok, detail });
      io.print(`  ${ok ? 'PASS' : 'FAIL'}: ${name}: ${detail}`);
    };
    const setLogging = (on: boolean) => {
      for (const vm of vms) for (const s of vm.memslots) {
        vm.setUserMemoryRegion2({ slot: s.slotId, flags: on ? KVM_MEM_LOG_DIRTY_PAGES : 0, guestPhysAddr: s.baseGfn * 4096, memorySize: s.npages * 4096, userspaceAddr: s.userspaceAddr });
      }
    };
    const touch = (name: string, iteration: number) =>
      runner.phase(`${mode}.${name}`, (ref) => memstressStream(c, layout, ref, vms[ref.vm]!.id, 'sequential', 100, iteration));
    try {
      await touch('populate', 0);
      const populated = stage('populating memory');
      check('populate', populated.pages_2m * 512 + populated.pages_1g * 512 * 512 === hostPages,
        `pages_2m*512 + pages_1g*512*512 = ${populated.pages_2m * 512 + populated.pages_1g * 512 * 512}, guest pages ${hostPages}`);
      setLogging(true);
      const enabled = stage('enabling dirty logging');
      if (!caps) {
        check('enable splits', enabled.pages_2m + enabled.pages_1g === 0 && enabled.pages_4k >= hostPages, `huge ${enabled.pages_2m + enabled.pages_1g} (want 0), 4K ${enabled.pages_4k} (want ≥ ${hostPages})`);
      } else {
        check('enable leaves huge pages', enabled.pages_2m === populated.pages_2m && enabled.pages_1g === populated.pages_1g, `2M ${enabled.pages_2m}/${populated.pages_2m}, 1G ${enabled.pages_1g}/${populated.pages_1g}`);
      }
      await touch('dirty', 1);
      stage('dirtying memory');
      for (const vm of vms) for (const s of vm.memslots) {
        const bm = vm.getDirtyLog(s.slotId);
        if (caps) vm.clearDirtyLog({ slot: s.slotId, firstPage: 0, numPages: s.npages, bitmap: bm });
      }
      const cleared = stage('clearing dirty log');
      check('first clear splits', cleared.pages_2m + cleared.pages_1g === 0 && cleared.pages_4k >= hostPages, `huge ${cleared.pages_2m + cleared.pages_1g} (want 0), 4K ${cleared.pages_4k} (want ≥ ${hostPages})`);
      setLogging(false);
      stage('disabling dirty logging');
      await touch('repopulate', 2);
      const again = stage('repopulating memory');
      check('recovered', again.pages_2m === populated.pages_2m && again.pages_1g === populated.pages_1g, `2M ${again.pages_2m}/${populated.pages_2m}, 1G ${again.pages_1g}/${populated.pages_1g}`);
      const last = assembleResult({
        scenario: 'dirty-log-page-splitting', config: { ...f, strategy: strategyFromFlags(f), vmmWarmup: f['vmm-warmup'] === true }, seed: c.seed, host, vms, runner,
        info: hostInfo(start, Math.min(c.workers, c.vms * c.vcpus)), stats, metrics: {}, output: [],
      });
      passes[mode] = last;
      if (!last.audit.ok) check('audit', false, `${last.audit.violations.length} violation(s)`);
    } finally {
      await runner.close();
    }
  }
  const failed = checks.filter((x) => !x.ok).length;
  io.print(failed === 0 ? `All ${checks.length} checks passed` : `${failed} of ${checks.length} checks FAILED`);
  const r = mergePasses(passes);
  r.stats = stats;
  if (warm.length > 0) {
    const w = warm[warm.length - 1]!;
    r.host = { ...r.host, notes: [...r.host.notes, vmmWarmupNote({ ...w, rounds: warm.reduce((n, x) => n + x.rounds, 0), wallNs: warm.reduce((n, x) => n + x.wallNs, 0) })] };
  }
  r.metrics = { checks: checks.length, checksFailed: failed, ...Object.fromEntries(checks.map((x) => [`${x.mode}.${x.stage}`, x.ok])) };
  return r;
}

/** One result from both passes; each pass also kept whole under `passes`. */
function mergePasses(passes: Record<string, RunResult>): RunResult {
  const all = Object.values(passes);
  const r = { ...all[all.length - 1]! };
  r.phases = all.flatMap((p) => p.phases);
  r.histograms = Object.assign({}, ...all.map((p) => p.histograms)) as RunResult['histograms'];
  const counters: Record<string, number> = {};
  for (const p of all) for (const [k, v] of Object.entries(p.counters)) counters[k] = (counters[k] ?? 0) + v;
  r.counters = counters;
  r.audit = { ok: all.every((p) => p.audit.ok), violations: all.flatMap((p) => p.audit.violations) };
  r.memory = all.reduce((m, p) => (p.memory.sabBytes > m.sabBytes ? p.memory : m), all[0]!.memory);
  r.passes = Object.fromEntries(Object.entries(passes).map(([mode, p]): [string, PassResult] => [mode, {
    phases: p.phases, histograms: p.histograms, counters: p.counters, audit: p.audit, memory: p.memory,
    stats: Object.fromEntries(Object.entries(p.stats).filter(([k]) => k.startsWith(`${mode}.`))),
  }]));
  return r;
}
