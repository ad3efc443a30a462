/**
 * Fault-rate benchmarks on the real scenario path: createMemstressVms + Runner + the piscina
 * vCPU worker, exactly what `mmuh run demand-paging` runs, with per-fault histograms on
 * (wallEvery = 16, the CLI's --wall-sample default; the Runner's own default is 1).
 *
 * Warm-up and repetition. A fresh worker starts in the interpreter, and Runner.phase() runs
 * every vCPU of every VM the Runner holds. So one Runner gets 1 + R VMs, and each phase gives
 * a real memstress stream to the VMs it measures and an empty stream (0 pages, which ends at
 * once) to all the others: phase 0 warms the worker(s) up on VM 0, phases 1..R each demand-page a
 * VM that has never been touched. The worker threads, and their JIT state, survive between
 * phases; every measured VM is fresh, so each phase is one complete demand-paging run of that VM.
 * The host is sized for all of them (emulated memory is only touched where faulted in).
 *
 * Figure: pf_taken of the measured VMs / phase wall time (main thread, dispatch to barrier).
 */
import { Runner } from '../src/scenario/runner.js';
import { createMemstressVms, memstressStream, type MemstressConfig, type MemstressSetup } from '../src/scenario/memstress-vm.js';
import { audit } from '../src/kvm/audit.js';
import type { StreamSpec } from '../src/workload/memstress.js';
import {
  atLeast, closeWindow, openWindow, repeatedFigure, round, type BenchOptions, type BenchResult, type Benchmark, type Window,
} from './lib.js';

const GiB = 2 ** 30;
const MiB = 2 ** 20;
const kWallEvery = 16;
const kSlice = 4096;
/**
 * Warm-up phases before measuring. One was not enough: the first measured phase after a single
 * warm-up ran ~5% (1 worker) to ~15% (2 workers) slower than the rest, i.e. the JIT was still
 * tiering up; two bring the first measured run in line with the others.
 */
const kWarmupVms = 2;

function config(vms: number, bytesPerVcpu: number, workers: number, seed: number): MemstressConfig {
  return {
    vms, vcpus: 1, bytesPerVcpu, backing: 'anonymous', overlap: false, slots: 1, seed, workers, hostMemory: null, nodes: 1,
    costModel: 'default', stamps: false,
  };
}

/** A Runner over a memstress setup whose phases demand-page chosen VMs only. */
class PhasedRun {
  readonly setup: MemstressSetup;
  readonly runner: Runner;
  constructor(readonly c: MemstressConfig) {
    this.setup = createMemstressVms(c);
    this.runner = new Runner(this.setup.host, this.setup.vms, { workers: c.workers, cost: this.setup.cost, sliceAccesses: kSlice, wallEvery: kWallEvery });
  }

  /** Demand-page the VMs in `active` (indices), all others idle; returns faults/s and more. */
  async phase(name: string, active: number[], hist: string): Promise<{ faults: number; wallNs: number; rate: number; window: Window; vcpuWallNs: number[] }> {
    const { vms, layout } = this.setup;
    const set = new Set(active);
    const before = active.map((i) => vms[i]!.vcpuStats()[0]!.pf_taken);
    const w = openWindow();
    const out = await this.runner.phase(name, (ref) => {
      const s: StreamSpec = memstressStream(this.c, layout, ref, vms[ref.vm]!.id, 'sequential', 100, 1);
      return set.has(ref.vm) ? s : { ...s, pages: 0 };
    }, hist);
    const window = closeWindow(w, Math.min(active.length, this.c.workers));
    const faults = active.reduce((s, i, k) => s + vms[i]!.vcpuStats()[0]!.pf_taken - before[k]!, 0);
    const expected = active.length * layout.pagesPerVcpu;
    if (faults !== expected) throw new Error(`${name}: ${faults} faults taken, expected ${expected} (one per 4K page)`);
    return {
      faults, wallNs: out.wallNs, rate: faults / (out.wallNs / 1e9), window,
      vcpuWallNs: out.vcpus.filter((v) => set.has(v.vm)).map((v) => Math.round(v.wallNs)),
    };
  }

  histograms(key: string): Record<string, unknown> {
    const all = this.runner.histograms.summaries();
    const pick = (k: string) => {
      const h = all[k];
      if (!h) return null;
      const { encoded: _drop, ...rest } = h;
      return rest;
    };
    return { wall: pick(`${key}/wall`), modeled: pick(`${key}/modeled`) };
  }

  async close(): Promise<void> {
    await this.runner.close();
  }

  /** Free the merged histograms (WASM memory is not garbage collected). */
  destroy(): void {
    this.runner.histograms.destroy();
  }
}

export const fault4k1worker: Benchmark = {
  name: 'fault-4k-1worker',
  description: 'demand paging, 1 VM x 1 vCPU x 4 GiB anonymous, 1 worker, histograms on: 4K faults/s (median of fresh VMs after 2 warm-up VMs)',
  async run(o: BenchOptions): Promise<BenchResult> {
    const reps = o.quick ? 3 : 5;
    const bytes = o.quick ? 512 * MiB : 4 * GiB;
    const c = config(kWarmupVms + reps, bytes, 1, o.seed);
    const w0 = openWindow();
    const tSetup = performance.now();
    const run = new PhasedRun(c);
    const setupMs = performance.now() - tSetup;
    const samples: Record<string, unknown>[] = [];
    const rates: number[] = [];
    const windows: Window[] = [];
    let auditOk: boolean | null = null;
    let warm: Awaited<ReturnType<PhasedRun['phase']>>[];
    try {
      warm = [];
      for (let k = 0; k < kWarmupVms; k++) warm.push(await run.phase(`warmup-${k}`, [k], 'warmup.page_fault'));
      o.log(`  warm-up VMs: ${warm.map((p) => `${(p.rate / 1e6).toFixed(3)} M faults/s`).join(', ')} (the first is a fresh worker's first phase)`);
      for (let r = 1; r <= reps; r++) {
        const p = await run.phase(`measure-${r}`, [kWarmupVms + r - 1], 'fault-4k.page_fault');
        rates.push(p.rate);
        windows.push(p.window);
        samples.push({ rep: r, faults: p.faults, wallNs: Math.round(p.wallNs), faultsPerSec: round(p.rate, 0), vcpuWallNs: p.vcpuWallNs, window: p.window });
        o.log(`  run ${r}/${reps}: ${(p.rate / 1e6).toFixed(3)} M faults/s (${(p.wallNs / 1e6).toFixed(0)} ms)${p.window.noisy ? `  [noisy: ${p.window.notes.join('; ')}]` : ''}`);
      }
      const ta = performance.now();
      const a = audit(run.setup.host, run.setup.vms);
      auditOk = a.ok;
      o.log(`  audit ${auditOk ? 'ok' : 'FAILED'} (${((performance.now() - ta) / 1000).toFixed(1)} s)`);
      // A rate measured on a broken MMU is not a result.
      if (!a.ok) throw new Error(`audit failed after the measured phases: ${a.violations[0]!.kind}: ${a.violations[0]!.detail}`);
    } finally {
      await run.close();
    }
    const hist = run.histograms('fault-4k.page_fault');
    run.destroy();
    const fig = repeatedFigure('fault-4k-1worker', rates, 'faults/s', 'higher', windows, o.quick ? undefined : atLeast(5e6, 'faults/s'));
    if (o.quick) fig.notes.push('quick: 512 MiB per VM, no target');
    const window = closeWindow(w0, 1);
    return {
      name: this.name, description: this.description, seed: o.seed,
      config: { vms: 1, vcpus: 1, bytesPerVcpu: bytes, backing: 'anonymous', workers: 1, wallEvery: kWallEvery, sliceAccesses: kSlice, repetitions: reps, warmupVms: kWarmupVms },
      figures: [fig], window, samples,
      details: {
        setupMs: round(setupMs, 1), warmup: warm.map((p) => ({ faultsPerSec: round(p.rate, 0), wallNs: Math.round(p.wallNs), window: p.window })),
        histograms: hist, auditOk,
      },
      noisy: fig.noisy, notes: fig.notes,
    };
  },
};

interface PairedPhase { rate: number; wallNs: number; window: Window; vcpuWallNs?: number[] }

/**
 * The paired 1-worker / 2-worker runs of a scaling benchmark: kWarmupVms warm-up phases on each
 * side, then `reps` measured pairs, alternating which side goes first so a drift in the
 * machine's load does not favour one. `phase(side, k, name, hist)` runs phase k on one side.
 */
async function pairedRuns(o: BenchOptions, reps: number, phase: (workers: 1 | 2, k: number, name: string, hist: string) => Promise<PairedPhase>) {
  const samples: Record<string, unknown>[] = [];
  const r1: number[] = [];
  const r2: number[] = [];
  const ratios: number[] = [];
  const w1: Window[] = [];
  const w2: Window[] = [];
  const warm: string[] = [];
  for (let k = 0; k < kWarmupVms; k++) {
    const a = await phase(1, k, `warmup-${k}`, 'warmup.page_fault');
    const b = await phase(2, k, `warmup-${k}`, 'warmup.page_fault');
    warm.push(`1 worker ${(a.rate / 1e6).toFixed(3)} M/s, 2 workers ${(b.rate / 1e6).toFixed(3)} M/s`);
  }
  o.log(`  warm-up: ${warm.join('; ')}`);
  for (let i = 1; i <= reps; i++) {
    const k = kWarmupVms + i - 1;
    const first = i % 2 === 1;
    const p1 = first ? await phase(1, k, `measure-${i}`, 'fault-4k.page_fault') : null;
    const p2 = await phase(2, k, `measure-${i}`, 'fault-4k.page_fault');
    const q1 = p1 ?? (await phase(1, k, `measure-${i}`, 'fault-4k.page_fault'));
    r1.push(q1.rate);
    r2.push(p2.rate);
    ratios.push(p2.rate / q1.rate);
    w1.push(q1.window);
    w2.push(p2.window);
    samples.push({
      rep: i, oneWorker: { faultsPerSec: round(q1.rate, 0), wallNs: Math.round(q1.wallNs), window: q1.window },
      twoWorkers: { faultsPerSec: round(p2.rate, 0), wallNs: Math.round(p2.wallNs), vcpuWallNs: p2.vcpuWallNs, window: p2.window },
      ratio: round(p2.rate / q1.rate, 3),
    });
    o.log(`  pair ${i}/${reps}: 1 worker ${(q1.rate / 1e6).toFixed(3)} M/s, 2 workers ${(p2.rate / 1e6).toFixed(3)} M/s, ratio ${(p2.rate / q1.rate).toFixed(3)}` +
      `${q1.window.noisy || p2.window.noisy ? `  [noisy: ${[...q1.window.notes, ...p2.window.notes].join('; ')}]` : ''}`);
  }
  return { samples, r1, r2, ratios, w1, w2 };
}

export const fault4kScaling: Benchmark = {
  name: 'fault-4k-2workers-scaling',
  description: '2 VMs x 1 vCPU x 2 GiB each: faults/s on 2 workers over the same on 1 worker (paired runs, alternating)',
  async run(o: BenchOptions): Promise<BenchResult> {
    const reps = o.quick ? 3 : 5;
    const bytes = o.quick ? 256 * MiB : 2 * GiB;
    const n = 2 * (kWarmupVms + reps);
    const w0 = openWindow();
    // Two workers: shards are contiguous halves (VMs 0..n/2-1 on worker 0, n/2.. on worker 1),
    // so phase k pairs VM k with VM n/2+k, one per worker. One worker: phase k runs 2k, 2k+1.
    // Phases 0..kWarmupVms-1 warm up, the rest are measured.
    const two = new PhasedRun(config(n, bytes, 2, o.seed));
    const one = new PhasedRun(config(n, bytes, 1, o.seed));
    const half = n / 2;
    const pairTwo = (k: number) => [k, half + k];
    const pairOne = (k: number) => [2 * k, 2 * k + 1];
    if (two.runner.shards[0]!.some((r) => r.vm >= half) || two.runner.shards[1]!.some((r) => r.vm < half)) {
      throw new Error('unexpected Runner sharding: the 2-worker pairs would share a worker');
    }
    let runs: Awaited<ReturnType<typeof pairedRuns>>;
    try {
      runs = await pairedRuns(o, reps, (side, k, name, hist) => (side === 1 ? one.phase(name, pairOne(k), hist) : two.phase(name, pairTwo(k), hist)));
    } finally {
      await one.close();
      await two.close();
    }
    const h1 = one.histograms('fault-4k.page_fault');
    const h2 = two.histograms('fault-4k.page_fault');
    one.destroy();
    two.destroy();
    const { samples, r1, r2, ratios, w1, w2 } = runs;
    const ratio = repeatedFigure('fault-4k-2workers-scaling', ratios, 'x', 'higher', [...w1, ...w2], o.quick ? undefined : atLeast(1.8, 'x'));
    if (o.quick) ratio.notes.push('quick: 256 MiB per VM, no target');
    const f2 = repeatedFigure('fault-4k-2vms-2workers', r2, 'faults/s', 'higher', w2);
    const f1 = repeatedFigure('fault-4k-2vms-1worker', r1, 'faults/s', 'higher', w1);
    return {
      name: this.name, description: this.description, seed: o.seed,
      config: { vms: 2, vcpus: 1, bytesPerVcpu: bytes, backing: 'anonymous', workers: [1, 2], wallEvery: kWallEvery, sliceAccesses: kSlice, repetitions: reps, warmupPhases: kWarmupVms },
      figures: [ratio, f2, f1], window: closeWindow(w0, 2), samples,
      details: {
        medianOfPairRatios: round(ratio.value, 3), ratioOfMedians: round(f2.value / f1.value, 3), histograms2Workers: h2, histograms1Worker: h1,
      },
      noisy: ratio.noisy || f1.noisy || f2.noisy, notes: [...ratio.notes],
    };
  },
};

/**
 * One VM's vCPUs in parallel: 1 VM x 2 vCPUs, each vCPU demand-paging its own fresh 1 GiB per
 * phase (the VM holds a region per vCPU and phase, so every phase faults in memory nothing has
 * touched, in a VM whose upper page-table levels are shared by both vCPUs), on 2 workers (the
 * Runner's contiguous shards put vCPU 0 on worker 0 and vCPU 1 on worker 1) against the same
 * on 1 worker. This is where the VM-wide lines (mmu_lock, page stats) used to bounce.
 */
export const fault4k1vm2vcpusScaling: Benchmark = {
  name: 'fault-4k-1vm-2vcpus-scaling',
  description: '1 VM x 2 vCPUs, 1 GiB of fresh memory per vCPU per phase: faults/s on 2 workers over the same on 1 worker (paired runs, alternating)',
  async run(o: BenchOptions): Promise<BenchResult> {
    const reps = o.quick ? 3 : 5;
    const bytes = o.quick ? 128 * MiB : GiB;
    const phases = kWarmupVms + reps;
    const cfg = (workers: number): MemstressConfig => ({ ...config(1, bytes * phases, workers, o.seed), vcpus: 2 });
    const one = new PhasedRun(cfg(1));
    const two = new PhasedRun(cfg(2));
    if (two.runner.shards[0]!.length !== 1 || two.runner.shards[1]!.length !== 1) throw new Error('unexpected Runner sharding: the two vCPUs would share a worker');
    const pagesPerPhase = bytes / 4096;
    const w0 = openWindow();
    const run = async (r: PhasedRun, k: number, name: string, hist: string) => {
      const { vms, layout } = r.setup;
      const before = vms[0]!.vcpuStats().reduce((s, v) => s + v.pf_taken, 0);
      const w = openWindow();
      const out = await r.runner.phase(name, (ref) => {
        const s = memstressStream(r.c, layout, ref, vms[0]!.id, 'sequential', 100, 1);
        return { ...s, baseGfn: s.baseGfn + k * pagesPerPhase, pages: pagesPerPhase };
      }, hist);
      const window = closeWindow(w, r.c.workers);
      const faults = vms[0]!.vcpuStats().reduce((s, v) => s + v.pf_taken, 0) - before;
      if (faults !== 2 * pagesPerPhase) throw new Error(`${name}: ${faults} faults taken, expected ${2 * pagesPerPhase}`);
      return { rate: faults / (out.wallNs / 1e9), wallNs: out.wallNs, window };
    };
    let runs: Awaited<ReturnType<typeof pairedRuns>>;
    try {
      runs = await pairedRuns(o, reps, (side, k, name, hist) => run(side === 1 ? one : two, k, name, hist));
      // A rate measured on a broken MMU is not a result.
      for (const r of [one, two]) {
        const a = audit(r.setup.host, r.setup.vms);
        if (!a.ok) throw new Error(`audit failed: ${a.violations[0]!.kind}: ${a.violations[0]!.detail}`);
      }
    } finally {
      await one.close();
      await two.close();
    }
    one.destroy();
    two.destroy();
    const { samples, r1, r2, ratios, w1, w2 } = runs;
    const ratio = repeatedFigure('fault-4k-1vm-2vcpus-scaling', ratios, 'x', 'higher', [...w1, ...w2], o.quick ? undefined : atLeast(1.8, 'x'));
    if (o.quick) ratio.notes.push('quick: 128 MiB per vCPU and phase, no target');
    const f2 = repeatedFigure('fault-4k-1vm-2vcpus-2workers', r2, 'faults/s', 'higher', w2);
    const f1 = repeatedFigure('fault-4k-1vm-2vcpus-1worker', r1, 'faults/s', 'higher', w1);
    return {
      name: this.name, description: this.description, seed: o.seed,
      config: { vms: 1, vcpus: 2, bytesPerVcpuPerPhase: bytes, backing: 'anonymous', workers: [1, 2], wallEvery: kWallEvery, sliceAccesses: kSlice, repetitions: reps, warmupPhases: kWarmupVms },
      figures: [ratio, f2, f1], window: closeWindow(w0, 2), samples,
      details: { medianOfPairRatios: round(ratio.value, 3), ratioOfMedians: round(f2.value / f1.value, 3), auditOk: true },
      noisy: ratio.noisy || f1.noisy || f2.noisy, notes: [...ratio.notes],
    };
  },
};
