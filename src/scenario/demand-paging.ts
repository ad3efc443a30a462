/**
 * Scenario `demand-paging`, after KVM's demand_paging_test.c: every vCPU touches each of its
 * pages once (writes, as memstress populates), faulting it in through the TDP MMU; the test
 * reports total guest execution time and the demand paging rate, per vCPU and overall.
 *
 * Without -u the host populates pages in the fault path. With -u MISSING|MINOR the guest memory
 * is registered with userfaultfds (one per vCPU region, or one for all with -a; -o implies -a)
 * and `-r` reader threads per uffd resolve every fault with UFFDIO_COPY or, for MINOR over a
 * shared backing prefaulted through its alias, UFFDIO_CONTINUE, after the -d delay.
 */
import { availableParallelism } from 'node:os';
import { Runner, type UffdReaderConfig } from './runner.js';
import { kGuestPhysBits } from '../kvm/memslot.js';
import { createMemstressVms, fmtTimespec, memstressStream, type MemstressConfig, type MemstressLayout } from './memstress-vm.js';
import { checkMemstressFlags, memstressConfig, memstressFlags } from './common-flags.js';
import { UsageError, givenFlags } from './flags.js';
import { assembleResult, statsSnapshot } from './assemble.js';
import { hostInfo, snapshot } from './host-info.js';
import type { ScenarioDef, ScenarioIo } from './scenario.js';
import type { RunResult, StatsSnapshot } from './result.js';
import type { Vm } from '../kvm/vm.js';
import { UffdMode, Userfaultfd, createWakeBoard, uffdioRegister } from '../host/userfaultfd.js';
import { backingPageOrder, isSharedBacking, prefaultAlias } from '../host/mm.js';
import type { Host } from '../host/host.js';

export const demandPaging: ScenarioDef = {
  name: 'demand-paging',
  summary: 'every vCPU faults in its memory once (optionally through userfaultfd); reports the demand paging rate',
  after: 'tools/testing/selftests/kvm/demand_paging_test.c',
  flags: [
    // demand_paging_test's getopt string is "ahom:u:d:b:s:v:c:r:": -r is its number of uffd
    // reader threads, so the seed has only its long name here.
    ...memstressFlags({ bytes: 2 ** 30, vcpus: 1 }).map((s) => (s.name === 'seed' ? { ...s, short: undefined, help: 'random seed for --random-access (guest_random_seed)' } : s)),
    { name: 'random-access', type: 'bool', default: false, help: 'touch pages in a seeded random order (each page once); not an upstream option' },
    { name: 'uffd-mode', short: 'u', type: 'enum', choices: ['MISSING', 'MINOR'], default: null, help: 'resolve vCPU page faults through userfaultfd: MISSING (UFFDIO_COPY) or MINOR (UFFDIO_CONTINUE; needs -s shmem or shared_hugetlb)' },
    { name: 'uffd-single', short: 'a', type: 'bool', default: false, help: 'one userfaultfd for all of guest memory instead of one per vCPU region (implied by -o; needs -u)' },
    { name: 'uffd-delay', short: 'd', type: 'int', default: 0, min: 0, max: 2 ** 31 - 1, help: 'delay in usec the uffd handler adds before each resolution (modeled; see --uffd-delay-wall)' },
    { name: 'uffd-readers', short: 'r', type: 'int', default: 1, min: 1, max: 1024, help: 'reader threads per userfaultfd' },
    { name: 'uffd-threads', type: 'int', default: 0, min: 0, max: 31, help: 'dedicated threads the uffd readers run on; 0: on the vCPU workers, each uffd\'s readers beside its vCPUs, as reader and vCPU threads share the host CPUs' },
    { name: 'uffd-delay-wall', type: 'bool', default: false, help: 'also sleep the -d delay for real in the readers (by default it is modeled time only)' },
    { name: 'pin-vcpus', short: 'c', type: 'string', default: null, help: 'vCPU-to-pCPU list (kvm_parse_vcpu_pinning); validated and recorded, not applied: worker threads cannot be pinned' },
    { name: 'debug', type: 'bool', default: false, help: 'print the PER_VCPU_DEBUG lines (per-vCPU execution time, per-reader pages)' },
  ],
  check(f) {
    const notes = checkMemstressFlags(f);
    const given = givenFlags(f);
    const mode = f['uffd-mode'] as string | null;
    if (mode === 'MINOR' && !isSharedBacking(f.backing as MemstressConfig['backing'])) {
      // demand_paging_test's main(): TEST_FAIL before anything is created.
      throw new UsageError('userfaultfd MINOR mode requires shared memory; pick a different -s (shmem or shared_hugetlb)');
    }
    if (mode === null) {
      // "Ignored without -u" upstream; here an inert flag is refused so a typo does not pass unseen.
      for (const k of ['uffd-single', 'uffd-delay', 'uffd-readers', 'uffd-threads', 'uffd-delay-wall'] as const) {
        if (given.has(k)) throw new UsageError(`--${k} has no effect without -u MISSING|MINOR: give -u or drop it`);
      }
    }
    const pin = f['pin-vcpus'] as string | null;
    if (pin !== null) {
      const cpus = parsePinning(pin, (f.vms as number) * (f.vcpus as number));
      notes.push(`--pin-vcpus (-c) ${cpus.join(',')}: recorded, not applied (Node cannot pin worker threads to CPUs; vCPUs are sharded over --workers instead)`);
    }
    return notes;
  },
  async run(f, io) {
    const c = memstressConfig(f);
    return runDemandPaging(c, f['random-access'] as boolean, f, io);
  },
};

/**
 * kvm_parse_vcpu_pinning(): a comma-separated list with one pCPU per vCPU and optionally one
 * more for the main thread, each a CPU this machine has.
 */
export function parsePinning(list: string, vcpus: number): number[] {
  const n = availableParallelism();
  const cpus = list.split(',').map((s) => {
    if (!/^\d+$/.test(s.trim())) throw new UsageError(`-c ${list}: '${s}' is not a CPU number`);
    const cpu = Number(s.trim());
    if (cpu >= n) throw new UsageError(`-c ${list}: CPU ${cpu} does not exist (this machine has ${n})`);
    return cpu;
  });
  if (cpus.length < vcpus) throw new UsageError(`-c ${list}: pCPU not provided for vCPU ${cpus.length} (give one per vCPU, ${vcpus})`);
  if (cpus.length > vcpus + 1) throw new UsageError(`-c ${list}: ${cpus.length} CPUs for ${vcpus} vCPUs and the main thread (at most ${vcpus + 1})`);
  return cpus;
}

export interface UffdSetup {
  config: UffdReaderConfig;
  uffds: Userfaultfd[];
}

/** demand_paging_test's userfaultfd parameters (-u, -a, -r, -d) and where the readers run. */
export interface UffdParams {
  mode: 'MISSING' | 'MINOR';
  single: boolean;
  readers: number;
  /** Dedicated reader threads; 0: on the vCPU workers. */
  threads: number;
  delayUs: number;
  realDelay: boolean;
}

export function uffdParams(f: Record<string, unknown>): UffdParams {
  return {
    mode: f['uffd-mode'] as UffdParams['mode'], single: f['uffd-single'] as boolean, readers: f['uffd-readers'] as number,
    threads: f['uffd-threads'] as number, delayUs: f['uffd-delay'] as number, realDelay: f['uffd-delay-wall'] as boolean,
  };
}

/**
 * demand_paging_test's run_test() before the vCPUs start: for MINOR, prefault each region
 * through the alias; then one uffd per vCPU region (or one for the whole region) registered on
 * its pages, with its readers.
 */
export function setupDemandPaging(host: Host, vms: Vm[], c: MemstressConfig, l: MemstressLayout, p: UffdParams): UffdSetup {
  const mode = p.mode === 'MINOR' ? UffdMode.MINOR : UffdMode.MISSING;
  const single = p.single || c.overlap;
  const readers = p.readers;
  const threads = p.threads;
  const board = createWakeBoard(Math.min(c.workers, vms.length * c.vcpus));
  const readerBoard = threads > 0 ? createWakeBoard(threads) : board;
  const ht = host.thread();
  const entries: UffdReaderConfig['uffds'] = [];
  const uffds: Userfaultfd[] = [];
  for (let v = 0; v < vms.length; v++) {
    const vm = vms[v]!;
    const regions = single ? 1 : c.vcpus;
    const regionPages = l.guestPages / regions;
    for (let i = 0; i < regions; i++) {
      const uffd = Userfaultfd.create(uffds.length, vm.maxVcpus, board, readerBoard);
      // The region's pages, VMA by VMA (one VMA per memslot).
      const first = l.gpa / 4096 + i * regionPages;
      for (const slot of vm.memslots) {
        const lo = Math.max(first, slot.baseGfn);
        const hi = Math.min(first + regionPages, slot.baseGfn + slot.npages);
        if (lo >= hi || slot.vma === null) continue;
        const start = slot.vmaOffset + (lo - slot.baseGfn);
        if (mode === UffdMode.MINOR) prefaultAlias(ht, slot.vma, start, hi - lo);
        uffdioRegister(slot.vma, uffd, start, hi - lo, mode);
      }
      uffds.push(uffd);
      entries.push({ uffd, vm: v, vcpus: single ? Array.from({ length: c.vcpus }, (_, k) => k) : [i], mode, readers });
    }
  }
  ht.drain();
  return {
    uffds,
    config: {
      uffds: entries, threads, board, readerBoard, resolvePages: 2 ** backingPageOrder(c.backing),
      delayNs: p.delayUs * 1000, realDelay: p.realDelay,
    },
  };
}

export async function runDemandPaging(c: MemstressConfig, random: boolean, flags: Record<string, unknown>, io: ScenarioIo): Promise<RunResult> {
  const setup = createMemstressVms(c);
  const { host, vms, layout } = setup;
  io.print(`Testing guest mode: PA-bits:${kGuestPhysBits}, VA-bits:48,  4K pages`);
  io.print(`guest physical test memory: [0x${layout.gpa.toString(16)}, 0x${(layout.gpa + layout.guestPages * 4096).toString(16)})`);
  const uffd = flags['uffd-mode'] ? setupDemandPaging(host, vms, c, layout, uffdParams(flags)) : null;
  const start = snapshot();
  const runner = new Runner(host, vms, {
    workers: c.workers, cost: setup.cost, sliceAccesses: flags.slice as number, wallEvery: flags['wall-sample'] as number, uffd: uffd?.config,
    observer: io.observer,
  });
  try {
    io.print('Finished creating vCPUs and starting uffd threads');
    io.print('Started all vCPUs');
    const phase = await runner.phase('demand-paging', (ref) =>
      memstressStream(c, layout, ref, vms[ref.vm]!.id, random ? 'permute' : 'sequential', 100, 1));
    io.print('All vCPU threads joined');
    const nrVcpus = c.vms * c.vcpus;
    if (flags.debug === true) {
      // PER_VCPU_DEBUG: execution time per vCPU (modeled: a worker runs many vCPUs, so a vCPU has
      // no wall time of its own), and what each reader resolved (over the phase's wall time).
      for (const v of phase.vcpus) io.print(`vCPU ${v.vcpu} execution time: ${fmtTimespec(v.modeledNs)} [modeled]`);
      for (const r of phase.uffdReaders ?? []) {
        io.print(`userfaulted ${r.pages} pages over ${fmtTimespec(phase.wallNs)}. (${(r.pages / (phase.wallNs / 1e9)).toFixed(6)}/sec) [uffd ${r.uffd} reader ${r.reader}]`);
      }
    }
    const rate = layout.pagesPerVcpu / (phase.wallNs / 1e9);
    const modeledRate = layout.pagesPerVcpu / (phase.modeledNs / 1e9);
    io.print(`Total guest execution time:\t${fmtTimespec(phase.wallNs)}`);
    io.print(`Per-vcpu demand paging rate:\t${rate.toFixed(6)} pgs/sec/vcpu`);
    io.print(`Overall demand paging rate:\t${(rate * nrVcpus).toFixed(6)} pgs/sec`);
    io.print(`[modeled] Total guest execution time:\t${fmtTimespec(phase.modeledNs)}`);
    io.print(`[modeled] Per-vcpu demand paging rate:\t${modeledRate.toFixed(6)} pgs/sec/vcpu`);
    io.print(`[modeled] Overall demand paging rate:\t${(modeledRate * nrVcpus).toFixed(6)} pgs/sec`);
    const stats: Record<string, StatsSnapshot> = { 'demand-paging': statsSnapshot(vms) };
    const t = stats['demand-paging']!.total;
    const info = hostInfo(start, Math.min(c.workers, nrVcpus) + (uffd?.config.threads ?? 0));
    const readerThreads = uffd === null ? 0 : uffd.config.threads;
    const uffdMetrics: Record<string, number> = {};
    if (uffd !== null) {
      const rs = phase.uffdReaders ?? [];
      uffdMetrics.uffds = uffd.uffds.length;
      uffdMetrics.uffdReaders = rs.length;
      uffdMetrics.uffdReaderThreads = readerThreads;
      uffdMetrics.uffdResolved = rs.reduce((s, r) => s + r.pages, 0);
      uffdMetrics.uffdEexist = rs.reduce((s, r) => s + r.eexist, 0);
      // Every fault was woken: nothing may be left on either wait queue once the vCPUs joined.
      uffdMetrics.uffdLeftQueued = uffd.uffds.reduce((s, u) => s + u.queued(), 0);
    }
    const result = assembleResult({
      scenario: 'demand-paging', config: { ...flags, random, slots: c.slots }, seed: c.seed, host, vms, runner, info, stats,
      metrics: {
        totalGuestExecutionNs: Math.round(phase.wallNs), modeledGuestExecutionNs: Math.round(phase.modeledNs),
        perVcpuRate: rate, overallRate: rate * nrVcpus, modeledPerVcpuRate: modeledRate, modeledOverallRate: modeledRate * nrVcpus,
        faultsPerSecond: (t.pf_taken ?? 0) / (phase.wallNs / 1e9),
        faultsPerSecondPerWorker: (t.pf_taken ?? 0) / (phase.wallNs / 1e9) / Math.min(c.workers, nrVcpus),
        ...uffdMetrics,
      },
      output: [],
    });
    if (uffd !== null && uffdMetrics.uffdLeftQueued! > 0) {
      result.audit.ok = false;
      result.audit.violations.push({ vm: null, kind: 'uffd-left-queued', detail: `${uffdMetrics.uffdLeftQueued} userfault message(s) still queued after every vCPU joined` });
    }
    return result;
  } finally {
    await runner.close();
  }
}
