/**
 * The worker side of a phase: attach to the shared host and VMs, run this worker's vCPUs in
 * round-robin slices (a fixed number of guest accesses each, so a single-worker run is
 * deterministic), and return counters, per-vCPU clocks and encoded histograms.
 *
 * Workers keep their attached views between phases of one run (keyed by run id). Memslots and
 * the page-table pool need no re-attach (shared, changed while vCPUs run); VMAs and vCPUs added
 * between phases come with the next task's handle, VMAs mapped during a phase through the task's
 * VMA ports.
 */
import { threadId, type MessagePort } from 'node:worker_threads';
import { Host, type HostHandle } from '../host/host.js';
import { Vm, type ThreadCtx, type VmHandle } from '../kvm/vm.js';
import { Metrics } from '../metrics/counters.js';
import { HistogramSet, type EncodedHistograms } from '../metrics/histogram.js';
import { guestProgram, type GuestProgram, type GuestSpec } from '../workload/guest.js';
import type { Vcpu } from '../kvm/vcpu.js';
import { VmLayout } from '../kvm/vm-layout.js';
import { KvmExit } from '../kvm/vcpu-layout.js';
import { BoardLayout, boardCancelSleep, boardPrepareSleep, boardRing, boardSleep } from '../host/userfaultfd.js';
import { UffdReaders, type UffdReaderOptions, type UffdReaderStats, type UffdReaderWork } from './uffd-reader-runtime.js';
import { ConversionVmm, type ConversionVmmSpec, type ConversionVmmStats } from './conversion-vmm.js';

export interface VcpuWork {
  vm: number;
  vcpu: number;
  stream: GuestSpec;
}

export interface PhaseTask {
  runId: string;
  slot: number;
  phase: string;
  host: HostHandle;
  vms: VmHandle[];
  work: VcpuWork[];
  cost: Float64Array;
  sliceAccesses: number;
  /** Time one fault in `wallEvery` in wall time (every fault is timed in modeled time). */
  wallEvery: number;
  /** Histogram name for vCPU faults in this phase. */
  faultHistogram: string;
  /**
   * With VMM work during the phase on a single worker: the handshake word (PhaseSync) at which
   * the worker parks after every round of slices so the VMM acts at a fixed point of vCPU
   * progress. null: run freely.
   */
  sync: SharedArrayBuffer | null;
  /** One port per VM (index into vms) this task runs: VMAs the VMM maps during the phase. */
  vmaPorts: { vm: number; port: MessagePort }[];
  /**
   * The only worker, with userfaultfd readers: after every round wait until each vCPU that fell
   * asleep in a userfault is woken, so how fast the readers are does not change which vCPU runs
   * when (and so the counts, and modeled time, of a seed are the same every run).
   */
  uffdLockstep: boolean;
  /**
   * userfaultfd readers that share this worker with its vCPUs (reader and vCPU threads on the
   * same host CPU), or null. `board` is the vCPU workers' wake board, whose kLiveWorkers word
   * counts the workers still running vCPUs: one hosting readers serves until it is 0.
   */
  uffdReaders: (UffdReaderOptions & { work: UffdReaderWork[]; histogram: string; board: SharedArrayBuffer; workers: number }) | null;
  /** The VMM's handling of KVM_EXIT_HYPERCALL / KVM_EXIT_MEMORY_FAULT on the vCPU threads, or null. */
  exits: ConversionVmmSpec | null;
}

export const enum PhaseSync {
  kSyncRunning = 0,
  /** The worker finished a round and waits for the VMM step. */
  kSyncParked = 1,
  kSyncDone = 2,
}

export interface VcpuPhaseResult {
  vm: number;
  vcpu: number;
  accesses: number;
  modeledNs: number;
  wallNs: number;
  /** KVM_EXIT_MMIO exits this worker completed for the vCPU in this phase (the VMM's count). */
  mmioExits: number;
  /** Checks the guest program made that failed (0 for programs that make none). */
  guestFailures: number;
}

export interface PhaseTaskResult {
  slot: number;
  threadId: number;
  wallNs: number;
  counters: Float64Array;
  vcpus: VcpuPhaseResult[];
  histograms: EncodedHistograms;
  /** Readers this worker ran (uffdReaders), or null. */
  uffdReaders: UffdReaderStats[] | null;
  conversions: ConversionVmmStats | null;
}

interface Attached {
  runId: string;
  host: Host;
  ctx: ThreadCtx;
  vms: Map<number, Vm>;
}

let attached: Attached | null = null;

function attach(task: PhaseTask): Attached {
  if (attached === null || attached.runId !== task.runId) {
    const host = Host.attach(task.host);
    attached = { runId: task.runId, host, ctx: { metrics: new Metrics(task.cost), hostThread: host.thread() }, vms: new Map() };
  }
  const a = attached;
  // VMs the runner no longer runs (memslot-perf builds one per test run, Runner.replaceVms) are
  // dropped, so the worker does not keep their views alive. A task names every VM of the runner.
  if (a.vms.size > task.vms.length) {
    const live = new Set(task.vms.map((h) => h.id));
    for (const id of a.vms.keys()) if (!live.has(id)) a.vms.delete(id);
  }
  for (const w of task.work) {
    const h = task.vms[w.vm]!;
    const vm = a.vms.get(h.id);
    if (vm === undefined) a.vms.set(h.id, Vm.attach(a.host, h, a.ctx));
    else vm.reattach(h);
  }
  for (const p of task.vmaPorts) a.vms.get(task.vms[p.vm]!.id)!.vmaPort = p.port;
  return a;
}

export function runPhaseTask(task: PhaseTask): PhaseTaskResult {
  const t0 = performance.now();
  const a = attach(task);
  const m = a.ctx.metrics;
  m.reset();
  // This worker is one host CPU: a userfaultfd wake of one of its vCPUs rings this line.
  a.ctx.hostThread.uffdCpu = task.slot;
  const hists = new HistogramSet();
  try {
    const faultHist = hists.get(task.faultHistogram);
    let lockHists: Vcpu['lockHists'] = null;
    const vcpus: Vcpu[] = [];
    const streams: GuestProgram[] = [];
    const before: { modeled: number; wall: number; accesses: number }[] = [];
    for (const w of task.work) {
      const vm = a.vms.get(task.vms[w.vm]!.id)!;
      const v = vm.vcpu(w.vcpu);
      vcpus.push(v);
      streams.push(guestProgram(w.stream, m));
      before.push({ modeled: v.modeledNs(), wall: v.wallNs(), accesses: v.accesses() });
      // The modeled mmu_lock timeline counts from the phase's start (the runner reset it), and
      // its waits go into this phase's histograms.
      if (vm.lockModel !== null) {
        lockHists ??= { read: hists.get(`${task.phase}.mmu_lock_wait_read`), write: hists.get(`${task.phase}.mmu_lock_wait_write`) };
        v.lockPhaseStart = v.modeledNs();
        v.lockHists = lockHists;
      }
    }
    // Round-robin slices until every stream ends. A vCPU that exited with a full dirty ring
    // stays out until the VMM resets rings; when every live vCPU here is in that state, sleep on
    // the VM's reset generation instead of spinning.
    let live = vcpus.length;
    const done = new Uint8Array(vcpus.length);
    const sync = task.sync === null ? null : new Int32Array(task.sync);
    const mmioExits = new Float64Array(vcpus.length);
    const ur = task.uffdReaders;
    const readers = ur === null ? null : new UffdReaders(a.ctx.hostThread, m, hists.get(ur.histogram), ur.work, ur);
    const board = ur === null ? null : new Int32Array(ur.board);
    const exits = task.exits === null ? null : new ConversionVmm(task.exits, hists);
    while (live > 0) {
      let progressed = false;
      let asleep = 0;
      for (let i = 0; i < vcpus.length; i++) {
        if (done[i]) continue;
        const v = vcpus[i]!;
        // Still asleep in a userfault: nothing to run (run() would return 0 at once).
        if (v.uffdWait !== null && !v.uffdRunnable()) {
          asleep++;
          continue;
        }
        let n = v.run(streams[i]!, task.sliceAccesses, faultHist, task.wallEvery);
        // Asleep in a userfault (possibly again, after it ran): not done, and not runnable
        // until a reader wakes it.
        if (v.uffdWait !== null) {
          if (n > 0) progressed = true;
          asleep++;
          continue;
        }
        // The VMM's KVM_RUN loop: complete each KVM_EXIT_MMIO (no device here: loads read 0,
        // stores are dropped) and run again for the rest of the slice; the next run() retires
        // the emulated access (complete_emulated_mmio). An exit at the end of the slice is
        // completed by the vCPU's next slice.
        // The same for KVM_EXIT_HYPERCALL / KVM_EXIT_MEMORY_FAULT: the vCPU thread converts
        // the memory itself (conversion-vmm.ts), then runs again.
        for (;;) {
          if (v.pendingExit === KvmExit.KVM_EXIT_MMIO) {
            mmioExits[i]!++;
            streams[i]!.onMmioExit?.(v.mmio);
            if (!v.mmio.isWrite) v.mmio.data = 0;
          } else if (v.pendingExit === KvmExit.KVM_EXIT_HYPERCALL || v.pendingExit === KvmExit.KVM_EXIT_MEMORY_FAULT) {
            if (exits === null || !exits.onExit(v)) throw new Error(`vCPU ${v.id} of VM ${v.vm.id}: exit ${v.pendingExit} and no VMM handler for it in this phase`);
          } else break;
          if (n >= task.sliceAccesses) break;
          n += v.run(streams[i]!, task.sliceAccesses - n, faultHist, task.wallEvery);
        }
        if (n > 0) progressed = true;
        if (n < task.sliceAccesses && v.pendingExit === 0) {
          done[i] = 1;
          live--;
          progressed = true;
        }
      }
      // The readers here serve what the round queued (and what other workers' vCPUs queued).
      const served = readers === null ? 0 : readers.drain();
      if (served > 0) progressed = true;
      if (task.uffdLockstep && asleep > 0) while (!waitForUffdWake(vcpus, done, task.slot, true, readers));
      if (sync !== null) {
        // Deterministic VMM point: after every round (also one where every vCPU waits on a full
        // ring: the VMM's harvest and reset at this point is what lets them go on).
        if (live > 0) parkForVmm(sync);
      } else if (!progressed && live > 0) {
        if (asleep > 0) waitForUffdWake(vcpus, done, task.slot, false, readers);
        else {
          const w = vcpus.find((_, i) => !done[i])!.vm.w;
          Atomics.wait(w, VmLayout.kVmRingResetGen, Atomics.load(w, VmLayout.kVmRingResetGen), 1);
        }
      }
    }
    if (board !== null) serveUntilAllJoined(board, readers!, task.slot, ur!.workers);
    a.ctx.hostThread.drain();
    for (const vm of a.vms.values()) vm.reclaimPtPages();
    return {
      slot: task.slot,
      threadId,
      wallNs: (performance.now() - t0) * 1e6,
      counters: m.c.slice(),
      vcpus: vcpus.map((v, i) => ({
        vm: task.work[i]!.vm, vcpu: v.idx, accesses: v.accesses() - before[i]!.accesses,
        modeledNs: v.modeledNs() - before[i]!.modeled, wallNs: v.wallNs() - before[i]!.wall, mmioExits: mmioExits[i]!,
        guestFailures: streams[i]!.guestFailures ?? 0,
      })),
      histograms: hists.encode(),
      uffdReaders: readers?.stats() ?? null,
      conversions: exits?.stats ?? null,
    };
  } finally {
    for (const p of task.vmaPorts) {
      const vm = a.vms.get(task.vms[p.vm]!.id);
      if (vm !== undefined) vm.vmaPort = null;
      p.port.close();
    }
    if (task.sync !== null) {
      const sync = new Int32Array(task.sync);
      Atomics.store(sync, 0, PhaseSync.kSyncDone);
      Atomics.notify(sync, 0);
    }
    a.ctx.hostThread.drain();
    hists.destroy();
  }
}

/**
 * vCPUs here are asleep in userfaults: sleep on this worker's wake-board line until a reader's
 * wake rings it (boardRing()'s pair: raise the flag, read the seq, re-check the vCPUs, sleep on
 * the seq). Returns whether the condition held at the re-check: some sleeper runnable, or with
 * `all` every one. Bounded (50 ms) so a vCPU left waiting on a full dirty ring is re-polled too.
 */
function waitForUffdWake(vcpus: Vcpu[], done: Uint8Array, slot: number, all: boolean, readers: UffdReaders | null): boolean {
  let board: Int32Array | null = null;
  for (let i = 0; i < vcpus.length && board === null; i++) if (!done[i] && vcpus[i]!.uffdWait !== null) board = vcpus[i]!.uffdWait!.board;
  if (board === null) return true;
  const seq = boardPrepareSleep(board, slot);
  // A message for the readers here is work too (a queued fault rings this line).
  if (readers !== null && readers.readable()) {
    boardCancelSleep(board, slot);
    return !all;
  }
  let asleep = 0;
  let runnable = 0;
  for (let i = 0; i < vcpus.length; i++) {
    const v = vcpus[i]!;
    if (done[i] || v.uffdWait === null) continue;
    asleep++;
    if (v.uffdRunnable()) runnable++;
  }
  if (all ? runnable === asleep : runnable > 0) {
    boardCancelSleep(board, slot);
    return true;
  }
  boardSleep(board, slot, seq, 50);
  return false;
}

/**
 * This worker's vCPUs are done; its readers may still be the ones other workers' vCPUs wait on.
 * Leave the live count (the last one out rings every worker) and serve until it is 0.
 */
function serveUntilAllJoined(board: Int32Array, readers: UffdReaders, slot: number, workers: number): void {
  if (Atomics.sub(board, BoardLayout.kLiveWorkers, 1) === 1) for (let s = 0; s < workers; s++) boardRing(board, s);
  if (readers.empty) return;
  while (Atomics.load(board, BoardLayout.kLiveWorkers) > 0) {
    if (readers.drain() > 0) continue;
    const seq = boardPrepareSleep(board, slot);
    if (readers.readable() || Atomics.load(board, BoardLayout.kLiveWorkers) === 0) {
      boardCancelSleep(board, slot);
      continue;
    }
    boardSleep(board, slot, seq, 50);
  }
  readers.drain();
}

/** Park until the VMM thread ran its step (see vmmAtRounds() in runner.ts for the pair). */
function parkForVmm(sync: Int32Array): void {
  Atomics.store(sync, 0, PhaseSync.kSyncParked);
  Atomics.notify(sync, 0);
  while (Atomics.load(sync, 0) === PhaseSync.kSyncParked) Atomics.wait(sync, 0, PhaseSync.kSyncParked, 1000);
}
