/**
 * Dirty-logging benchmarks:
 *
 *   dirty-get-manual-copy      KVM_GET_DIRTY_LOG with manual protect is a copy of the bitmap: a
 *                              64 GiB slot (16M pages, 2 MiB of bitmap, all ones under
 *                              INITIALLY_SET), nothing mapped. GB/s = bitmap bytes / call time.
 *   dirty-clear-1g-4k-wrprot   KVM_CLEAR_DIRTY_LOG of a 1 GiB slot mapped at 4K, every page dirty,
 *                              write-protection tracking: 262144 SPTEs lose W under mmu_lock.
 *   dirty-get-legacy-1g-4k-wrprot  the same slot harvested by a legacy KVM_GET_DIRTY_LOG (no
 *                              manual protect), which write-protects what it reports.
 *   wrprot-fault-1worker       fast page faults/s on one piscina worker (the Runner, as
 *                              fault.ts): every write to a write-protected 4K page takes
 *                              fast_page_fault(), lockless, and marks the page dirty.
 *   dirty-log-perf-64vcpu-1gib `mmuh run dirty-log-perf -v 64 -b 1G --workers 2 -i 2` in a child.
 *
 * The first three run in the main thread on the compiled sources (no worker), with one vCPU that
 * never runs (GET) or runs between measurements (CLEAR), so the kicks GET and CLEAR send find it
 * outside guest mode, as a paused VMM's vCPUs would be.
 */
import { Host } from '../src/host/host.js';
import { Vm, type ThreadCtx } from '../src/kvm/vm.js';
import type { AccessSource } from '../src/kvm/vcpu.js';
import { KVM_MEM_LOG_DIRTY_PAGES } from '../src/kvm/memslot.js';
import { KVM_DIRTY_LOG_INITIALLY_SET, KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE } from '../src/kvm/dirty/strategy.js';
import { Metrics } from '../src/metrics/counters.js';
import { costVector, loadCostModel } from '../src/metrics/cost-model.js';
import { Runner } from '../src/scenario/runner.js';
import { createMemstressVms, memstressStream, type MemstressConfig } from '../src/scenario/memstress-vm.js';
import { audit } from '../src/kvm/audit.js';
import { childSummary, scenarioChild } from './scenario-child.js';
import {
  atLeast, atMost, closeWindow, median, openWindow, repeatedFigure, round, spread, type BenchOptions, type BenchResult,
  type Benchmark, type Figure, type Window,
} from './lib.js';

const GiB = 2 ** 30;
const MiB = 2 ** 20;
/** Slot 1 at gfn 2^20 (4 GiB), as the micro-benchmarks place theirs. */
const kSlot = 1;
const kBaseGfn = 1 << 20;

/** Blackhole for results the JIT could otherwise drop. */
export let dirtySink = 0;

function threadCtx(host: Host): ThreadCtx {
  return { metrics: new Metrics(costVector(loadCostModel('default'))), hostThread: host.thread() };
}

/** Set bits in a bitmap (independent of the sources' popcount, so it checks them). */
function bitsSet(bm: Uint32Array): number {
  let n = 0;
  for (let i = 0; i < bm.length; i++) {
    let x = bm[i]!;
    while (x !== 0) {
      x &= x - 1;
      n++;
    }
  }
  return n;
}

/** Sequential stores to [g, end): the run() stream shape, no allocation per access. */
class StoreRange implements AccessSource {
  write = true;
  constructor(public g: number, public end: number, public iteration: number) {}
  next(): number {
    return this.g < this.end ? this.g++ : -1;
  }
}

// ---------------------------------------------------------------------------------------------
// 1. GET in manual mode

export const dirtyGetManualCopy: Benchmark = {
  name: 'dirty-get-manual-copy',
  description: 'KVM_GET_DIRTY_LOG with MANUAL_PROTECT|INITIALLY_SET on a 64 GiB slot (2 MiB bitmap, all ones): bitmap bytes / call time, median of repetitions',
  async run(o: BenchOptions): Promise<BenchResult> {
    // Same size under --quick (setup is ~0.2 s): only the repetitions are fewer and shorter.
    const slotBytes = 64 * GiB;
    const reps = o.quick ? 3 : 7;
    const repMs = o.quick ? 100 : 300;
    const warmMs = o.quick ? 100 : 300;
    const w0 = openWindow();
    const t0 = performance.now();
    // Nothing is mapped: the slot has no VMA and no vCPU runs, so host memory is only the
    // frame table's. The page-table pool is still sized for the slot at 4K (ensurePoolCapacity).
    const host = Host.create({ memory: 64 * MiB });
    const vm = Vm.create(host, 0, threadCtx(host), { maxVcpus: 1 });
    // One vCPU (outside guest mode): GET's kvm_arch_sync_dirty_log kicks it. Created before the
    // slot so the pool is sized once.
    vm.createVcpu();
    vm.enableCap('KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2', KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE | KVM_DIRTY_LOG_INITIALLY_SET);
    const region = { slot: kSlot, flags: 0, guestPhysAddr: kBaseGfn * 4096, memorySize: slotBytes, userspaceAddr: 0x40000000 };
    vm.setUserMemoryRegion2(region);
    vm.setUserMemoryRegion2({ ...region, flags: KVM_MEM_LOG_DIRTY_PAGES });
    const setupMs = performance.now() - t0;
    const pages = slotBytes / 4096;
    const first = vm.getDirtyLog(kSlot);
    const bytes = first.byteLength;
    if (bytes !== pages / 8) throw new Error(`GET returned ${bytes} bytes, expected ${pages / 8}`);
    const set = bitsSet(first);
    if (set !== pages) throw new Error(`INITIALLY_SET bitmap has ${set} bits set, expected ${pages}`);

    const timed = (ms: number): number[] => {
      const out: number[] = [];
      const end = performance.now() + ms;
      while (performance.now() < end || out.length < 20) {
        const a = performance.now();
        const bm = vm.getDirtyLog(kSlot);
        const b = performance.now();
        dirtySink ^= bm[bm.length - 1]! ^ bm.length;
        out.push((b - a) * 1e6);
      }
      return out;
    };
    const warm = timed(warmMs);
    o.log(`  setup ${setupMs.toFixed(0)} ms; warm-up ${warm.length} calls, median ${(median(warm) / 1e3).toFixed(1)} us`);
    const rates: number[] = [];
    const windows: Window[] = [];
    const samples: Record<string, unknown>[] = [];
    for (let r = 1; r <= reps; r++) {
      const w = openWindow();
      const ns = timed(repMs);
      const window = closeWindow(w, 1);
      const s = spread(ns);
      const gbps = bytes / s.median;
      rates.push(gbps);
      windows.push(window);
      samples.push({
        rep: r, calls: ns.length, nsPerCall: { median: Math.round(s.median), min: Math.round(s.min), max: Math.round(s.max), mean: Math.round(s.mean) },
        gbPerS: round(gbps, 3), window,
      });
      o.log(`  run ${r}/${reps}: ${gbps.toFixed(2)} GB/s (median ${(s.median / 1e3).toFixed(1)} us/call, mean ${(s.mean / 1e3).toFixed(1)} us, ${ns.length} calls)` +
        `${window.noisy ? `  [noisy: ${window.notes.join('; ')}]` : ''}`);
    }
    const fig = repeatedFigure('dirty-get-manual-copy', rates, 'GB/s', 'higher', windows, o.quick ? undefined : atLeast(5, 'GB/s'));
    fig.value = round(fig.value, 3);
    if (o.quick) fig.notes.push('quick: 3 short repetitions, no target');
    return {
      name: this.name, description: this.description, seed: o.seed,
      config: { slotBytes, pages, bitmapBytes: bytes, caps: 'MANUAL_PROTECT_ENABLE|INITIALLY_SET', repetitions: reps, repMs, warmupMs: warmMs, vcpus: 1 },
      figures: [fig], window: closeWindow(w0, 1), samples,
      details: { setupMs: round(setupMs, 1), warmupCalls: warm.length, warmupMedianNs: Math.round(median(warm)), bitsSet: set, unit: 'GB = 1e9 bytes; per-call time is performance.now() around vm.getDirtyLog(), which allocates the 2 MiB result' },
      noisy: fig.noisy, notes: fig.notes,
    };
  },
};

// ---------------------------------------------------------------------------------------------
// 2. CLEAR, and legacy GET, of a 1 GiB all-dirty slot at 4K, write-protection

/**
 * 'clear': manual protect (no INITIALLY_SET), GET copies, the timed call is CLEAR with GET's
 * bitmap. 'get-legacy': no manual protect, the timed call is GET, which harvests and
 * write-protects what it reports. Either way every page is dirty and 262144 SPTEs lose W.
 */
type HarvestMode = 'clear' | 'get-legacy';

function harvestBenchmark(name: string, mode: HarvestMode, description: string): Benchmark {
  return {
    name,
    description,
    async run(o: BenchOptions): Promise<BenchResult> {
      const slotBytes = (o.quick ? 256 : 1024) * MiB;
      const warmups = 2;
      const reps = o.quick ? 3 : 9;
      const pages = slotBytes / 4096;
      const call = mode === 'clear' ? 'CLEAR' : 'GET (legacy)';
      const w0 = openWindow();
      const t0 = performance.now();
      const host = Host.create({ memory: slotBytes + 64 * MiB });
      const vm = Vm.create(host, 0, threadCtx(host), { maxVcpus: 1, strategy: { tracking: 'wrprot' } });
      const hva = vm.mmap({ size: slotBytes, backing: 'anonymous' });
      const region = { slot: kSlot, flags: 0, guestPhysAddr: kBaseGfn * 4096, memorySize: slotBytes, userspaceAddr: hva };
      vm.setUserMemoryRegion2(region);
      if (mode === 'clear') vm.enableCap('KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2', KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE);
      const vcpu = vm.createVcpu();
      // Fault everything in at 4K (anonymous backing, no THP).
      if (vcpu.run(new StoreRange(kBaseGfn, kBaseGfn + pages, 0), pages + 1) !== pages) throw new Error('populate: not every page was accessed');
      const st0 = vm.getStats();
      if (st0.pages_4k !== pages || st0.pages_2m !== 0) throw new Error(`populate: pages_4k ${st0.pages_4k}, pages_2m ${st0.pages_2m}, expected ${pages} 4K pages`);
      const populateMs = performance.now() - t0;
      // Enable: without INITIALLY_SET, every 4K leaf is write-protected now and the bitmap is empty.
      const te = performance.now();
      vm.setUserMemoryRegion2({ ...region, flags: KVM_MEM_LOG_DIRTY_PAGES });
      const enableMs = performance.now() - te;
      const empty = bitsSet(vm.getDirtyLog(kSlot));
      if (empty !== 0) throw new Error(`bitmap after enable has ${empty} bits set, expected 0`);

      const callMs: number[] = [];
      const fastRates: number[] = [];
      const samples: Record<string, unknown>[] = [];
      const wm = openWindow();
      for (let k = 0; k < warmups + reps; k++) {
        // Re-dirty: each store hits a write-protected leaf and takes the fast page fault (which
        // also checks that the previous call re-armed every page).
        const fast0 = vcpu.getStats().pf_fast;
        const ta = performance.now();
        vcpu.run(new StoreRange(kBaseGfn, kBaseGfn + pages, k + 1), pages + 1);
        const dirtyMs = performance.now() - ta;
        const fast = vcpu.getStats().pf_fast - fast0;
        if (fast !== pages) throw new Error(`re-dirty ${k}: ${fast} fast page faults, expected ${pages}`);
        const flush0 = vm.getStats().remote_tlb_flush;
        let ms: number;
        let rearmed: number;
        if (mode === 'clear') {
          const bitmap = vm.getDirtyLog(kSlot);
          const set = bitsSet(bitmap);
          if (set !== pages) throw new Error(`re-dirty ${k}: GET reports ${set} dirty pages, expected ${pages}`);
          const tc = performance.now();
          rearmed = vm.clearDirtyLog({ slot: kSlot, firstPage: 0, numPages: pages, bitmap });
          ms = performance.now() - tc;
        } else {
          const tc = performance.now();
          const bitmap = vm.getDirtyLog(kSlot);
          ms = performance.now() - tc;
          rearmed = bitsSet(bitmap);
        }
        if (rearmed !== pages) throw new Error(`${call} re-armed ${rearmed} pages, expected ${pages}`);
        const flushes = vm.getStats().remote_tlb_flush - flush0;
        if (k < warmups) continue;
        callMs.push(ms);
        fastRates.push(fast / (dirtyMs / 1e3));
        samples.push({ rep: k - warmups + 1, callMs: round(ms, 3), rearmed, tlbFlushes: flushes, redirtyMs: round(dirtyMs, 1), fastFaultsPerSec: round(fast / (dirtyMs / 1e3), 0) });
      }
      // One window over the measured loop: a single call (~ms) is far below /proc/stat's ticks.
      const loopWindow = closeWindow(wm, 1);
      const after = bitsSet(vm.getDirtyLog(kSlot));
      if (after !== 0) throw new Error(`bitmap after the last ${call} has ${after} bits set`);
      vm.ctx.hostThread.drain();
      const a = audit(host, [vm]);
      if (!a.ok) throw new Error(`audit failed: ${a.violations[0]!.kind}: ${a.violations[0]!.detail}`);
      const s = spread(callMs);
      o.log(`  setup+populate ${populateMs.toFixed(0)} ms, enable (wrprot all) ${enableMs.toFixed(1)} ms`);
      o.log(`  ${call} of ${pages} dirty pages: median ${s.median.toFixed(2)} ms (min ${s.min.toFixed(2)}, max ${s.max.toFixed(2)}, ${reps} runs after ${warmups} warm-up)` +
        `${loopWindow.noisy ? `  [noisy: ${loopWindow.notes.join('; ')}]` : ''}`);
      o.log(`  re-dirty (main thread, fast page faults): median ${(median(fastRates) / 1e6).toFixed(3)} M/s`);
      const fig = repeatedFigure(name, callMs, 'ms', 'lower', [loopWindow], o.quick ? undefined : atMost(1.4, 'ms'));
      fig.value = round(fig.value, 3);
      if (o.quick) fig.notes.push('quick: 256 MiB slot, no target');
      const figures = [fig];
      if (mode === 'clear') {
        const fastFig = repeatedFigure(`${name}.redirty-fast-pf-main`, fastRates, 'faults/s', 'higher', [loopWindow]);
        fastFig.value = round(fastFig.value, 0);
        fastFig.notes.push('main thread, no worker, no histograms: for comparison with wrprot-fault-1worker');
        figures.push(fastFig);
      }
      return {
        name, description, seed: o.seed,
        config: { slotBytes, pages, backing: 'anonymous', strategy: { tracking: 'wrprot' }, caps: mode === 'clear' ? 'MANUAL_PROTECT_ENABLE' : 'none (legacy GET)', repetitions: reps, warmups },
        figures, window: closeWindow(w0, 1), samples,
        details: { populateMs: round(populateMs, 1), enableMs: round(enableMs, 2), loopWindow, auditOk: a.ok, nsPerPage: round((s.median * 1e6) / pages, 2) },
        noisy: fig.noisy, notes: fig.notes,
      };
    },
  };
}

export const dirtyClear1g = harvestBenchmark('dirty-clear-1g-4k-wrprot', 'clear',
  'KVM_CLEAR_DIRTY_LOG of a 1 GiB slot mapped at 4K, all 262144 pages dirty, wrprot tracking, manual protect without INITIALLY_SET: ms per call (main thread)');

export const dirtyGetLegacy1g = harvestBenchmark('dirty-get-legacy-1g-4k-wrprot', 'get-legacy',
  'legacy KVM_GET_DIRTY_LOG (no manual protect: harvests and write-protects what it reports) of a 1 GiB slot mapped at 4K, all 262144 pages dirty, wrprot tracking: ms per call (main thread)');

// ---------------------------------------------------------------------------------------------
// 3. Write-protect (fast) faults on one worker

export const wrprotFault1worker: Benchmark = {
  name: 'wrprot-fault-1worker',
  description: '1 VM x 1 vCPU x 4 GiB anonymous at 4K, wrprot tracking, 1 worker (Runner): pf_fast / phase wall of a pass that writes every page once after enable or CLEAR',
  async run(o: BenchOptions): Promise<BenchResult> {
    const bytes = o.quick ? 512 * MiB : 4 * GiB;
    const warmups = 2;
    const reps = o.quick ? 3 : 5;
    const c: MemstressConfig = {
      vms: 1, vcpus: 1, bytesPerVcpu: bytes, backing: 'anonymous', overlap: false, slots: 1, seed: o.seed, workers: 1, hostMemory: null, nodes: 1,
      costModel: 'default', stamps: false,
    };
    const w0 = openWindow();
    const setup = createMemstressVms(c, {
      strategy: { tracking: 'wrprot' },
      beforeVcpus: (vm) => vm.enableCap('KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2', KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE),
    });
    const { vms, layout } = setup;
    const vm = vms[0]!;
    const slot = vm.memslots[0]!;
    const pages = layout.pagesPerVcpu;
    const runner = new Runner(setup.host, vms, { workers: 1, cost: setup.cost, sliceAccesses: 4096, wallEvery: 16 });
    const stat = () => vm.vcpuStats()[0]!;
    const rates: number[] = [];
    const windows: Window[] = [];
    const samples: Record<string, unknown>[] = [];
    const warm: number[] = [];
    const clearMs: number[] = [];
    let populateRate = 0;
    let enableMs = 0;
    let auditOk: boolean | null = null;
    const hist: Record<string, unknown> = {};
    try {
      // Populate (demand paging, 4K) — also the worker's first, JIT-cold phase.
      const t0 = stat().pf_taken;
      const pop = await runner.phase('populate', (ref) => memstressStream(c, layout, ref, vm.id, 'sequential', 100, 0), 'populate.page_fault');
      if (stat().pf_taken - t0 !== pages) throw new Error(`populate: ${stat().pf_taken - t0} faults, expected ${pages}`);
      populateRate = pages / (pop.wallNs / 1e9);
      const te = performance.now();
      vm.setUserMemoryRegion2({ slot: slot.slotId, flags: KVM_MEM_LOG_DIRTY_PAGES, guestPhysAddr: slot.baseGfn * 4096, memorySize: slot.npages * 4096, userspaceAddr: slot.userspaceAddr });
      enableMs = performance.now() - te;
      for (let k = 0; k < warmups + reps; k++) {
        const before = stat();
        const w = openWindow();
        const out = await runner.phase(`dirty-${k}`, (ref) => memstressStream(c, layout, ref, vm.id, 'sequential', 100, k + 1), 'wrprot.page_fault');
        const window = closeWindow(w, 1);
        const after = stat();
        const fast = after.pf_fast - before.pf_fast;
        const taken = after.pf_taken - before.pf_taken;
        if (fast !== pages || taken !== pages) throw new Error(`dirty-${k}: ${fast} fast of ${taken} faults, expected ${pages} of ${pages} (one fast fault per page)`);
        // Re-arm between phases: GET (a copy under manual protect) + CLEAR of every page.
        const bitmap = vm.getDirtyLog(slot.slotId);
        const tc = performance.now();
        const rearmed = vm.clearDirtyLog({ slot: slot.slotId, firstPage: 0, numPages: slot.npages, bitmap });
        clearMs.push(performance.now() - tc);
        if (rearmed !== pages) throw new Error(`CLEAR after dirty-${k} re-armed ${rearmed} pages, expected ${pages}`);
        const rate = fast / (out.wallNs / 1e9);
        if (k < warmups) {
          warm.push(rate);
          continue;
        }
        rates.push(rate);
        windows.push(window);
        samples.push({ rep: k - warmups + 1, pfFast: fast, wallNs: Math.round(out.wallNs), faultsPerSec: round(rate, 0), vcpuWallNs: out.vcpus.map((v) => Math.round(v.wallNs)), window });
        o.log(`  run ${k - warmups + 1}/${reps}: ${(rate / 1e6).toFixed(3)} M fast faults/s (${(out.wallNs / 1e6).toFixed(0)} ms)${window.noisy ? `  [noisy: ${window.notes.join('; ')}]` : ''}`);
        if (k === warmups) o.log(`  (populate ${(populateRate / 1e6).toFixed(3)} M faults/s; enable ${enableMs.toFixed(1)} ms; warm-up ${warm.map((x) => (x / 1e6).toFixed(3)).join(', ')} M/s)`);
      }
      vm.ctx.hostThread.drain();
      const a = audit(setup.host, vms);
      auditOk = a.ok;
      if (!a.ok) throw new Error(`audit failed: ${a.violations[0]!.kind}: ${a.violations[0]!.detail}`);
    } finally {
      await runner.close();
    }
    const all = runner.histograms.summaries();
    for (const k of ['wrprot.page_fault/wall', 'wrprot.page_fault/modeled']) {
      const h = all[k];
      if (h) {
        const { encoded: _drop, ...rest } = h;
        hist[k] = rest;
      }
    }
    runner.histograms.destroy();
    const fig = repeatedFigure('wrprot-fault-1worker', rates, 'faults/s', 'higher', windows, o.quick ? undefined : atLeast(3e6, 'faults/s'));
    fig.value = round(fig.value, 0);
    if (o.quick) fig.notes.push('quick: 512 MiB, no target');
    return {
      name: this.name, description: this.description, seed: o.seed,
      config: { vms: 1, vcpus: 1, bytesPerVcpu: bytes, backing: 'anonymous', workers: 1, wallEvery: 16, sliceAccesses: 4096, strategy: { tracking: 'wrprot' }, caps: 'MANUAL_PROTECT_ENABLE', repetitions: reps, warmupPhases: warmups },
      figures: [fig], window: closeWindow(w0, 1), samples,
      details: {
        populateFaultsPerSec: round(populateRate, 0), enableMs: round(enableMs, 1), warmupFaultsPerSec: warm.map((x) => round(x, 0)),
        clearMsBetweenPhases: clearMs.map((x) => round(x, 2)), histograms: hist, auditOk,
      },
      noisy: fig.noisy, notes: fig.notes,
    };
  },
};

// ---------------------------------------------------------------------------------------------
// 4. dirty-log-perf, 64 vCPUs x 1 GiB, in a child

interface DirtyLogPerfResult {
  iterations?: Record<string, number>[];
  tlbFlushes?: Record<string, number>;
}

export const dirtyLogPerf64: Benchmark = {
  name: 'dirty-log-perf-64vcpu-1gib',
  description: '`mmuh run dirty-log-perf -v 64 -b 1G --workers 2 -i 2` in a child: completes (exit 0, 16777216 4K pages, audit ok), wall, peak RSS',
  skipQuick: true,
  async run(o: BenchOptions): Promise<BenchResult> {
    const w0 = openWindow();
    // busyThreads 1: VM setup is single-threaded and is most of the run (see the README).
    const r = await scenarioChild(o, 'dirty-log-perf', ['-v', '64', '-b', '1G', '--workers', '2', '-i', '2'], 600_000, 1);
    const res = r.result;
    const expected = 64 * 262144;
    const pages4k = res?.stats.populate?.total.pages_4k ?? null;
    const auditOk = res?.audit.ok ?? null;
    const iterations = (res as DirtyLogPerfResult | null)?.iterations ?? null;
    const completed = r.child.exitCode === 0 && pages4k === expected && auditOk === true && iterations?.length === 2;
    const why: string[] = [];
    if (r.child.timedOut) why.push('timed out');
    if (r.child.exitCode !== 0) why.push(`exit ${r.child.exitCode}${r.child.signal ? ` (${r.child.signal})` : ''}`);
    if (pages4k !== expected) why.push(`pages_4k ${pages4k} != ${expected}`);
    if (auditOk !== true) why.push(`audit ${auditOk}`);
    if (iterations?.length !== 2) why.push(`${iterations?.length ?? 'no'} iterations reported`);
    const phases = Object.fromEntries((res?.phases ?? []).map((p) => [p.name, round(p.wallNs / 1e9, 3)]));
    const phaseS = (res?.phases ?? []).reduce((s, p) => s + p.wallNs / 1e9, 0);
    o.log(`  ${completed ? 'completed' : `FAILED (${why.join(', ')})`} in ${r.child.wallS.toFixed(1)} s, peak RSS ${((r.child.peakRssBytes ?? 0) / GiB).toFixed(2)} GiB` +
      (res ? `, phases ${phaseS.toFixed(1)} s (populate ${phases.populate} s, clear ${phases['clear-1']} + ${phases['clear-2']} s), setup/teardown ${(r.child.wallS - phaseS).toFixed(1)} s` : ''));
    const notes = [...r.window.notes.map((n) => `window: ${n}`), ...why];
    const fig: Figure = {
      name: 'dirty-log-perf-64vcpu-1gib', value: round(r.child.wallS, 2), unit: 's', better: 'lower',
      target: { text: 'completes', ok: completed }, noisy: r.window.noisy, notes,
    };
    const figures: Figure[] = [fig];
    if (r.child.peakRssBytes !== null) {
      figures.push({ name: 'dirty-log-perf-64vcpu-1gib.peak-rss', value: round(r.child.peakRssBytes / GiB, 3), unit: 'GiB', better: 'lower', noisy: false, notes: [`source: ${r.child.peakRssSource}`] });
    }
    return {
      name: this.name, description: this.description, seed: o.seed,
      config: { vms: 1, vcpus: 64, bytesPerVcpu: GiB, backing: 'anonymous', workers: 2, iterations: 2, dirty: 'pml (default)', manualCaps: 'MANUAL_PROTECT_ENABLE|INITIALLY_SET (default)', repetitions: 1 },
      figures, window: closeWindow(w0, 1, r.child.cpuMs ?? 0), samples: [{ rep: 1, child: childSummary(r) }],
      details: {
        completed, pages4k, expectedPages4k: expected, auditOk, exitCode: r.child.exitCode, phasesS: phases,
        setupAndTeardownS: res ? round(r.child.wallS - phaseS, 2) : null, iterations, tlbFlushes: (res as DirtyLogPerfResult | null)?.tlbFlushes ?? null,
        memory: res?.memory ?? null, metrics: res?.metrics ?? null,
      },
      noisy: r.window.noisy, notes,
    };
  },
};
