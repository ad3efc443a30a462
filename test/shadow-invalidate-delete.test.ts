// The shadow MMU's teardown paths with vCPUs on two workers between them:
//  - an mmu_notifier invalidation (kvm_unmap_gfn_range -> kvm_zap_rmap) of part of the data slot
//    drops exactly the SPTEs in those gfns' rmaps (pages_4k falls by the range), and they fault
//    back (pf_fixed = the range);
//  - deleting the data slot zaps every shadow page through active_mmu_pages (the zap-all quirk),
//    the pool's pages balance in the audit, and a recreated slot faults in again.
import { describe, expect, it } from 'vitest';
import { Runner, audit, config, createMemstressVms, memstressStream, trackWorkerThreads, expectBothWorkersRan } from './fixtures/dist.js';

describe('shadow MMU: invalidation and memslot deletion', () => {
  it('invalidateRange zaps exactly the range through the rmaps; deleting the slot zaps all; both fault back', async () => {
    const c = config({ vcpus: 4, bytesPerVcpu: 2 * 2 ** 20, backing: 'anonymous', workers: 2, mmu: 'shadow', guestPt: '4k' });
    const s = createMemstressVms(c);
    const vm = s.vms[0]!;
    const runner = new Runner(s.host, s.vms, { workers: 2, cost: s.cost, sliceAccesses: 256 });
    const threads = trackWorkerThreads(runner);
    const pages = s.layout.guestPages;
    const base = s.layout.gpa / 4096;
    const fixed = () => vm.vcpuStats().reduce((n, v) => n + v.pf_fixed, 0);
    const phase = (name: string, it: number) => runner.phase(name, (ref) => ({ ...memstressStream(c, s.layout, ref, 0, 'sequential', 100, it) }));
    try {
      await phase('populate', 1);
      expectBothWorkersRan(threads);
      expect(audit(s.host, s.vms).violations).toEqual([]);
      expect(vm.getStats().pages_4k).toBe(pages);
      // Invalidate 300 pages across vCPU 0's and 1's regions (not 2M aligned).
      const g0 = base + 400;
      const g1 = g0 + 300;
      vm.invalidateRange(g0, g1);
      const a = audit(s.host, s.vms);
      expect(a.violations).toEqual([]);
      expect(vm.getStats().pages_4k).toBe(pages - 300);
      const slot = vm.slots.get(1)!;
      const rmapHead = (g: number) => vm.rmaps.headIndex(vm.slotRmapBase(slot), slot.baseGfn, 1, g);
      for (let g = base; g < base + pages; g++) expect(vm.rmaps.count(rmapHead(g))).toBe(g >= g0 && g < g1 ? 0 : 1);
      const f0 = fixed();
      await phase('refault', 2);
      expect(fixed() - f0).toBe(300);
      expect(vm.getStats().pages_4k).toBe(pages);
      expect(audit(s.host, s.vms).violations).toEqual([]);
      // Delete the data slot: zap-all through active_mmu_pages.
      const region = { slot: 1, flags: 0, guestPhysAddr: slot.baseGfn * 4096, memorySize: slot.npages * 4096, userspaceAddr: slot.userspaceAddr };
      const zapped = vm.getStats().mmu_shadow_zapped;
      vm.setUserMemoryRegion2({ ...region, memorySize: 0 });
      s.ctx.hostThread.drain();
      const st = vm.getStats();
      expect(st.mmu_shadow_zapped).toBeGreaterThan(zapped);
      expect(st.pages_4k).toBe(0);
      expect(audit(s.host, s.vms).violations).toEqual([]);
      vm.setUserMemoryRegion2(region);
      const f1 = fixed();
      await phase('recreated', 3);
      expect(fixed() - f1).toBe(pages);
      expect(vm.getStats().pages_4k).toBe(pages);
      expect(audit(s.host, s.vms).violations).toEqual([]);
    } finally {
      await runner.close();
    }
  });
});
