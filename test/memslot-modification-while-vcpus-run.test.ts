// One VM's two vCPUs fault and write on two workers while the VMM thread creates, moves,
// toggles dirty logging on and deletes memslots in a loop (memslot_modification_stress_test's
// shape, with KVM's rules: kvm_set_memslot() under SRCU, no vCPU stopped). After every phase the
// audit is clean (every leaf inside a slot, pages_4k equal to a recount, no store through a stale
// translation — content stamps on); stats read mid-run never exceed what can be mapped; and no
// dirty page is lost for the slot that logs throughout: the VMM harvests it (legacy GET, which
// write-protects what it reports) during every phase, and each phase's harvests together report
// every page, since every phase stores to all of it.
import { describe, expect, it } from 'vitest';
import { Runner, audit, Host, Vm, KVM_MEM_LOG_DIRTY_PAGES, trackWorkerThreads, expectBothWorkersRan } from './fixtures/dist.js';
import { Metrics } from '../dist/src/metrics/counters.js';
import { costVector, loadCostModel } from '../dist/src/metrics/cost-model.js';
import { kDefaultCostModelPath } from './fixtures/vm-ctx.js';

const kPages = 1024;
const G = 2 ** 32 / 4096;
/** Where slot C moves to and back from (inside the vCPUs' range too: faults follow it). */
const kC0 = G + 2 * kPages;
const kC1 = G + 3 * kPages;

describe('memslot create/move/flags/delete while two vCPUs run on two workers', () => {
  it('audit clean after every phase, stats bounded mid-run, nothing lost in the slot that logs', async () => {
    const host = Host.create({ memory: 128 * 2 ** 20, stamps: true });
    const cost = costVector(loadCostModel(kDefaultCostModelPath));
    const vm = Vm.create(host, 0, { metrics: new Metrics(cost), hostThread: host.thread() }, { maxVcpus: 2 });
    const hva = vm.mmap({ size: 3 * kPages * 4096, backing: 'anonymous' });
    const region = (slot: number, gfn: number, i: number, flags = 0, pages = kPages) => ({ slot, flags, guestPhysAddr: gfn * 4096, memorySize: pages * 4096, userspaceAddr: hva + i * kPages * 4096 });
    // A logs throughout; B has logging toggled; C comes and goes and moves.
    const A = region(1, G, 0, KVM_MEM_LOG_DIRTY_PAGES);
    const B = region(2, G + kPages, 1);
    vm.setUserMemoryRegion2(A);
    vm.setUserMemoryRegion2(B);
    vm.createVcpu();
    vm.createVcpu();
    const steps = [
      () => vm.setUserMemoryRegion2(region(3, kC0, 2)),
      () => vm.setUserMemoryRegion2({ ...B, flags: KVM_MEM_LOG_DIRTY_PAGES }),
      () => vm.setUserMemoryRegion2(region(3, kC1, 2)),
      () => vm.setUserMemoryRegion2(B),
      () => vm.setUserMemoryRegion2(region(3, kC0, 2)),
      () => vm.setUserMemoryRegion2(region(3, kC0, 2, 0, 0)),
    ];
    const runner = new Runner(host, [vm], { workers: 2, cost });
    const threads = trackWorkerThreads(runner);
    let done = 0;
    let maxSeen = 0;
    const harvested = new Uint32Array(kPages / 32);
    const harvest = () => {
      const bm = vm.getDirtyLog(1);
      for (let i = 0; i < bm.length; i++) harvested[i]! |= bm[i]!;
    };
    const reported = () => {
      let set = 0;
      for (let i = 0; i < kPages; i++) if ((harvested[i >>> 5]! >>> (i & 31)) & 1) set++;
      return set;
    };
    let midHarvests = 0;
    try {
      for (let phase = 0; phase < 4; phase++) {
        // Both vCPUs store to every page of A, B and C's two places, 12 times over, each in its
        // own order of the same range (sequential from different starts).
        const out = await runner.phase(`p${phase}`, (ref) => ({
          baseGfn: G, pages: 4 * kPages, accesses: 12 * 4 * kPages, order: ref.vcpu === 0 ? 'sequential' : 'random',
          writePercent: 100, seed: 7 + phase, vm: 0, vcpu: ref.vcpu, iteration: phase + 1,
        }), undefined, () => {
          steps[done++ % steps.length]!();
          harvest();
          midHarvests++;
          const st = vm.getStats();
          maxSeen = Math.max(maxSeen, st.pages_4k);
          // Read mid-run: never more 4K leaves than slots could hold (A, B, C at most).
          expect(st.pages_4k).toBeLessThanOrEqual(3 * kPages);
        });
        expect(out.vcpus.every((v) => v.accesses === 12 * 4 * kPages)).toBe(true);
        // Quiescent: stats equal a recount, every leaf in a slot, no stale store.
        expect(audit(host, [vm]).violations).toEqual([]);
        // The harvests of this phase (mid-run and now) report every page of A.
        harvest();
        expect(reported()).toBe(kPages);
        harvested.fill(0);
      }
      // Two threads both did work, and the VMM changed slots while they ran.
      expectBothWorkersRan(threads);
      expect(done).toBeGreaterThanOrEqual(8);
      expect(maxSeen).toBeGreaterThan(0);
      expect(midHarvests).toBe(done);
    } finally {
      await runner.close();
    }
  });
});
