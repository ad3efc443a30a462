// The faulting thread a userfaultfd queues is the one GUP runs for: a vCPU's fault names its
// vCPU only while it is in GUP. A VMM access on the same thread afterwards (memslot_perf_test's
// host-side checks run where vCPUs may have run) to a registered page with no reader is refused
// with EFAULT, not queued as if that vCPU had faulted again.
import { describe, expect, it } from 'vitest';
import { Host, Vm, KvmError } from './fixtures/dist.js';
import { Metrics } from '../dist/src/metrics/counters.js';
import { costVector, loadCostModel } from '../dist/src/metrics/cost-model.js';
import { hostFault } from '../dist/src/host/mm.js';
import { Userfaultfd, createWakeBoard, uffdioRegister } from '../dist/src/host/userfaultfd.js';
import { kDefaultCostModelPath } from './fixtures/vm-ctx.js';

describe('userfaultfd and the VMM thread', () => {
  it('a VMM access after a vCPU fault on the same thread is the VMM\'s: EFAULT, nothing queued', () => {
    const host = Host.create({ memory: 64 * 2 ** 20 });
    const hostThread = host.thread();
    const vm = Vm.create(host, 0, { metrics: new Metrics(costVector(loadCostModel(kDefaultCostModelPath))), hostThread }, { maxVcpus: 1 });
    const hva = vm.mmap({ size: 2 ** 20, backing: 'anonymous' });
    vm.mmap({ size: 2 ** 20, backing: 'anonymous' });
    const registered = vm.vmas[1]!;
    const u = Userfaultfd.create(0, 1, createWakeBoard(1), createWakeBoard(1));
    uffdioRegister(registered, u, 0, 256, 1 /* UffdMode.MISSING */);
    vm.setUserMemoryRegion2({ slot: 1, flags: 0, guestPhysAddr: 2 ** 32, memorySize: 2 ** 20, userspaceAddr: hva });
    const vcpu = vm.createVcpu();
    let given = false;
    // vCPU 0 faults a page of the unregistered slot on this thread.
    vcpu.run({ write: true, iteration: 1, next: () => (given ? -1 : ((given = true), 2 ** 32 / 4096)) }, 2);
    expect(vcpu.getStats().pf_fixed).toBe(1);
    let err: unknown = null;
    try {
      hostFault(hostThread, registered, 5);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(KvmError);
    expect((err as KvmError).errno).toBe('EFAULT');
    expect(u.queued()).toBe(0);
  });
});
