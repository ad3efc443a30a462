// kvm_swap_active_memslots(): the VMM edits the inactive memslot set, makes it active, and edits
// the old one only after synchronize_srcu() — every vCPU that entered with the old set has left.
// A vCPU on a worker stays in the guest holding the old set while the VMM creates a slot: the
// set it holds never changes under it, and the create returns only after it left.
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { Host, Vm, until } from './fixtures/dist.js';
import { Metrics } from '../dist/src/metrics/counters.js';
import { costVector, loadCostModel } from '../dist/src/metrics/cost-model.js';
import { kDefaultCostModelPath } from './fixtures/vm-ctx.js';

const fixture = fileURLToPath(new URL('./fixtures/memslot-set-reader.mjs', import.meta.url));

describe('memslot set swap', () => {
  it('leaves the old set alone until the vCPU that holds it left the guest', async () => {
    const host = Host.create({ memory: 64 * 2 ** 20 });
    const cost = costVector(loadCostModel(kDefaultCostModelPath));
    const vm = Vm.create(host, 0, { metrics: new Metrics(cost), hostThread: host.thread() }, { maxVcpus: 1 });
    const hva = vm.mmap({ size: 3 * 2 ** 20, backing: 'anonymous' });
    const region = (slot: number, gpa: number, i: number) => ({ slot, flags: 0, guestPhysAddr: gpa, memorySize: 2 ** 20, userspaceAddr: hva + i * 2 ** 20 });
    vm.setUserMemoryRegion2(region(1, 2 ** 32, 0));
    vm.setUserMemoryRegion2(region(2, 2 ** 34, 1));
    vm.createVcpu();
    const ctl = new Int32Array(new SharedArrayBuffer(16));
    const worker = new Worker(fixture, { workerData: { hostHandle: host.handle, vmHandle: vm.handle(), ctl: ctl.buffer, cost, watchMs: 300 } });
    const exited = new Promise<number>((resolve, reject) => {
      worker.once('exit', resolve);
      worker.once('error', reject);
    });
    try {
      await until(() => Atomics.load(ctl, 0) === 1);
      // A slot below both: inserting it moves every entry of a set (the old one too, later).
      vm.setUserMemoryRegion2(region(3, 2 ** 31, 2));
      // The create returned only after the vCPU left its SRCU read side (the epoch). The worker
      // sets ctl[2] a few instructions after leaving, so on a loaded machine it may not have yet:
      // the exact check is that no participant is still inside.
      expect(vm.epoch.oldestActive()).toBe(Infinity);
      await until(() => Atomics.load(ctl, 2) === 1);
      expect(await exited).toBe(0);
      expect(Atomics.load(ctl, 1)).toBe(0);
      expect(vm.memslots.map((s) => s.id)).toEqual([3, 1, 2]);
      expect(vm.lookupMemslot(2 ** 31 / 4096)?.id).toBe(3);
    } finally {
      await worker.terminate();
    }
  });
});
