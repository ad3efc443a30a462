/**
 * Scenario `dirty-log-perf`, after KVM's dirty_log_perf_test.c: populate guest memory, enable
 * dirty logging, then for each iteration let every vCPU dirty its memory, fetch the dirty log
 * (KVM_GET_DIRTY_LOG) and, with manual protect, clear it (KVM_CLEAR_DIRTY_LOG); finally disable
 * logging. Prints the selftest's lines, then both clocks per phase, page counts and TLB flushes
 * after every phase, and latency histograms (vCPU faults per iteration, GET/CLEAR per call,
 * ring harvest/reset per call).
 *
 * --dirty ring uses the dirty ring instead of the bitmap (write-protection tracking, as QEMU's
 * ring mode without manual protect): a reaper on the VMM thread harvests and resets while vCPUs
 * run, and the per-iteration lines report the final harvest and reset.
 */
import { Runner, type PhaseOutcome } from './runner.js';
import { createMemstressVms, fmtTimespec, memstressStream } from './memstress-vm.js';
import { checkMemstressFlags, memstressConfig, memstressFlags } from './common-flags.js';
import { assembleResult, statsSnapshot } from './assemble.js';
import { hostInfo, snapshot } from './host-info.js';
import { UsageError, givenFlags, type FlagSpec } from './flags.js';
import { VmmTimer } from './vmm-timer.js';
import { kVmmWarmupRounds, vmmWarmupFlag, vmmWarmupNote, warmVmmPaths, type VmmWarmupOutcome } from './vmm-warmup.js';
import { kGuestPhysBits, KVM_MEM_LOG_DIRTY_PAGES } from '../kvm/memslot.js';
import {
  KVM_DIRTY_LOG_INITIALLY_SET, KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE, kFolioDirtyChoices, kHugeChoices, kRecoverChoices,
  kSplitChoices, type DirtyStrategy,
} from '../kvm/dirty/strategy.js';
import type { Vm } from '../kvm/vm.js';
import type { ScenarioDef, ScenarioIo } from './scenario.js';
import type { RunResult, StatsSnapshot } from './result.js';

export const kDirtyModes = ['pml', 'wrprot', 'ring'] as const;

export const dirtyStrategyFlags: FlagSpec[] = [
  { name: 'dirty', type: 'enum', choices: kDirtyModes, default: 'pml', help: 'dirty tracking: PML (D bits), write-protection, or the dirty ring' },
  { name: 'enable', type: 'enum', choices: ['initially-set', 'wrprot-all'], default: 'initially-set', help: 'with manual protect: KVM_DIRTY_LOG_INITIALLY_SET, or arm everything at enable' },
  { name: 'huge', type: 'enum', choices: kHugeChoices, default: 'lazy', help: 'huge pages under INITIALLY_SET: write-protect in CLEAR (lazy) or at enable' },
  { name: 'split', type: 'enum', choices: kSplitChoices, default: 'eager', help: 'huge page splitting: eager (kvm.eager_page_split=Y), eager-enable, eager-clear, on-fault' },
  { name: 'recover', type: 'enum', choices: kRecoverChoices, default: 'in-place', help: 'huge page recovery when logging is disabled' },
  { name: 'folio-dirty', type: 'enum', choices: kFolioDirtyChoices, default: 'on-create', help: 'when folios are marked dirty' },
  { name: 'ring-entries', type: 'int', default: 65536, min: 1024, max: 65536, help: 'dirty ring entries per vCPU (power of two) with --dirty ring' },
];

export function strategyFromFlags(f: Record<string, unknown>): DirtyStrategy {
  return {
    tracking: f.dirty === 'pml' ? 'pml' : 'wrprot', huge: f.huge as DirtyStrategy['huge'], split: f.split as DirtyStrategy['split'],
    recover: f.recover as DirtyStrategy['recover'], folioDirty: f['folio-dirty'] as DirtyStrategy['folioDirty'],
  };
}

export const dirtyLogPerf: ScenarioDef = {
  name: 'dirty-log-perf',
  summary: 'populate, enable dirty logging, dirty/get/clear per iteration, disable; reports each step',
  after: 'tools/testing/selftests/kvm/dirty_log_perf_test.c',
  flags: [
    ...memstressFlags({ bytes: 2 ** 30, vcpus: 1 }),
    { name: 'iterations', short: 'i', type: 'int', default: 2, min: 2, max: 1 << 20, help: 'iterations (at least 2)' },
    { name: 'no-manual-caps', short: 'g', type: 'bool', default: false, help: 'do not enable KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 (GET clears the log)' },
    { name: 'random', short: 'a', type: 'bool', default: false, help: 'random page order (with repeats, as memstress)' },
    { name: 'write-percent', short: 'w', type: 'int', default: 100, min: 0, max: 100, help: 'percentage of accesses that write' },
    { name: 'slots', short: 'x', type: 'int', default: 1, min: 1, max: 32764, help: 'memslots to split the guest memory into' },
    { name: 'evil', short: 'e', type: 'bool', default: false, help: 'keep vCPUs running while dirty logging is disabled' },
    ...dirtyStrategyFlags,
    vmmWarmupFlag,
  ],
  check: checkDirtyLogPerfFlags,
  async run(f, io) {
    return runDirtyLogPerf(f, io);
  },
};

/**
 * Conflicting and inert combinations, refused before anything runs. Which flags matter follows
 * the model: the ring never enables manual caps (as QEMU's ring mode); --enable picks the
 * manual-protect flavour; --huge and the forced split places only differ from the default under
 * INITIALLY_SET (kvm_mmu_slot_apply_flags() returns early there); on 4K backing no huge page
 * ever exists to split, write-protect or recover.
 */
export function checkDirtyLogPerfFlags(f: Record<string, unknown>): string[] {
  const given = givenFlags(f);
  const ring = f.dirty === 'ring';
  const noCaps = f['no-manual-caps'] === true;
  if (noCaps && given.has('enable')) throw new UsageError('--enable picks the KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 flags, which -g does not enable: drop one');
  if (ring && noCaps) throw new UsageError('--dirty ring never enables manual protect (the ring replaces GET/CLEAR): -g has no effect with it, drop it');
  if (ring && given.has('enable')) throw new UsageError('--dirty ring does not use KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, so --enable has no effect: drop it');
  if (!ring && given.has('ring-entries')) throw new UsageError('--ring-entries sizes the dirty ring: it needs --dirty ring');
  const ringEntries = f['ring-entries'] as number;
  if (ring && (ringEntries & (ringEntries - 1)) !== 0) throw new UsageError(`--ring-entries ${ringEntries} is not a power of two`);
  const initSet = !ring && !noCaps && f.enable === 'initially-set';
  const why = ring ? '--dirty ring' : noCaps ? '-g' : '--enable wrprot-all';
  if (!initSet && given.has('huge')) throw new UsageError(`--huge only applies under KVM_DIRTY_LOG_INITIALLY_SET, which ${why} turns off: drop --huge`);
  if (!initSet && (f.split === 'eager-clear' || f.split === 'eager-enable')) {
    throw new UsageError(`--split ${f.split as string} only differs from ${f.split === 'eager-clear' ? 'on-fault' : 'eager'} under KVM_DIRTY_LOG_INITIALLY_SET, which ${why} turns off: use --split ${f.split === 'eager-clear' ? 'on-fault' : 'eager'}`);
  }
  if (f.backing === 'anonymous' || f.backing === 'shmem') {
    const inert = ['huge', 'split', 'recover'].filter((n) => given.has(n));
    if (inert.length > 0) throw new UsageError(`--${inert[0]!} has no effect with -s ${f.backing as string} (4K pages, no huge mappings): pick a huge backing (-s anonymous_thp, anonymous_hugetlb_2mb, anonymous_hugetlb_1gb, shared_hugetlb) or drop it`);
  }
  return checkMemstressFlags(f);
}

interface VmmTotals {
  get: number;
  clear: number;
}

export async function runDirtyLogPerf(f: Record<string, unknown>, io: ScenarioIo): Promise<RunResult> {
  const iterations = f.iterations as number;
  const ring = f.dirty === 'ring';
  const manual = !(f['no-manual-caps'] as boolean) && !ring;
  const initSet = manual && f.enable === 'initially-set';
  const caps = manual ? KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE | (initSet ? KVM_DIRTY_LOG_INITIALLY_SET : 0) : 0;
  const ringEntries = f['ring-entries'] as number;
  if (ring && (ringEntries & (ringEntries - 1)) !== 0) throw new UsageError(`--ring-entries ${ringEntries} is not a power of two`);
  const strategy = strategyFromFlags(f);
  const c = memstressConfig(f, { slots: f.slots as number });
  const vmOpts = {
    strategy,
    beforeVcpus(vm: Vm) {
      if (caps) vm.enableCap('KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2', caps);
      if (ring) vm.enableCap('KVM_CAP_DIRTY_LOG_RING', ringEntries * 16);
    },
    ringBytesPerVcpu: ring ? ringEntries * 16 : 0,
  };
  const setup = createMemstressVms(c, vmOpts);
  const { host, vms, layout, ctx } = setup;
  const warm: VmmWarmupOutcome | null = f['vmm-warmup'] === true
    ? warmVmmPaths(c, vmOpts, { collect: ring ? 'ring' : manual ? 'get-clear' : 'get', ...kVmmWarmupRounds }) : null;
  const timer = new VmmTimer(ctx.metrics);
  io.print(`Test iterations: ${iterations}`);
  io.print(`Testing guest mode: PA-bits:${kGuestPhysBits}, VA-bits:48,  4K pages`);
  io.print(`guest physical test memory: [0x${layout.gpa.toString(16)}, 0x${(layout.gpa + layout.guestPages * 4096).toString(16)})`);
  io.print(`Random seed: ${c.seed}`);
  const start = snapshot();
  const runner = new Runner(host, vms, { workers: c.workers, cost: setup.cost, sliceAccesses: f.slice as number, wallEvery: f['wall-sample'] as number, observer: io.observer });
  const stats: Record<string, StatsSnapshot> = {};
  const flushes: Record<string, number> = {};
  const tlbFlushes = () => vms.reduce((s, vm) => s + vm.getStats().remote_tlb_flush, 0);
  let lastFlushes = 0;
  const record = (phase: string) => {
    stats[phase] = statsSnapshot(vms);
    const now = tlbFlushes();
    flushes[phase] = now - lastFlushes;
    lastFlushes = now;
  };
  const slotsOf = (vm: Vm) => vm.memslots;
  const setLogging = (on: boolean) => {
    for (const vm of vms) for (const s of slotsOf(vm)) {
      vm.setUserMemoryRegion2({ slot: s.slotId, flags: on ? KVM_MEM_LOG_DIRTY_PAGES : 0, guestPhysAddr: s.baseGfn * 4096, memorySize: s.npages * 4096, userspaceAddr: s.userspaceAddr });
    }
  };
  const vmmPhase = (name: string, fn: () => void): PhaseOutcome => {
    timer.begin();
    const w0 = performance.now();
    fn();
    const wallNs = (performance.now() - w0) * 1e6;
    const out = runner.vmmPhase(name, wallNs, timer.delta());
    record(name);
    return out;
  };
  // The ring reaper: harvest and reset while vCPUs run (QEMU's dirty ring reaper thread).
  let reaped = 0;
  const reap = () => {
    for (const vm of vms) {
      const n = timer.call('ring_harvest', () => vm.harvestDirtyRings(() => {})).value;
      const r = timer.call('ring_reset', () => vm.resetDirtyRings()).value;
      if (r !== n) throw new Error(`BUG: reset ${r} dirty ring entries, harvested ${n}`);
      reaped += n;
    }
  };
  const vcpuPhase = async (name: string, iteration: number, writePercent: number, random: boolean, during?: () => void): Promise<PhaseOutcome> => {
    timer.begin();
    // VMM work while the vCPUs run; on one worker the runner calls it at fixed points of vCPU
    // progress (after every round of slices), so a seed reproduces the run exactly.
    const vmmStep = ring || during ? () => {
      if (ring) reap();
      during?.();
    } : undefined;
    const out = await runner.phase(name, (ref) => memstressStream(c, layout, ref, vms[ref.vm]!.id, random ? 'random' : 'sequential', writePercent, iteration), `${name}.page_fault`, vmmStep);
    // VMM work done while the vCPUs ran (the reaper) is its own phase.
    const vmmDelta = timer.delta();
    if (vmmDelta.some((x) => x !== 0)) runner.vmmPhase(`${name}.vmm`, 0, vmmDelta);
    record(name);
    return out;
  };
  try {
    const pop = await vcpuPhase('populate', 0, 100, false);
    io.print(`Populate memory time: ${fmtTimespec(pop.wallNs)}`);
    const en = vmmPhase('enable', () => setLogging(true));
    io.print(`Enabling dirty logging time: ${fmtTimespec(en.wallNs)}\n`);
    const totals: VmmTotals = { get: 0, clear: 0 };
    const perIteration: Record<string, number>[] = [];
    for (let i = 1; i <= iterations; i++) {
      const it = await vcpuPhase(`iteration-${i}`, i, f['write-percent'] as number, f.random as boolean);
      io.print(`Iteration ${i} dirty memory time: ${fmtTimespec(it.wallNs)}`);
      const row: Record<string, number> = { iteration: i, dirtyWallNs: it.wallNs, dirtyModeledNs: it.modeledNs };
      if (ring) {
        const h = vmmPhase(`harvest-${i}`, () => {
          for (const vm of vms) reaped += timer.call('ring_harvest', () => vm.harvestDirtyRings(() => {})).value;
        });
        const r = vmmPhase(`reset-${i}`, () => {
          for (const vm of vms) timer.call('ring_reset', () => vm.resetDirtyRings());
        });
        io.print(`Iteration ${i} dirty ring harvest time: ${fmtTimespec(h.wallNs)}`);
        io.print(`Iteration ${i} dirty ring reset time: ${fmtTimespec(r.wallNs)}`);
        totals.get += h.wallNs;
        totals.clear += r.wallNs;
        Object.assign(row, { getWallNs: h.wallNs, getModeledNs: h.modeledNs, clearWallNs: r.wallNs, clearModeledNs: r.modeledNs });
      } else {
        const bitmaps = new Map<string, Uint32Array>();
        const g = vmmPhase(`get-${i}`, () => {
          for (const vm of vms) for (const s of slotsOf(vm)) bitmaps.set(`${vm.id}/${s.slotId}`, timer.call('get_dirty_log', () => vm.getDirtyLog(s.slotId)).value);
        });
        io.print(`Iteration ${i} get dirty log time: ${fmtTimespec(g.wallNs)}`);
        totals.get += g.wallNs;
        Object.assign(row, { getWallNs: g.wallNs, getModeledNs: g.modeledNs });
        if (manual) {
          const cl = vmmPhase(`clear-${i}`, () => {
            for (const vm of vms) for (const s of slotsOf(vm)) {
              const bitmap = bitmaps.get(`${vm.id}/${s.slotId}`)!;
              timer.call('clear_dirty_log', () => vm.clearDirtyLog({ slot: s.slotId, firstPage: 0, numPages: s.npages, bitmap }));
            }
          });
          io.print(`Iteration ${i} clear dirty log time: ${fmtTimespec(cl.wallNs)}`);
          totals.clear += cl.wallNs;
          Object.assign(row, { clearWallNs: cl.wallNs, clearModeledNs: cl.modeledNs });
        }
      }
      perIteration.push(row);
    }
    let dis: PhaseOutcome;
    if (f.evil as boolean) {
      // -e: vCPUs keep dirtying memory while logging is disabled underneath them.
      let disabled: PhaseOutcome | null = null;
      await vcpuPhase('evil', iterations + 1, f['write-percent'] as number, f.random as boolean, () => {
        if (disabled === null) disabled = vmmPhase('disable', () => setLogging(false));
      });
      dis = disabled ?? vmmPhase('disable', () => setLogging(false));
    } else {
      dis = vmmPhase('disable', () => setLogging(false));
    }
    io.print(`Disabling dirty logging time: ${fmtTimespec(dis.wallNs)}`);
    const avg = (t: number) => fmtTimespec(t / iterations);
    if (ring) {
      io.print(`Dirty ring harvest over ${iterations} iterations took ${fmtTimespec(totals.get)}. (Avg ${avg(totals.get)}/iteration)`);
      io.print(`Dirty ring reset over ${iterations} iterations took ${fmtTimespec(totals.clear)}. (Avg ${avg(totals.clear)}/iteration)`);
    } else {
      io.print(`Get dirty log over ${iterations} iterations took ${fmtTimespec(totals.get)}. (Avg ${avg(totals.get)}/iteration)`);
      if (manual) io.print(`Clear dirty log over ${iterations} iterations took ${fmtTimespec(totals.clear)}. (Avg ${avg(totals.clear)}/iteration)`);
    }
    runner.histograms.add(timer.hists.encode());
    timer.hists.destroy();
    const nrVcpus = c.vms * c.vcpus;
    const result = assembleResult({
      scenario: 'dirty-log-perf', config: { ...f, manualCaps: manual, initiallySet: initSet, strategy, slots: c.slots, vmmWarmup: warm !== null }, seed: c.seed,
      host, vms, runner, info: hostInfo(start, Math.min(c.workers, nrVcpus)), stats,
      metrics: {
        populateWallNs: pop.wallNs, populateModeledNs: pop.modeledNs, enableWallNs: en.wallNs, enableModeledNs: en.modeledNs,
        disableWallNs: dis.wallNs, disableModeledNs: dis.modeledNs, getTotalWallNs: totals.get, clearTotalWallNs: totals.clear,
        ringEntriesHarvested: reaped,
      },
      output: [],
    });
    result.tlbFlushes = flushes;
    result.iterations = perIteration;
    if (warm !== null) result.host.notes.push(vmmWarmupNote(warm));
    return result;
  } finally {
    await runner.close();
  }
}
