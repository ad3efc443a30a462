// Invalidations from the VMM thread race vCPUs writing on two workers. Every store is checked
// against the host's current mapping (the stale-write oracle, on with stamps): once a zap's
// remote TLB flush returns and the host drops the page, no vCPU may write it.
import { describe, expect, it } from 'vitest';
import { Host, Runner, Vm, audit, config, createMemstressVms, memstressStream, tlbFill, until, trackWorkerThreads, expectBothWorkersRan } from './fixtures/dist.js';
import { Metrics } from '../dist/src/metrics/counters.js';
import { costVector, loadCostModel } from '../dist/src/metrics/cost-model.js';

describe('remote TLB flush vs running vCPUs', () => {
  it('no store lands on a dropped page while invalidations race the guest', async () => {
    const c = config({ vcpus: 4, bytesPerVcpu: 2 ** 20, overlap: true, workers: 2, stamps: true });
    const s = createMemstressVms(c);
    const vm = s.vms[0]!;
    const slot = vm.memslots[0]!;
    const runner = new Runner(s.host, s.vms, { workers: 2, cost: s.cost, sliceAccesses: 512 });
    const threads = trackWorkerThreads(runner);
    try {
      let done = false;
      const phase = runner.phase('writers', (ref) => ({ ...memstressStream(c, s.layout, ref, 0, 'random', 100, 1), accesses: 150_000, seed: 7 + ref.vcpu }))
        .finally(() => (done = true));
      let invalidations = 0;
      let x = 12345;
      await until(() => {
        if (!done) {
          x = (Math.imul(x, 1103515245) + 12345) >>> 0;
          const start = slot.baseGfn + (x % (slot.npages - 16));
          vm.invalidateRange(start, start + 16);
          invalidations++;
        }
        return done;
      }, 60_000);
      await phase;
      expectBothWorkersRan(threads);
      expect(invalidations).toBeGreaterThan(20);
      const stats = vm.getStats();
      expect(stats.remote_tlb_flush).toBeGreaterThan(0);
      expect(vm.vcpuStats().reduce((a, v) => a + v.tlb_flush, 0)).toBeGreaterThan(0);
      const a = audit(s.host, s.vms);
      expect(a.violations).toEqual([]);
    } finally {
      await runner.close();
    }
  });

  it('the oracle catches a store through a stale translation', () => {
    const host = Host.create({ memory: 64 * 2 ** 20, stamps: true });
    const ctx = { metrics: new Metrics(costVector(loadCostModel())), hostThread: host.thread() };
    const vm = Vm.create(host, 0, ctx);
    const hva = vm.mmap({ size: 2 ** 21, backing: 'anonymous' });
    vm.setUserMemoryRegion2({ slot: 1, flags: 0, guestPhysAddr: 2 ** 30, memorySize: 2 ** 21, userspaceAddr: hva });
    const v = vm.createVcpu();
    const g = 2 ** 30 / 4096;
    let n = 0;
    const src = { iteration: 1, write: true, next: () => (n < 2 ? g + n++ : -1) };
    v.run(src, 10);
    ctx.hostThread.drain();
    expect(audit(host, [vm]).ok).toBe(true);
    // Forge a TLB entry that points gfn g at the frame of gfn g+1, as a missed flush would leave.
    const wrong = vm.memslots[0]!.vma!.lookup(vm.memslots[0]!.vmaOffset + 1);
    tlbFill(v.w, g, wrong, 0x3 | (1 << 8) | (1 << 9) | (1 << 11));
    n = 0;
    const one = { iteration: 2, write: true, next: () => (n++ < 1 ? g : -1) };
    v.run(one, 10);
    const a = audit(host, [vm]);
    expect(a.violations.map((x) => x.kind)).toContain('stale-write');
  });
});
