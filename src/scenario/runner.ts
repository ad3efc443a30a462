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
import type { StreamSpec } from '../workload/memstress.js';
import type { PhaseTask, PhaseTaskResult, VcpuPhaseResult, VcpuWork } from './worker-runtime.js';

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
  readonly shards: VcpuRef[][];
  readonly counters = new Float64Array(kOpCount);
  readonly histograms = new HistogramMerger();
  readonly phases: PhaseOutcome[] = [];
  private closed = false;

  constructor(readonly host: Host, readonly vms: Vm[], readonly opts: RunnerOptions) {
    const n = opts.workers;
    this.pool = new Piscina({
      filename: kWorkerFile, minThreads: n, maxThreads: n, idleTimeout: Infinity, concurrentTasksPerWorker: 1,
      // Worker heaps stay small: guest state lives in SABs, outside the V8 heap.
      resourceLimits: { maxOldGenerationSizeMb: 512 },
    });
    const all: VcpuRef[] = [];
    vms.forEach((vm, i) => {
      for (let v = 0; v < vm.nrVcpus; v++) all.push({ vm: i, vcpu: v });
    });
    this.shards = [];
    const per = Math.ceil(all.length / n);
    for (let s = 0; s < n; s++) this.shards.push(all.slice(s * per, (s + 1) * per));
  }

  /** Run one phase: every vCPU executes the stream `streamFor` gives it; resolves at the barrier. */
  async phase(name: string, streamFor: (ref: VcpuRef) => StreamSpec, faultHistogram = `${name}.page_fault`): Promise<PhaseOutcome> {
    const host = this.host.handle;
    const vmHandles = this.vms.map((vm) => vm.handle());
    const t0 = performance.now();
    const tasks = this.shards.map((refs, slot) => {
      if (refs.length === 0) return null;
      const work: VcpuWork[] = refs.map((r) => ({ vm: r.vm, vcpu: r.vcpu, stream: streamFor(r) }));
      const task: PhaseTask = {
        runId: this.runId, slot, phase: name, host, vms: vmHandles, work, cost: this.opts.cost,
        sliceAccesses: this.opts.sliceAccesses ?? 4096, wallEvery: this.opts.wallEvery ?? 16, faultHistogram,
      };
      return this.pool.run(task) as Promise<PhaseTaskResult>;
    });
    let results: PhaseTaskResult[];
    try {
      results = (await Promise.all(tasks.filter((t) => t !== null))) as PhaseTaskResult[];
    } catch (e) {
      await this.close();
      throw e;
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
