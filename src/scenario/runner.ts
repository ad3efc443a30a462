/**
 * The runner: one emulated host, its VMs, and a piscina pool of N pinned workers. vCPUs are
 * sharded over the workers in contiguous blocks (VM order), so with at least as many VMs as
 * workers each VM stays on one worker, and a VM with more vCPUs than a worker can hold spans
 * several — that is where shared-memory races happen. Each phase is one task per worker; the
 * main thread awaiting all of them is the barrier between phases, as memstress's are.
 *
 * A worker that throws fails the phase: the pool is destroyed and the error propagates, so no
 * result is ever assembled from a partial phase.
 */
import { Piscina } from 'piscina';
import { fileURLToPath } from 'node:url';
import { randomUUID } from 'node:crypto';
import type { Host } from '../host/host.js';
import type { Vm } from '../kvm/vm.js';
import { addCounters, modeledNs } from '../metrics/counters.js';
import { kOpCount } from '../metrics/ops.js';
import { HistogramMerger } from '../metrics/histogram.js';
import type { GuestSpec } from '../workload/guest.js';
import { allocSab } from '../shm/arena.js';
import { type PhaseTask, type PhaseTaskResult, type VcpuPhaseResult, type VcpuWork, PhaseSync } from './worker-runtime.js';

export interface VcpuRef {
  /** Index into runner.vms */
  vm: number;
  vcpu: number;
}

export interface PhaseOutcome {
  name: string;
  wallNs: number;
  /** Modeled: vCPUs run in parallel, so the phase takes as long as its slowest vCPU. */
  modeledNs: number;
  vcpus: VcpuPhaseResult[];
  counters: Float64Array;
}

export interface RunnerOptions {
  workers: number;
  cost: Float64Array;
  sliceAccesses?: number;
  /** Time 1 in N faults in wall time (default 16, as the CLI); all are timed in modeled time. */
  wallEvery?: number;
}

const kWorkerFile = fileURLToPath(new URL('../../workers/vcpu-worker.js', import.meta.url));

export class Runner {
  readonly pool: Piscina;
  readonly runId = randomUUID();
  shards: VcpuRef[][] = [];
  readonly counters = new Float64Array(kOpCount);
  readonly histograms = new HistogramMerger();
  readonly phases: PhaseOutcome[] = [];
  private closed = false;

  constructor(readonly host: Host, public vms: Vm[], readonly opts: RunnerOptions) {
    const n = opts.workers;
    this.pool = new Piscina({
      filename: kWorkerFile, minThreads: n, maxThreads: n, idleTimeout: Infinity, concurrentTasksPerWorker: 1,
      // Worker heaps stay small: guest state lives in SABs, outside the V8 heap.
      resourceLimits: { maxOldGenerationSizeMb: 512 },
    });
    this.shard();
  }

  private shard(): void {
    const n = this.opts.workers;
    const all: VcpuRef[] = [];
    this.vms.forEach((vm, i) => {
      for (let v = 0; v < vm.nrVcpus; v++) all.push({ vm: i, vcpu: v });
    });
    this.shards = [];
    const per = Math.ceil(all.length / n);
    for (let s = 0; s < n; s++) this.shards.push(all.slice(s * per, (s + 1) * per));
  }

  /**
   * Run the next phases on other VMs, keeping the warm workers: a scenario that builds a VM per
   * test run (memslot_perf_test) uses one pool for all of them. VM ids must be new: workers
   * key their attached views by id (and drop those of VMs no longer run).
   */
  replaceVms(vms: Vm[]): void {
    this.vms = vms;
    this.shard();
  }

  /**
   * Run one phase: every vCPU executes the guest program `streamFor` gives it (a memstress stream
   * or a selftest's guest code, workload/guest.ts); resolves at the barrier.
   * `vmmStep`, if given, is VMM-thread work done while the vCPUs run (the dirty ring reaper, -e's
   * disable). On one worker it runs at fixed points of vCPU progress — after every round of
   * slices, with the worker parked (worker-runtime.ts) — so a seed gives the same interleaving,
   * counters and modeled times every run; on several workers it runs freely alongside them, as a
   * VMM thread does, and only the outcome's invariants are reproducible. `opts.vmmAlongside`
   * runs it freely on one worker too (wall time as a selftest's, which overlaps host and guest).
   */
  async phase(name: string, streamFor: (ref: VcpuRef) => GuestSpec, faultHistogram = `${name}.page_fault`, vmmStep?: () => void, opts: { vmmAlongside?: boolean } = {}): Promise<PhaseOutcome> {
    const host = this.host.handle;
    const vmHandles = this.vms.map((vm) => vm.handle());
    const t0 = performance.now();
    const busy = this.shards.filter((refs) => refs.length > 0).length;
    const sync = vmmStep !== undefined && busy === 1 && opts.vmmAlongside !== true ? new Int32Array(allocSab(4)) : null;
    // Each task gets a VMA port per VM it runs, so memory the VMM maps during the phase (for
    // slots it creates meanwhile) reaches the worker (Vm.watchVmas()).
    const unwatch: (() => void)[] = [];
    const tasks = this.shards.map((refs, slot) => {
      if (refs.length === 0) return null;
      const work: VcpuWork[] = refs.map((r) => ({ vm: r.vm, vcpu: r.vcpu, stream: streamFor(r) }));
      const vmaPorts = [...new Set(refs.map((r) => r.vm))].map((vm) => {
        const w = this.vms[vm]!.watchVmas();
        unwatch.push(w.unwatch);
        return { vm, port: w.port };
      });
      const task: PhaseTask = {
        runId: this.runId, slot, phase: name, host, vms: vmHandles, work, cost: this.opts.cost,
        sliceAccesses: this.opts.sliceAccesses ?? 4096, wallEvery: this.opts.wallEvery ?? 16, faultHistogram,
        sync: sync === null ? null : (sync.buffer as SharedArrayBuffer), vmaPorts,
      };
      return this.pool.run(task, { transferList: vmaPorts.map((p) => p.port) }) as Promise<PhaseTaskResult>;
    });
    let results: PhaseTaskResult[];
    try {
      const all = Promise.all(tasks.filter((t) => t !== null)) as Promise<PhaseTaskResult[]>;
      if (vmmStep !== undefined) {
        let settled = false;
        const watched = all.finally(() => (settled = true));
        // A rejection is handled by the await below; do not let it go unhandled meanwhile.
        watched.catch(() => {});
        if (sync !== null) await vmmAtRounds(sync, vmmStep, () => settled);
        else await vmmAlongside(vmmStep, () => settled);
      }
      results = await all;
    } catch (e) {
      await this.close();
      throw e;
    } finally {
      for (const u of unwatch) u();
    }
    const wallNs = (performance.now() - t0) * 1e6;
    const counters = new Float64Array(kOpCount);
    const vcpus: VcpuPhaseResult[] = [];
    for (const r of results) {
      addCounters(counters, r.counters);
      vcpus.push(...r.vcpus);
      this.histograms.add(r.histograms);
    }
    addCounters(this.counters, counters);
    const outcome: PhaseOutcome = { name, wallNs, modeledNs: Math.max(0, ...vcpus.map((v) => v.modeledNs)), vcpus, counters };
    this.phases.push(outcome);
    return outcome;
  }

  /** Record a VMM-side step (main thread) as its own phase. */
  vmmPhase(name: string, wallNs: number, counters: Float64Array): PhaseOutcome {
    const outcome: PhaseOutcome = { name, wallNs, modeledNs: modeledNs(counters, this.opts.cost), vcpus: [], counters };
    addCounters(this.counters, counters);
    this.phases.push(outcome);
    return outcome;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.pool.destroy();
  }
}

type WaitAsync = (a: Int32Array, i: number, v: number, timeoutMs: number) => { async: boolean; value: Promise<string> | string };
const waitAsync = (Atomics as unknown as { waitAsync: WaitAsync }).waitAsync;

/**
 * One worker: run `step` each time the worker parks between rounds, then release it (the pair:
 * the worker's seq-cst store of kSyncParked / our load of it, our store of kSyncRunning / its
 * wait on that word). Ends when the worker is done or the phase settled (a worker threw).
 */
async function vmmAtRounds(sync: Int32Array, step: () => void, settled: () => boolean): Promise<void> {
  for (;;) {
    const state = Atomics.load(sync, 0);
    if (state === PhaseSync.kSyncDone || settled()) return;
    if (state === PhaseSync.kSyncParked) {
      step();
      Atomics.store(sync, 0, PhaseSync.kSyncRunning);
      Atomics.notify(sync, 0);
      continue;
    }
    // Bounded: a worker that threw never writes kSyncDone; `settled` notices that.
    const r = waitAsync(sync, 0, PhaseSync.kSyncRunning, 50);
    if (r.async) await r.value;
  }
}

/** Several workers: the VMM thread runs `step` as often as the event loop lets it, alongside them. */
async function vmmAlongside(step: () => void, settled: () => boolean): Promise<void> {
  while (!settled()) {
    step();
    await new Promise((r) => setTimeout(r, 0));
  }
}
