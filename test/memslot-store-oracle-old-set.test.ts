// The stale-store oracle (content stamps on) during a memslot create's SRCU grace period: vCPU 0
// still holds the old set (no slot at the gfn) when vCPU 1, on the new set, has faulted the gfn
// in; vCPU 0's store then goes through that fresh EPT entry — a good store, to the frame the host
// maps for the new slot. The oracle must judge it by the newest set, not by vCPU 0's (which once
// reported it as a store through a stale translation, ~1 in 5 runs of
// memslot-modification-while-vcpus-run). The interleaving is forced with parked workers.
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { Host, Vm, audit, until } from './fixtures/dist.js';
import { VmLayout } from '../dist/src/kvm/vm-layout.js';
import { Metrics } from '../dist/src/metrics/counters.js';
import { costVector, loadCostModel } from '../dist/src/metrics/cost-model.js';
import { kDefaultCostModelPath } from './fixtures/vm-ctx.js';

const fixture = fileURLToPath(new URL('./fixtures/memslot-old-set-store.mjs', import.meta.url));

describe('store oracle during a memslot create', () => {
  it('a store by a vCPU still on the old set, through the new slot\'s SPTE, is not stale', async () => {
    const host = Host.create({ memory: 64 * 2 ** 20, stamps: true });
    const cost = costVector(loadCostModel(kDefaultCostModelPath));
    const vm = Vm.create(host, 0, { metrics: new Metrics(cost), hostThread: host.thread() }, { maxVcpus: 2 });
    const hva = vm.mmap({ size: 2 * 2 ** 20, backing: 'anonymous' });
    const G = 2 ** 32 / 4096;
    vm.setUserMemoryRegion2({ slot: 1, flags: 0, guestPhysAddr: G * 4096, memorySize: 2 ** 20, userspaceAddr: hva });
    vm.createVcpu();
    vm.createVcpu();
    const gfn = G + 256 + 5;
    const ctl = new Int32Array(new SharedArrayBuffer(32));
    Atomics.store(ctl, 5, Atomics.load(vm.w, VmLayout.kVmMemslotGen));
    const start = (role: string) => {
      const w = new Worker(fixture, { workerData: { role, hostHandle: host.handle, vmHandle: vm.handle(), ctl: ctl.buffer, cost, gfn } });
      const exited = new Promise<number>((resolve, reject) => {
        w.once('exit', resolve);
        w.once('error', reject);
      });
      return { w, exited };
    };
    const old = start('old');
    const neu = start('new');
    try {
      await until(() => Atomics.load(ctl, 0) === 1);
      // KVM_MR_CREATE right after slot 1: returns once vCPU 0 (holding the old set) has left.
      vm.setUserMemoryRegion2({ slot: 2, flags: 0, guestPhysAddr: (G + 256) * 4096, memorySize: 2 ** 20, userspaceAddr: hva + 2 ** 20 });
      expect(await old.exited).toBe(0);
      expect(await neu.exited).toBe(0);
      // The interleaving happened: vCPU 0 stored on the older set, through vCPU 1's SPTE.
      expect(Atomics.load(ctl, 2)).toBeLessThan(Atomics.load(ctl, 3));
      expect(Atomics.load(ctl, 4)).toBe(0);
      expect(audit(host, [vm]).violations).toEqual([]);
    } finally {
      await old.w.terminate();
      await neu.w.terminate();
    }
  });
});
