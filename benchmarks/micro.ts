/**
 * tinybench micro-benchmarks of the pieces the fault path is made of, in the main thread with
 * the compiled sources (no worker, no piscina):
 *
 *   micro-tdp-fault-prepopulated  vcpu.run() over a fresh gfn range whose host pages already
 *                                 exist: VM exit + kvm_tdp_page_fault + SPTE install, no folio
 *                                 allocation or zeroing (hostFault finds the page).
 *   micro-ept-walk-hit            eptWalk() of a present 4K leaf (A/D already set), 4 levels.
 *   micro-buddy-order0/order9     Zone.alloc + Zone.free of 4 KiB / 2 MiB blocks (zone lock taken,
 *                                 uncontended; no pcp cache in front).
 *   micro-hist-record             recordValue on the harness's WASM HDR histogram (64-bit
 *                                 buckets, 3 digits), log-uniform values 100 ns .. 6 ms.
 *
 * Each tinybench iteration does a batch of K operations (the timer and the call cost ~tens of ns,
 * as much as one operation), and the figure is the median iteration throughput x K, in
 * operations/s, with tinybench's rme. Inputs are seeded.
 */
import { Bench, type Statistics } from 'tinybench';
import { Host } from '../src/host/host.js';
import { Zone } from '../src/host/buddy.js';
import { hostFault } from '../src/host/mm.js';
import { Vm, type ThreadCtx } from '../src/kvm/vm.js';
import type { AccessSource } from '../src/kvm/vcpu.js';
import { eptWalk, WalkResult, walkOut } from '../src/kvm/mmu/tdp/walk.js';
import { Metrics } from '../src/metrics/counters.js';
import { costVector, loadCostModel } from '../src/metrics/cost-model.js';
import { newHistogram } from '../src/metrics/histogram.js';
import { xorshift32 } from '../src/workload/random.js';
import {
  closeWindow, openWindow, round, type BenchOptions, type BenchResult, type Benchmark, type Figure,
} from './lib.js';

const MiB = 2 ** 20;

/** Sequential stores to [g, end): the same shape as a demand-paging stream, no allocation. */
class RangeSource implements AccessSource {
  write = true;
  readonly iteration = 1;
  constructor(public g: number, public end: number) {}
  next(): number {
    return this.g < this.end ? this.g++ : -1;
  }
}

/** Blackhole: results folded into a global so the JIT cannot drop the work. */
export let sink = 0;

interface MicroSpec {
  name: string;
  what: string;
  /** Operations per tinybench iteration. */
  batch: number;
  unit: string;
  /** Build the state; returns the task and hooks. */
  setup(o: BenchOptions): { fn: () => void; beforeEach?: () => void; teardown?: () => void; check?: () => Record<string, unknown> };
}

function threadCtx(host: Host): ThreadCtx {
  return { metrics: new Metrics(costVector(loadCostModel('default'))), hostThread: host.thread() };
}

/** One VM, one slot of `bytes` anonymous memory at gfn `base`, one vCPU. */
function oneVm(bytes: number, base: number) {
  const host = Host.create({ memory: bytes + 64 * MiB });
  const ctx = threadCtx(host);
  const vm = Vm.create(host, 0, ctx, { maxVcpus: 1 });
  const hva = vm.mmap({ size: bytes, backing: 'anonymous' });
  vm.setUserMemoryRegion2({ slot: 1, flags: 0, guestPhysAddr: base * 4096, memorySize: bytes, userspaceAddr: hva });
  const vcpu = vm.createVcpu();
  return { host, ctx, vm, vcpu, pages: bytes / 4096 };
}

const kBaseGfn = 1 << 20;

const specs: MicroSpec[] = [
  {
    name: 'micro-tdp-fault-prepopulated',
    what: 'vcpu.run() over a fresh 512-page range, host pages already populated (TDP fault + SPTE install per page)',
    batch: 512,
    unit: 'faults/s',
    setup(o) {
      const bytes = (o.quick ? 256 : 1024) * MiB;
      const { ctx, vm, vcpu, pages } = oneVm(bytes, kBaseGfn);
      // Populate every host page up front (what the VMM's own touch, or a prior run, leaves).
      const vma = vm.vmas[0]!;
      for (let i = 0; i < pages; i++) if (hostFault(ctx.hostThread, vma, i) < 0) throw new Error('host OOM while pre-populating');
      ctx.hostThread.drain();
      const src = new RangeSource(kBaseGfn, kBaseGfn);
      let cursor = 0;
      let faults0 = vcpu.getStats().pf_taken;
      let retired = 0;
      let passes = 0;
      return {
        beforeEach() {
          if (cursor + 512 > pages) {
            // Range used up: zap the SPTEs (mmu_notifier invalidation, host pages kept) and restart.
            vm.invalidateRange(kBaseGfn, kBaseGfn + pages, { unmap: false });
            cursor = 0;
            passes++;
          }
          src.g = kBaseGfn + cursor;
          src.end = src.g + 512;
          cursor += 512;
        },
        // (tinybench calls the task once without beforeEach to see whether it is async: the
        // range is then empty and run() returns at once.)
        fn() {
          retired += vcpu.run(src, 1024, null);
        },
        check() {
          const faults = vcpu.getStats().pf_taken - faults0;
          faults0 += faults;
          // Every access was to a page with no SPTE: one fault each.
          if (faults !== retired) throw new Error(`${retired} accesses but ${faults} faults`);
          return { faults, passes, regionPages: pages };
        },
      };
    },
  },
  {
    name: 'micro-ept-walk-hit',
    what: 'eptWalk() of present 4K leaves at 4096 seeded random gfns of a 1 GiB mapping',
    batch: 4096,
    unit: 'walks/s',
    setup(o) {
      const bytes = (o.quick ? 256 : 1024) * MiB;
      const { vcpu, vm, pages } = oneVm(bytes, kBaseGfn);
      if (vcpu.run(new RangeSource(kBaseGfn, kBaseGfn + pages), pages + 1, null) !== pages) throw new Error('populate failed');
      const gfns = new Int32Array(4096);
      let r = o.seed || 1;
      for (let i = 0; i < gfns.length; i++) {
        r = xorshift32(r);
        gfns[i] = kBaseGfn + (r % pages);
      }
      const pt = vm.pool.pt;
      const root = vm.root;
      return {
        fn() {
          let acc = 0;
          for (let i = 0; i < 4096; i++) {
            if (eptWalk(pt, root, gfns[i]!, false) !== WalkResult.kWalkOk) throw new Error('walk missed');
            acc = (acc + walkOut.pfn) | 0;
          }
          sink ^= acc;
        },
      };
    },
  },
  ...[0, 9].map((order): MicroSpec => ({
    name: `micro-buddy-order${order}`,
    what: `Zone.alloc(${order}) x 64 then Zone.free x 64 on a 4 GiB zone (one alloc+free pair = 1 op)`,
    batch: 64,
    unit: 'alloc+free/s',
    setup() {
      const zone = Zone.create(0, 0, 1 << 20);
      const held = new Int32Array(64);
      return {
        fn() {
          for (let i = 0; i < 64; i++) {
            const p = zone.alloc(order);
            if (p < 0) throw new Error('zone empty');
            held[i] = p;
          }
          for (let i = 0; i < 64; i++) zone.free(held[i]!, order);
          sink ^= held[63]!;
        },
        check() {
          if (zone.freePages() !== 1 << 20) throw new Error(`zone leaked: ${zone.freePages()} free of ${1 << 20}`);
          return { freePages: zone.freePages() };
        },
      };
    },
  })),
  {
    name: 'micro-hist-record',
    what: 'recordValue x 4096 on the harness histogram (hdr-histogram-js WASM, 64-bit, 3 digits), log-uniform 100 ns..6 ms',
    batch: 4096,
    unit: 'records/s',
    setup(o) {
      const h = newHistogram();
      const values = new Float64Array(4096);
      let r = o.seed || 1;
      for (let i = 0; i < values.length; i++) {
        r = xorshift32(r);
        values[i] = Math.round(100 * Math.exp((r / 2 ** 32) * Math.log(6e6 / 100)));
      }
      return {
        fn() {
          for (let i = 0; i < 4096; i++) h.recordValue(values[i]!);
        },
        check() {
          return { totalCount: h.totalCount, p50: h.getValueAtPercentile(50) };
        },
        teardown() {
          h.destroy();
        },
      };
    },
  },
];

function statsOf(s: Statistics, scale: number): Record<string, number> {
  return {
    p50: round(s.p50 * scale, 3), mean: round(s.mean * scale, 3), min: round(s.min * scale, 3), max: round(s.max * scale, 3),
    p99: round(s.p99 * scale, 3), rmePct: round(s.rme, 2), samples: s.samplesCount,
  };
}

function microBenchmark(spec: MicroSpec): Benchmark {
  return {
    name: spec.name,
    description: spec.what,
    async run(o: BenchOptions): Promise<BenchResult> {
      const w0 = openWindow();
      const st = spec.setup(o);
      const bench = new Bench({
        name: spec.name, time: o.quick ? 250 : 1000, warmupTime: o.quick ? 100 : 300, warmupIterations: 16, iterations: 64,
        timestampProvider: 'hrtimeNow', throws: true,
      });
      bench.add(spec.name, st.fn, st.beforeEach ? { beforeEach: st.beforeEach } : {});
      const wr = openWindow();
      bench.runSync();
      const window = closeWindow(wr, 1);
      const check = st.check?.() ?? {};
      st.teardown?.();
      const res = bench.getTask(spec.name)!.result;
      if (res.state !== 'completed') throw new Error(`tinybench task ${res.state}${res.state === 'errored' ? `: ${res.error.message}` : ''}`);
      const thr = res.throughput;
      const opsPerSec = thr.p50 * spec.batch;
      const nsPerOp = (res.latency.p50 * 1e6) / spec.batch;
      o.log(`  ${(opsPerSec / 1e6).toFixed(3)} M ${spec.unit} (${nsPerOp.toFixed(1)} ns/op, rme ${thr.rme.toFixed(2)}%, ${thr.samplesCount} samples)`);
      const notes: string[] = [];
      if (thr.rme > 5) notes.push(`rme ${thr.rme.toFixed(1)}%`);
      if (window.noisy) notes.push(...window.notes);
      const fig: Figure = {
        name: spec.name, value: round(opsPerSec, 0), unit: spec.unit, better: 'higher',
        stats: {
          n: thr.samplesCount, median: round(opsPerSec, 0), min: round(thr.min * spec.batch, 0), max: round(thr.max * spec.batch, 0),
          mean: round(thr.mean * spec.batch, 0), spreadPct: round(((thr.max - thr.min) / thr.p50) * 100, 1), rmePct: round(thr.rme, 2),
        },
        noisy: notes.length > 0, notes,
      };
      return {
        name: spec.name, description: spec.what, seed: o.seed,
        config: { batch: spec.batch, timeMs: o.quick ? 250 : 1000, timestampProvider: 'hrtimeNow' },
        figures: [fig], window: closeWindow(w0, 1), samples: [],
        details: {
          nsPerOpP50: round(nsPerOp, 2), throughputPerOp: statsOf(thr, spec.batch), latencyNsPerOp: statsOf(res.latency, 1e6 / spec.batch),
          benchWindow: window, check,
        },
        noisy: fig.noisy, notes,
      };
    },
  };
}

export const microBenchmarks: Benchmark[] = specs.map(microBenchmark);
