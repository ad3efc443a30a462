/**
 * Scenario `demand-paging`, after KVM's demand_paging_test.c: every vCPU touches each of its
 * pages once (writes, as memstress populates), faulting it in through the TDP MMU; the test
 * reports total guest execution time and the demand paging rate, per vCPU and overall. (No
 * userfaultfd: the host populates pages in the fault path, as with -u absent.)
 */
import { Runner } from './runner.js';
import { kGuestPhysBits } from '../kvm/memslot.js';
import { createMemstressVms, fmtTimespec, memstressStream, type MemstressConfig } from './memstress-vm.js';
import { checkMemstressFlags, memstressConfig, memstressFlags } from './common-flags.js';
import type { FlagSpec } from './flags.js';
import { assembleResult, statsSnapshot } from './assemble.js';
import { hostInfo, snapshot } from './host-info.js';
import type { ScenarioDef, ScenarioIo } from './scenario.js';
import type { RunResult, StatsSnapshot } from './result.js';

const kUffdNote = 'userfaultfd is not modelled yet (the host populates pages in the fault path, as demand_paging_test without -u)';
const kUffdOptions: FlagSpec[] = [
  { name: 'uffd-single', short: 'a', type: 'bool', default: false, hidden: true, help: '', refuse: `demand_paging_test's -a is "use a single userfaultfd for all of guest memory": ${kUffdNote}; for a random access order use --random-access` },
  { name: 'uffd-readers', short: 'r', type: 'string', default: null, hidden: true, help: '', refuse: `demand_paging_test's -r is "the number of reader threads per uffd": ${kUffdNote}; for the random seed use --seed` },
  { name: 'uffd-mode', short: 'u', type: 'string', default: null, hidden: true, help: '', refuse: `demand_paging_test's -u selects a userfaultfd mode: ${kUffdNote}` },
  { name: 'uffd-delay', short: 'd', type: 'string', default: null, hidden: true, help: '', refuse: `demand_paging_test's -d is the userfaultfd handler delay: ${kUffdNote}` },
];

export const demandPaging: ScenarioDef = {
  name: 'demand-paging',
  summary: 'every vCPU faults in its memory once; reports the demand paging rate',
  after: 'tools/testing/selftests/kvm/demand_paging_test.c',
  flags: [
    // demand_paging_test's getopt string is "ac:d:hm:u:r:s:v:o": -r is its number of uffd reader
    // threads, so the seed has only its long name here.
    ...memstressFlags({ bytes: 2 ** 30, vcpus: 1 }).map((s) => (s.name === 'seed' ? { ...s, short: undefined, help: 'random seed for --random-access (guest_random_seed)' } : s)),
    { name: 'random-access', type: 'bool', default: false, help: 'touch pages in a seeded random order (each page once); not an upstream option' },
    // demand_paging_test's userfaultfd options. Until userfaultfd is modelled they are refused,
    // rather than -a and -r silently meaning random order and seed as in dirty_log_perf_test.
    ...kUffdOptions,
  ],
  check: checkMemstressFlags,
  async run(f, io) {
    const c = memstressConfig(f);
    return runDemandPaging(c, f['random-access'] as boolean, f, io);
  },
};

export async function runDemandPaging(c: MemstressConfig, random: boolean, flags: Record<string, unknown>, io: ScenarioIo): Promise<RunResult> {
  const setup = createMemstressVms(c);
  const { host, vms, layout } = setup;
  io.print(`Testing guest mode: PA-bits:${kGuestPhysBits}, VA-bits:48,  4K pages`);
  io.print(`guest physical test memory: [0x${layout.gpa.toString(16)}, 0x${(layout.gpa + layout.guestPages * 4096).toString(16)})`);
  const start = snapshot();
  const runner = new Runner(host, vms, { workers: c.workers, cost: setup.cost, sliceAccesses: flags.slice as number, wallEvery: flags['wall-sample'] as number, observer: io.observer });
  try {
    io.print('Finished creating vCPUs and starting uffd threads');
    io.print('Started all vCPUs');
    const phase = await runner.phase('demand-paging', (ref) =>
      memstressStream(c, layout, ref, vms[ref.vm]!.id, random ? 'permute' : 'sequential', 100, 1));
    io.print('All vCPU threads joined');
    const nrVcpus = c.vms * c.vcpus;
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
    const info = hostInfo(start, Math.min(c.workers, nrVcpus));
    const result = assembleResult({
      scenario: 'demand-paging', config: { ...flags, random, slots: c.slots }, seed: c.seed, host, vms, runner, info, stats,
      metrics: {
        totalGuestExecutionNs: Math.round(phase.wallNs), modeledGuestExecutionNs: Math.round(phase.modeledNs),
        perVcpuRate: rate, overallRate: rate * nrVcpus, modeledPerVcpuRate: modeledRate, modeledOverallRate: modeledRate * nrVcpus,
        faultsPerSecond: (t.pf_taken ?? 0) / (phase.wallNs / 1e9),
        faultsPerSecondPerWorker: (t.pf_taken ?? 0) / (phase.wallNs / 1e9) / Math.min(c.workers, nrVcpus),
      },
      output: [],
    });
    return result;
  } finally {
    await runner.close();
  }
}
