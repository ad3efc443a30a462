/**
 * Scenario `memslot-modification-stress`, after KVM's memslot_modification_stress_test.c: the
 * memstress guest runs on every vCPU — pass after pass over its memory — while the VMM adds a
 * one-page memslot (DUMMY_MEMSLOT_INDEX, just below the memstress region) and deletes it again,
 * -i times with -d microseconds between iterations. Then the vCPUs stop at their next
 * GUEST_SYNC (the end of a pass) and are joined.
 *
 * The vCPUs never touch the dummy slot: what they feel is KVM's memslot machinery — each add and
 * delete swaps the memslot sets under SRCU (a vCPU in the guest is kicked and re-enters), and with
 * KVM_X86_QUIRK_SLOT_ZAP_ALL (on unless -q) each delete zaps every SPTE, so the vCPUs fault their
 * memory in again. Content stamps are on: every store is checked against the host's mapping of
 * its gfn, so a write through a stale translation fails the audit.
 *
 * On one worker the VMM iterates at fixed points between the vCPUs' slices (one add + delete per
 * round, -d measured in the vCPUs' modeled time), so a seed reproduces counters and modeled
 * times; on several workers it runs alongside them and -d is a wall-clock sleep, as usleep().
 * The selftest prints no timings; the result has each ioctl's latency histogram
 * (set_memory_region.create / .delete) and the vCPUs' faults.
 */
import { Runner } from './runner.js';
import { kGuestPhysBits } from '../kvm/memslot.js';
import { KVM_X86_QUIRK_SLOT_ZAP_ALL } from '../kvm/caps.js';
import { kOp } from '../metrics/ops.js';
import { createMemstressVms, memstressStream } from './memstress-vm.js';
import { checkMemstressFlags, memstressConfig, memstressFlags } from './common-flags.js';
import { UsageError, type FlagSpec } from './flags.js';
import { VmmTimer } from './vmm-timer.js';
import { setMemoryRegionTimed } from './memslot-ioctl.js';
import { assembleResult, statsSnapshot } from './assemble.js';
import { hostInfo, snapshot } from './host-info.js';
import type { ScenarioDef, ScenarioIo } from './scenario.js';
import type { RunResult } from './result.js';

export const DUMMY_MEMSLOT_INDEX = 7;
const DEFAULT_MEMSLOT_MODIFICATION_ITERATIONS = 10;

export const memslotModificationStress: ScenarioDef = {
  name: 'memslot-modification-stress',
  summary: 'vCPUs fault their memory while the VMM adds and deletes a memslot in a loop',
  after: 'tools/testing/selftests/kvm/memslot_modification_stress_test.c',
  flags: [
    // The selftest's getopt string is "hm:d:qb:v:oi:": -q is its zap quirk, so quiet is long only.
    ...memstressFlags({ bytes: 2 ** 30, vcpus: 1 }).map((s): FlagSpec => (s.name === 'quiet' ? { ...s, short: undefined } : s)),
    { name: 'delay', short: 'd', type: 'int', default: 0, help: 'delay between each iteration of adding and deleting a memslot, in usec (modeled usec of the vCPUs on one worker)' },
    { name: 'iterations', short: 'i', type: 'int', default: DEFAULT_MEMSLOT_MODIFICATION_ITERATIONS, help: 'the number of iterations of adding and removing a memslot' },
    { name: 'disable-slot-zap-quirk', short: 'q', type: 'bool', default: false, help: 'disable the memslot zap quirk (KVM_X86_QUIRK_SLOT_ZAP_ALL)' },
    {
      name: 'mode', short: 'm', type: 'string', default: null, hidden: true, help: '',
      refuse: `-m selects a guest mode: this model has one, PA-bits:${kGuestPhysBits}, VA-bits:48, 4K pages (x86's default)`,
    },
  ],
  check(f) {
    if ((f.delay as number) < 0) throw new UsageError(`Delay must be non-negative, got ${f.delay as number}`);
    if ((f.iterations as number) <= 0) throw new UsageError(`Number of iterations must be greater than 0, got ${f.iterations as number}`);
    return checkMemstressFlags(f);
  },
  run: runMemslotModificationStress,
};

export async function runMemslotModificationStress(f: Record<string, unknown>, io: ScenarioIo): Promise<RunResult> {
  const c = memstressConfig(f, { stamps: true });
  const iterations = f.iterations as number;
  const delayUs = f.delay as number;
  const disableQuirk = f['disable-slot-zap-quirk'] as boolean;
  const setup = createMemstressVms(c);
  const { host, vms, layout, ctx } = setup;
  io.print(`Testing guest mode: PA-bits:${kGuestPhysBits}, VA-bits:48,  4K pages`);
  io.print(`guest physical test memory: [0x${layout.gpa.toString(16)}, 0x${(layout.gpa + layout.guestPages * 4096).toString(16)})`);
  for (const vm of vms) if (disableQuirk) vm.enableCap('KVM_CAP_DISABLE_QUIRKS2', KVM_X86_QUIRK_SLOT_ZAP_ALL);
  io.print(`Memslot zap quirk ${disableQuirk ? 'disabled' : 'enabled'}`);
  io.print('Finished creating vCPUs');
  // The dummy slot's memory: one page below the memstress region (vm_userspace_mem_region_add()
  // maps it on every add; one mapping serves every iteration here).
  const dummyGpa = layout.gpa - 4096;
  const dummyHva = vms.map((vm) => vm.mmap({ size: 4096, backing: 'anonymous' }));
  const timer = new VmmTimer(ctx.metrics);
  const start = snapshot();
  const nrVcpus = c.vms * c.vcpus;
  const runner = new Runner(host, vms, { workers: c.workers, cost: setup.cost, sliceAccesses: f.slice as number, wallEvery: f['wall-sample'] as number, observer: io.observer });
  const oneWorker = runner.shards.filter((s) => s.length > 0).length === 1;
  // memstress_args.stop_vcpus
  const stop = new SharedArrayBuffer(4);
  const stopWord = new Int32Array(stop);
  let done = 0;
  let lastModeled = 0;
  const vcpuModeledNs = () => Math.max(...vms.flatMap((vm) => vm.vcpuWords.map((_, i) => vm.vcpu(i).modeledNs())));
  const sleep = new Int32Array(new SharedArrayBuffer(4));
  // add_remove_memslot(): one iteration per call.
  const vmmStep = () => {
    if (done >= iterations) return;
    if (delayUs > 0) {
      if (oneWorker) {
        // usleep(delay) on the vCPUs' modeled clock: the VMM goes on once they ran that long.
        if (vcpuModeledNs() - lastModeled < delayUs * 1000) return;
      } else {
        Atomics.wait(sleep, 0, 0, delayUs / 1000);
      }
    }
    vms.forEach((vm, i) => {
      const region = { slot: DUMMY_MEMSLOT_INDEX, flags: 0, guestPhysAddr: dummyGpa, memorySize: 4096, userspaceAddr: dummyHva[i]! };
      setMemoryRegionTimed(timer, vm, region);
      setMemoryRegionTimed(timer, vm, { ...region, memorySize: 0 });
    });
    lastModeled = oneWorker ? vcpuModeledNs() : 0;
    // memstress_join_vcpu_threads(): stop_vcpus after the last iteration (the pair: this seq-cst
    // store, each stream's Atomics.load at its pass boundary).
    if (++done === iterations) Atomics.store(stopWord, 0, 1);
  };
  try {
    io.print('Started all vCPUs');
    timer.begin();
    const phase = await runner.phase('stress', (ref) => ({
      ...memstressStream(c, layout, ref, vms[ref.vm]!.id, 'sequential', 100, 1), accesses: Infinity, stop,
    }), 'stress.page_fault', vmmStep);
    // A vCPU could finish before the VMM's last iteration only if the stream ended otherwise.
    if (done !== iterations) throw new Error(`BUG: the vCPUs stopped after ${done} of ${iterations} memslot iterations`);
    io.print('All vCPU threads joined');
    runner.vmmPhase('stress.vmm', 0, timer.delta());
    runner.histograms.add(timer.hists.encode());
    timer.hists.destroy();
    const stats = { stress: statsSnapshot(vms) };
    const t = stats.stress.total;
    const retries = phase.counters[kOp.fault_retry]!;
    const passes = phase.vcpus.map((v) => v.accesses / layout.pagesPerVcpu);
    const result = assembleResult({
      scenario: 'memslot-modification-stress',
      config: { ...f, slots: c.slots, quirkSlotZapAll: !disableQuirk, dummySlot: DUMMY_MEMSLOT_INDEX, dummyGpa, vmmAtRounds: oneWorker },
      seed: c.seed, host, vms, runner, info: hostInfo(start, Math.min(c.workers, nrVcpus)), stats,
      metrics: {
        memslotIterations: done, faultsTaken: t.pf_taken ?? 0, faultsFixed: t.pf_fixed ?? 0, faultsSpurious: t.pf_spurious ?? 0,
        faultsEmulated: t.pf_emulate ?? 0, faultRetries: retries,
        // Every fault ends fixed, spurious, emulated or retried (RET_PF_*): anything else is lost.
        faultsUnaccounted: (t.pf_taken ?? 0) - (t.pf_fixed ?? 0) - (t.pf_spurious ?? 0) - (t.pf_emulate ?? 0) - retries,
        minPasses: Math.min(...passes), maxPasses: Math.max(...passes),
        // Streams stop only at a pass boundary (GUEST_SYNC): whole passes.
        wholePasses: passes.every((p) => Number.isInteger(p)),
      },
      output: [],
    });
    return result;
  } finally {
    await runner.close();
  }
}
