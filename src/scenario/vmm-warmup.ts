/**
 * Warming the VMM paths before a scenario's measured phases. A dirty-log run calls each VMM
 * ioctl a handful of times (enable and disable logging once, GET and CLEAR once per iteration),
 * so measured cold they run in V8's interpreter and baseline tiers: `Enabling dirty logging
 * time` read 16 ms in dirty-log-perf against 2.1 ms warm, a manual GET 30 us against 5 us. The
 * lines users read should show the steady state, as KVM's code is compiled before any test runs.
 *
 * So, before the measured VMs do anything, a scratch VM on a host of its own — same strategy and
 * caps (the scenario's beforeVcpus), the same backing but a few MiB of it — runs the scenario's
 * VMM calls for a number of rounds, with one vCPU on this thread dirtying its memory in between:
 * populate, enable logging, (store to every page, GET, CLEAR / ring harvest + reset) x rounds,
 * disable, destroy. The scratch VM has its own host, metrics and no histograms, so the measured
 * VMs' op counts, modeled times, stats and histograms are exactly what they are without it.
 */
import { KVM_MEM_LOG_DIRTY_PAGES } from '../kvm/memslot.js';
import { createMemstressVms, type MemstressConfig } from './memstress-vm.js';
import type { BackingSource } from '../host/mm.js';
import type { AccessSource } from '../kvm/vcpu.js';
import type { MemstressVmOptions } from './memstress-vm.js';
import type { FlagSpec } from './flags.js';

export const vmmWarmupFlag: FlagSpec = {
  name: 'vmm-warmup', type: 'bool', default: true,
  help: 'before the measured phases, run the VMM paths on a small scratch VM so their wall times are steady state (--no-vmm-warmup: measure them cold)',
};

/** Rounds of dirty + collect per logging cycle: enough for V8 to optimize the VMM loops. */
export const kVmmWarmupRounds = { minRounds: 8, maxRounds: 32 };

export interface VmmWarmup {
  /** What the scenario collects between iterations. */
  collect: 'get' | 'get-clear' | 'ring';
  /** Rounds of dirty + collect per logging cycle. */
  minRounds: number;
  maxRounds: number;
}

/** Logging enable/disable cycles (each enable and disable path runs this often). */
const kCycles = 2;

/** The last four collect times are within 15% of the best one seen. */
function settled(times: number[]): boolean {
  if (times.length < 4) return false;
  const best = Math.min(...times);
  return times.slice(-4).every((t) => t <= best * 1.15);
}

export interface VmmWarmupOutcome {
  wallNs: number;
  bytes: number;
  backing: BackingSource;
  rounds: number;
}

/** Scratch memory: 8 MiB (2048 pages, four 2M pages) of the scenario's backing; 1G pages stand in as 2M. */
function scratchBacking(b: BackingSource): { backing: BackingSource; bytes: number } {
  return { backing: b === 'anonymous_hugetlb_1gb' ? 'anonymous_hugetlb_2mb' : b, bytes: 8 * 2 ** 20 };
}

/** Stores to [g, end), re-issued after a dirty-ring-full exit. */
class StoreRange implements AccessSource {
  write = true;
  constructor(public g: number, public end: number, public iteration: number) {}
  next(): number {
    return this.g < this.end ? this.g++ : -1;
  }
}

/** Warm the VMM paths of a run configured as `c` with `opts`; see the file comment. */
export function warmVmmPaths(c: MemstressConfig, opts: MemstressVmOptions, w: VmmWarmup): VmmWarmupOutcome {
  const t0 = performance.now();
  invalidateDetachingProtector();
  const { backing, bytes } = scratchBacking(c.backing);
  const scratch: MemstressConfig = {
    ...c, vms: 1, vcpus: 1, bytesPerVcpu: bytes, backing, overlap: false, slots: 1, workers: 1, hostMemory: null, nodes: 1, stamps: false, mmioEvery: 0,
  };
  const { vms } = createMemstressVms(scratch, opts);
  const vm = vms[0]!;
  const slot = vm.memslots[0]!;
  const vcpu = vm.vcpu(0);
  const setLogging = (on: boolean) => vm.setUserMemoryRegion2({
    slot: slot.slotId, flags: on ? KVM_MEM_LOG_DIRTY_PAGES : 0, guestPhysAddr: slot.baseGfn * 4096, memorySize: slot.npages * 4096, userspaceAddr: slot.userspaceAddr,
  });
  const reap = () => {
    vm.harvestDirtyRings(() => {});
    vm.resetDirtyRings();
  };
  const dirty = (iteration: number) => {
    const src = new StoreRange(slot.baseGfn, slot.baseGfn + slot.npages, iteration);
    // A full dirty ring ends KVM_RUN early; the VMM harvests and the vCPU goes on.
    for (let tries = 0; src.g < src.end && tries < 64; tries++) {
      vcpu.run(src, slot.npages + 1);
      if (w.collect === 'ring') reap();
    }
  };
  let rounds = 0;
  try {
    dirty(0);
    for (let cycle = 0; cycle < kCycles; cycle++) {
      setLogging(true);
      // Rounds until the scratch VM's own collect time stops falling (V8 compiles the hot
      // functions on a background thread, later on a busy machine), within [min, max] rounds.
      const times: number[] = [];
      for (let r = 1; r <= w.maxRounds && !(r > w.minRounds && settled(times)); r++) {
        dirty(r);
        const tc = performance.now();
        if (w.collect === 'ring') {
          reap();
        } else {
          const bitmap = vm.getDirtyLog(slot.slotId);
          if (w.collect === 'get-clear') vm.clearDirtyLog({ slot: slot.slotId, firstPage: 0, numPages: slot.npages, bitmap });
        }
        times.push(performance.now() - tc);
        rounds++;
      }
      setLogging(false);
      dirty(w.maxRounds + 1);
    }
  } finally {
    vm.destroy();
  }
  return { wallNs: (performance.now() - t0) * 1e6, bytes, backing, rounds };
}

/**
 * The run itself detaches ArrayBuffers (messages to the workers transfer them), which
 * invalidates V8's ArrayBufferDetaching protector and deoptimizes every function optimized while
 * it held — the warmed VMM paths included (measured: ~60 functions, the CLEAR loop among them).
 * Detach one first, so the code warmed here is compiled without that assumption and stays.
 */
function invalidateDetachingProtector(): void {
  const buf = new ArrayBuffer(8);
  structuredClone(buf, { transfer: [buf] });
}

/** The line the text output carries once (a host note, printed as `note:`). */
export function vmmWarmupNote(o: VmmWarmupOutcome): string {
  return `--vmm-warmup: the VMM paths (logging on/off, GET/CLEAR or ring harvest/reset) ran ${o.rounds} rounds on a scratch ${o.bytes / 2 ** 20} MiB ${o.backing} VM before the measured phases (${(o.wallNs / 1e6).toFixed(0)} ms), so their wall times are steady state; --no-vmm-warmup turns this off`;
}
