/** Flags every memstress-style scenario takes. */
import { availableParallelism } from 'node:os';
import { kBackingSources } from '../host/mm.js';
import { UsageError, givenFlags, type FlagSpec } from './flags.js';
import type { MemstressConfig } from './memstress-vm.js';
import { KvmError } from '../host/errno.js';
import { costVector, loadCostModel } from '../metrics/cost-model.js';

export function memstressFlags(defaults: { bytes: number; vcpus: number }): FlagSpec[] {
  return [
    { name: 'vms', type: 'int', default: 1, min: 1, max: 4094, help: 'number of VMs (each its own VMM process)' },
    { name: 'vcpus', short: 'v', type: 'int', default: defaults.vcpus, min: 1, max: 1024, help: 'vCPUs per VM (at most KVM_CAP_MAX_VCPUS = KVM_MAX_VCPUS, 1024)' },
    { name: 'bytes', short: 'b', type: 'size', default: defaults.bytes, min: 4096, help: 'guest memory per vCPU' },
    { name: 'backing', short: 's', type: 'enum', choices: kBackingSources, default: 'anonymous', help: 'backing source of guest memory' },
    { name: 'overlap', short: 'o', type: 'bool', default: false, help: 'every vCPU walks the whole region instead of its own part' },
    { name: 'seed', short: 'r', type: 'int', default: 1, min: 0, max: 2 ** 31 - 1, help: 'random seed (guest_random_seed)' },
    { name: 'workers', type: 'int', default: availableParallelism(), min: 1, max: 64, help: 'worker threads vCPUs are sharded over' },
    { name: 'host-memory', type: 'size', default: null, help: 'host memory (default: sized to fit, hugetlb pools included)' },
    { name: 'numa-nodes', type: 'int', default: 1, min: 1, max: 64, help: 'host NUMA nodes' },
    { name: 'cost-model', type: 'string', default: 'default', help: 'cost-model profile (name or JSON path) for modeled time' },
    { name: 'wall-sample', type: 'int', default: 16, min: 1, max: 1 << 20, help: 'time 1 in N faults in wall time (all are timed in modeled time)' },
    { name: 'mmio-every', type: 'int', default: 0, min: 0, max: 2 ** 31 - 1, help: 'one MMIO access (KVM_EXIT_MMIO, completed by the worker as the VMM) after every N memory accesses; 0: none' },
    { name: 'slice', type: 'int', default: 4096, min: 1, max: 1 << 24, help: 'guest accesses per vCPU time slice on a worker' },
    { name: 'json', type: 'string', default: null, help: 'write the result JSON to this file' },
    { name: 'repeat', type: 'int', default: 1, min: 1, max: 1000, help: 'run the configuration N times (fresh VMs each run, the same seed) and keep every run with their median, min, max and 95% CI' },
    { name: 'quiet', short: 'q', type: 'bool', default: false, help: 'print only the selftest lines (no view, no live progress)' },
    ...kMmuFlags,
    ...kOutputFlags,
  ];
}

/** Which MMU runs the guest, and how (ARCHITECTURE.md's strategy table). */
export const kMmuFlags: FlagSpec[] = [
  { name: 'mmu', type: 'enum', choices: ['tdp', 'shadow'], default: 'tdp', help: 'tdp: the TDP MMU (ept=1); shadow: the legacy shadow MMU (ept=0), shadowing the guest\'s own page tables, mmu_lock for write on every fault' },
  { name: 'rmaps', type: 'enum', choices: ['eager', 'lazy'], default: 'lazy', help: 'memslot rmaps with the TDP MMU: allocated with every memslot (eager, before 5.13) or at the first shadow root (lazy); the shadow MMU always has them' },
  { name: 'guest-pt', type: 'enum', choices: ['4k', '2m'], default: '4k', help: 'leaf size of the guest\'s own page tables over the test memory (the guest runs with paging under --mmu shadow)' },
  { name: 'l2-at', type: 'int', default: -1, min: -1, max: 2 ** 31 - 1, help: 'a nested guest: vCPU 0 launches L2 after N of its accesses (the rest are L2\'s, under nested EPT: the VM\'s first shadow root, which with --rmaps lazy allocates every memslot\'s rmaps); -1: none (TDP MMU only)' },
  { name: 'lock-model', type: 'enum', choices: ['on', 'off'], default: null, help: 'place vCPU mmu_lock holds on a modeled-time timeline so waiting for the lock shows in modeled time (default: on with --mmu shadow, off with tdp)' },
];

/** How a run shows itself and what it writes besides the result (the CLI acts on these). */
const kOutputFlags: FlagSpec[] = [
  { name: 'watch', type: 'bool', default: false, help: 'on a terminal, refresh a table of the main KVM stats with totals and rates per interval, as kvm_stat does' },
  { name: 'watch-delay', type: 'float', default: 3, min: 0.1, max: 25.5, help: 'seconds between --watch refreshes (kvm_stat -s; the first after 0.25 s)' },
  { name: 'profile', type: 'enum', choices: ['cpu'], default: null, help: 'write a CPU profile per thread (main and workers) and add a top self-time table per thread to the result' },
  { name: 'profile-dir', type: 'string', default: null, help: 'directory for --profile files (default: profiles/ next to --json, else ./profiles)' },
  { name: 'profile-top', type: 'int', default: 10, min: 1, max: 1000, help: 'functions per thread in the --profile table' },
];

export function memstressConfig(f: Record<string, unknown>, extra: { slots?: number; stamps?: boolean } = {}): MemstressConfig {
  const c: MemstressConfig = {
    vms: f.vms as number, vcpus: f.vcpus as number, bytesPerVcpu: f.bytes as number, backing: f.backing as MemstressConfig['backing'],
    overlap: f.overlap as boolean, slots: extra.slots ?? 1, seed: f.seed as number, workers: f.workers as number,
    hostMemory: (f['host-memory'] as number | null) ?? null, nodes: f['numa-nodes'] as number, costModel: f['cost-model'] as string,
    stamps: extra.stamps ?? false, mmioEvery: f['mmio-every'] as number,
    mmu: (f.mmu as MemstressConfig['mmu']) ?? 'tdp', rmaps: (f.rmaps as MemstressConfig['rmaps']) ?? 'lazy', guestPt: (f['guest-pt'] as MemstressConfig['guestPt']) ?? '4k',
    lockModel: f['lock-model'] === undefined || f['lock-model'] === null ? null : f['lock-model'] === 'on',
    l2At: (f['l2-at'] as number | undefined) ?? -1,
  };
  if ((c.l2At ?? -1) >= 0 && c.mmu === 'shadow') throw new UsageError('--l2-at: nested guests are modelled on the TDP MMU (nested EPT); drop --mmu shadow');
  if (c.vms * c.vcpus > 65536) throw new UsageError(`${c.vms * c.vcpus} vCPUs in all is more than this harness schedules (65536)`);
  return c;
}

/**
 * Checks every memstress scenario shares; returns notes for host.notes. --workers above the
 * vCPU count is capped (a worker with no vCPU would only idle), with a note when the user asked
 * for it (the default, the machine's cores, is capped silently).
 */
export function checkMemstressFlags(f: Record<string, unknown>): string[] {
  const given = givenFlags(f);
  const notes: string[] = [];
  const vcpus = (f.vms as number) * (f.vcpus as number);
  if ((f.workers as number) > vcpus) {
    if (given.has('workers')) notes.push(`--workers ${f.workers as number} capped to ${vcpus}, the number of vCPUs (a worker without a vCPU would idle)`);
    f.workers = vcpus;
  }
  if (f.overlap === true && (f.vcpus as number) === 1) {
    throw new UsageError('-o (overlapping vCPU regions) has no effect with one vCPU per VM: drop -o or give -v 2 or more');
  }
  return notes;
}

/** --cost-model NAME|FILE as a price vector; a bad profile is a usage error (exit 2). */
export function costModelFlag(name: string): Float64Array {
  try {
    return costVector(loadCostModel(name));
  } catch (e) {
    if (e instanceof KvmError) throw new UsageError(e.message);
    throw e;
  }
}
