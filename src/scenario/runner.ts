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
import { ConversionGuest } from '../workload/conversion-guest.js';
import { type ConversionVmmSpec, type ConversionVmmStats, emptyConversionStats } from './conversion-vmm.js';
import { allocSab } from '../shm/arena.js';
import { type PhaseTask, type PhaseTaskResult, type VcpuPhaseResult, type VcpuWork, PhaseSync } from './worker-runtime.js';
import type { PhaseObserver, PhaseProbe } from './phase-observer.js';
import { statsSnapshot } from './assemble.js';
import { BoardLayout, boardRing, type UffdMode, type Userfaultfd } from '../host/userfaultfd.js';
import type { UffdReaderResult, UffdReaderStats, UffdReaderTask, UffdReaderWork } from './uffd-reader-runtime.js';

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
  /** The userfaultfd readers' work in this phase (null without readers). */
  uffdReaders: UffdReaderStats[] | null;
  /** What the vCPU threads' conversion handlers did (summed over workers). */
  conversions: ConversionVmmStats;
}

/**
 * The VMM's userfaultfd reader threads for the phases of a run: `readers` per uffd, the
 * (uffd, reader) pairs spread round-robin over `threads` worker threads.
 */
export interface UffdReaderConfig {
  /** Each uffd, its VM (index into runner.vms), the vCPUs that fault on it, and its readers. */
  uffds: { uffd: Userfaultfd; vm: number; vcpus: number[]; mode: UffdMode; readers: number }[];
  /**
   * Dedicated reader threads, or 0: the readers run on the vCPU workers, each uffd's on the
   * workers of its vCPUs (reader and vCPU threads sharing the host CPUs). Then `readerBoard` must
   * be `board`, the vCPU workers' wake board, which the uffds ring for messages.
   */
  threads: number;
  board: SharedArrayBuffer;
  readerBoard: SharedArrayBuffer;
  /** demand_paging_size in 4K pages. */
  resolvePages: number;
  delayNs: number;
  realDelay: boolean;
}

export interface RunnerOptions {
  workers: number;
  cost: Float64Array;
  sliceAccesses?: number;
  /** Time 1 in N faults in wall time (default 16, as the CLI); all are timed in modeled time. */
  wallEvery?: number;
  /** Told of phases as they start and end (the CLI's live progress, --watch). */
  observer?: PhaseObserver;
  uffd?: UffdReaderConfig;
}

const kWorkerFile = fileURLToPath(new URL('../../workers/vcpu-worker.js', import.meta.url));
const kReaderFile = fileURLToPath(new URL('../../workers/uffd-reader-worker.js', import.meta.url));

export class Runner {
  readonly pool: Piscina;
  readonly runId = randomUUID();
  shards: VcpuRef[][] = [];
  readonly counters = new Float64Array(kOpCount);
  readonly histograms = new HistogramMerger();
  readonly phases: PhaseOutcome[] = [];
  private closed = false;
  /** Reader threads' pool and each thread's share of the (uffd, reader) pairs. */
  readonly readerPool: Piscina | null = null;
  private readonly readerWork: UffdReaderWork[][] = [];

  constructor(readonly host: Host, public vms: Vm[], readonly opts: RunnerOptions) {
    const n = opts.workers;
    this.pool = new Piscina({
      filename: kWorkerFile, minThreads: n, maxThreads: n, idleTimeout: Infinity, concurrentTasksPerWorker: 1,
      // Worker heaps stay small: guest state lives in SABs, outside the V8 heap.
      resourceLimits: { maxOldGenerationSizeMb: 512 },
    });
    this.shard();
    opts.observer?.runStart(() => statsSnapshot(this.vms).total as unknown as Record<string, number>);
    const u = opts.uffd;
    if (u !== undefined) {
      if (!(u.threads >= 0 && u.threads <= 31 && n <= 31)) throw new RangeError(`uffd readers run on at most 31 threads (bits of the reader board), got ${u.threads} reader threads, ${n} workers`);
      if (u.threads > 0) {
        this.readerPool = new Piscina({
          filename: kReaderFile, minThreads: u.threads, maxThreads: u.threads, idleTimeout: Infinity, concurrentTasksPerWorker: 1,
          resourceLimits: { maxOldGenerationSizeMb: 512 },
        });
      }
      const hosts = u.threads > 0 ? u.threads : n;
      for (let t = 0; t < hosts; t++) this.readerWork.push([]);
      const shardOf = new Map<string, number>();
      this.shards.forEach((refs, s) => refs.forEach((r) => shardOf.set(`${r.vm}/${r.vcpu}`, s)));
      let pair = 0;
      for (const e of u.uffds) {
        let mask = 0;
        // Inline: the workers that run this uffd's vCPUs, in order.
        const own = u.threads > 0 ? null : [...new Set(e.vcpus.map((v) => shardOf.get(`${e.vm}/${v}`)!))].sort((a, b) => a - b);
        for (let r = 0; r < e.readers; r++, pair++) {
          const t = own === null ? pair % u.threads : own[r % own.length]!;
          mask |= 1 << t;
          const list = this.readerWork[t]!;
          const last = list[list.length - 1];
          if (last !== undefined && last.uffd.id === e.uffd.id) last.readers++;
          else list.push({ uffd: e.uffd.handle, mode: e.mode, readers: 1, firstReader: r, readerStride: own === null ? u.threads : own.length, vmas: [] });
        }
        e.uffd.setReaders(mask);
      }
    }
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

  /** What an observer reads of a running phase: accesses and pf_taken of its vCPUs since it started. */
  private probe(name: string, work: VcpuWork[]): PhaseProbe {
    const vcpus = work.map((w) => this.vms[w.vm]!.vcpu(w.vcpu));
    const base = vcpus.map((v) => ({ accesses: v.accesses(), faults: v.pfTaken() }));
    // A selftest's guest program (memslot_perf_test's) runs until stopped: no total, no ETA.
    const totalAccesses = work.reduce((s, w) => s + (w.stream.kind === 'memslot-perf' ? 0 : w.stream.kind === 'conversion' ? ConversionGuest.length(w.stream) : (w.stream.accesses ?? w.stream.pages)), 0);
    return {
      name, totalAccesses, vcpus: vcpus.length,
      sample: () => {
        let accesses = 0;
        let faults = 0;
        for (let i = 0; i < vcpus.length; i++) {
          accesses += vcpus[i]!.accesses() - base[i]!.accesses;
          faults += vcpus[i]!.pfTaken() - base[i]!.faults;
        }
        return { accesses, faults };
      },
    };
  }

  /** A thread's share of the readers with the VMAs of each uffd's VMM process. */
  private readerWorkFor(slot: number): UffdReaderWork[] {
    const vmOf = new Map(this.opts.uffd!.uffds.map((e) => [e.uffd.id, e.vm]));
    return this.readerWork[slot]!.map((w) => ({ ...w, vmas: this.vms[vmOf.get(w.uffd.id)!]!.vmas.map((v) => v.handle) }));
  }

  /** Start the reader threads of a phase (uffd_setup_demand_paging()'s pthread_create()s). */
  private startReaders(phase: string): Promise<UffdReaderResult[]> | null {
    const u = this.opts.uffd;
    if (u === undefined || this.readerPool === null) return null;
    const rb = new Int32Array(u.readerBoard);
    Atomics.store(rb, BoardLayout.kStop, 0);
    return Promise.all(this.readerWork.map((_, slot) => {
      const task: UffdReaderTask = {
        slot, host: this.host.handle, readerBoard: u.readerBoard, resolvePages: u.resolvePages, delayNs: u.delayNs, realDelay: u.realDelay,
        cost: this.opts.cost, histogram: `${phase}.uffd_resolve`, work: this.readerWorkFor(slot),
      };
      return this.readerPool!.run(task) as Promise<UffdReaderResult>;
    }));
  }

  /** uffd_stop_demand_paging(): the vCPUs joined; every reader stops once it finds nothing. */
  private stopReaders(): void {
    const u = this.opts.uffd;
    if (u === undefined) return;
    const rb = new Int32Array(u.readerBoard);
    Atomics.store(rb, BoardLayout.kStop, 1);
    for (let t = 0; t < u.threads; t++) boardRing(rb, t);
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
  async phase(name: string, streamFor: (ref: VcpuRef) => GuestSpec, faultHistogram = `${name}.page_fault`, vmmStep?: () => void, opts: { vmmAlongside?: boolean; exits?: ConversionVmmSpec } = {}): Promise<PhaseOutcome> {
    const host = this.host.handle;
    const vmHandles = this.vms.map((vm) => vm.handle());
    const t0 = performance.now();
    const busy = this.shards.filter((refs) => refs.length > 0).length;
    const sync = vmmStep !== undefined && busy === 1 && opts.vmmAlongside !== true ? new Int32Array(allocSab(4)) : null;
    // Each task gets a VMA port per VM it runs, so memory the VMM maps during the phase (for
    // slots it creates meanwhile) reaches the worker (Vm.watchVmas()).
    const unwatch: (() => void)[] = [];
    const works = this.shards.map((refs) => refs.map((r): VcpuWork => ({ vm: r.vm, vcpu: r.vcpu, stream: streamFor(r) })));
    // The observer's starting point is read before any task is posted (a worker may start at once).
    const observer = this.opts.observer;
    observer?.phaseStart(this.probe(name, works.flat()));
    // vCPUs meet at the phase's start in modeled time too: the mmu_lock timeline starts empty.
    for (const vm of this.vms) vm.lockModel?.reset();
    const u = this.opts.uffd;
    const inline = u !== undefined && u.threads === 0;
    if (inline) Atomics.store(new Int32Array(u.board), BoardLayout.kLiveWorkers, busy);
    const tasks = this.shards.map((refs, slot) => {
      if (refs.length === 0) return null;
      const work = works[slot]!;
      const vmaPorts = [...new Set(refs.map((r) => r.vm))].map((vm) => {
        const w = this.vms[vm]!.watchVmas();
        unwatch.push(w.unwatch);
        return { vm, port: w.port };
      });
      const task: PhaseTask = {
        runId: this.runId, slot, phase: name, host, vms: vmHandles, work, cost: this.opts.cost,
        sliceAccesses: this.opts.sliceAccesses ?? 4096, wallEvery: this.opts.wallEvery ?? 16, faultHistogram, exits: opts.exits ?? null,
        sync: sync === null ? null : (sync.buffer as SharedArrayBuffer), vmaPorts, uffdLockstep: busy === 1 && u !== undefined && !inline,
        uffdReaders: !inline ? null : {
          work: this.readerWorkFor(slot), histogram: `${name}.uffd_resolve`, board: u.board, workers: this.shards.length,
          resolvePages: u.resolvePages, delayNs: u.delayNs, realDelay: u.realDelay, cost: this.opts.cost,
        },
      };
      return this.pool.run(task, { transferList: vmaPorts.map((p) => p.port) }) as Promise<PhaseTaskResult>;
    });
    let results: PhaseTaskResult[];
    let readerResults: UffdReaderResult[] | null = null;
    const readers = this.startReaders(name);
    // A failing reader fails the phase too (its vCPUs would sleep forever): race it against them.
    readers?.catch(() => {});
    try {
      const vcpuTasks = Promise.all(tasks.filter((t) => t !== null)) as Promise<PhaseTaskResult[]>;
      const all = readers === null ? vcpuTasks : Promise.race([vcpuTasks, readers.then(() => new Promise<never>(() => {}))]);
      if (vmmStep !== undefined) {
        let settled = false;
        const watched = all.finally(() => (settled = true));
        // A rejection is handled by the await below; do not let it go unhandled meanwhile.
        watched.catch(() => {});
        if (sync !== null) await vmmAtRounds(sync, vmmStep, () => settled);
        else await vmmAlongside(vmmStep, () => settled);
      }
      results = await all;
      this.stopReaders();
      if (readers !== null) readerResults = await readers;
    } catch (e) {
      this.stopReaders();
      await this.close();
      throw e;
    } finally {
      for (const u of unwatch) u();
      observer?.phaseEnd(name);
    }
    const wallNs = (performance.now() - t0) * 1e6;
    const counters = new Float64Array(kOpCount);
    const vcpus: VcpuPhaseResult[] = [];
    const conversions = emptyConversionStats();
    for (const r of results) {
      addCounters(counters, r.counters);
      vcpus.push(...r.vcpus);
      this.histograms.add(r.histograms);
      if (r.conversions !== null) for (const k of Object.keys(conversions) as (keyof ConversionVmmStats)[]) conversions[k] += r.conversions[k];
    }
    let uffdReaders: UffdReaderStats[] | null = null;
    if (inline) {
      uffdReaders = [];
      for (const r of results) uffdReaders.push(...r.uffdReaders!);
      uffdReaders.sort((a, b) => a.uffd - b.uffd || a.reader - b.reader);
    } else if (readerResults !== null) {
      uffdReaders = [];
      for (const r of readerResults) {
        addCounters(counters, r.counters);
        uffdReaders.push(...r.readers);
        this.histograms.add(r.histograms);
      }
      uffdReaders.sort((a, b) => a.uffd - b.uffd || a.reader - b.reader);
    }
    addCounters(this.counters, counters);
    const outcome: PhaseOutcome = { name, wallNs, modeledNs: phaseModeledNs(vcpus, uffdReaders, this.opts.uffd), vcpus, counters, uffdReaders, conversions };
    this.phases.push(outcome);
    return outcome;
  }

  /** Record a VMM-side step (main thread) as its own phase. */
  vmmPhase(name: string, wallNs: number, counters: Float64Array): PhaseOutcome {
    const outcome: PhaseOutcome = { name, wallNs, modeledNs: modeledNs(counters, this.opts.cost), vcpus: [], counters, uffdReaders: null, conversions: emptyConversionStats() };
    addCounters(this.counters, counters);
    this.phases.push(outcome);
    return outcome;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.opts.observer?.runEnd();
    await this.pool.destroy();
    await this.readerPool?.destroy();
  }
}

/**
 * Modeled phase time: vCPUs run in parallel, so the slowest vCPU's clock (which holds the time it
 * slept in userfaults, each the modeled ns of the resolution that woke it). Queueing behind other
 * messages is not modelled (a message's wait does not depend on interleaving, so the figure is
 * deterministic), but the phase cannot end before the readers of the busiest uffd did their
 * work: Σ of their resolutions' modeled ns over the readers they have, as if perfectly shared.
 */
function phaseModeledNs(vcpus: VcpuPhaseResult[], readers: UffdReaderStats[] | null, u: UffdReaderConfig | undefined): number {
  let t = Math.max(0, ...vcpus.map((v) => v.modeledNs));
  if (readers === null || u === undefined) return t;
  const work = new Map<number, number>();
  for (const r of readers) work.set(r.uffd, (work.get(r.uffd) ?? 0) + r.modeledNs);
  for (const e of u.uffds) t = Math.max(t, (work.get(e.uffd.id) ?? 0) / e.readers);
  return t;
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
