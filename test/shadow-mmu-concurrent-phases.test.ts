// The shadow MMU across phases with vCPUs on two workers, audited after every phase: populate
// (stores), a read pass, a pass of stores into slot 0 — the guest's code page and its own page
// tables, which every vCPU's walk uses — and a last store pass over the data. Stores to shadowed
// tables from both workers trap and are emulated (pf_emulate = mmu_pte_write), none is mapped
// writable (audit 'writable-guest-pt'), and the data pages whose shadow entries they dropped
// fault back, so the last pass ends with every data page mapped once again.
import { describe, expect, it } from 'vitest';
import { Runner, audit, config, createMemstressVms, memstressStream, trackWorkerThreads, expectBothWorkersRan } from './fixtures/dist.js';

describe('shadow MMU: phases from two workers, page-table stores included', () => {
  for (const [backing, guestPt] of [['anonymous', '4k'], ['anonymous', '2m'], ['anonymous_thp', '2m']] as const) {
    it(`${backing}, guest ${guestPt}: audit clean after every phase; table stores emulated`, async () => {
      const c = config({ vcpus: 4, bytesPerVcpu: 2 ** 21, backing, workers: 2, mmu: 'shadow', guestPt });
      const s = createMemstressVms(c);
      const vm = s.vms[0]!;
      const runner = new Runner(s.host, s.vms, { workers: 2, cost: s.cost, sliceAccesses: 128 });
      const threads = trackWorkerThreads(runner);
      const slot0 = vm.slots.get(0)!.npages;
      const mapped = () => { const st = vm.getStats(); return st.pages_4k + 512 * st.pages_2m; };
      const sum = (k: 'pf_emulate' | 'pf_fixed') => vm.vcpuStats().reduce((n, v) => n + v[k], 0);
      const check = (what: string) => expect(audit(s.host, s.vms).violations, what).toEqual([]);
      try {
        await runner.phase('populate', (ref) => ({ ...memstressStream(c, s.layout, ref, 0, 'permute', 100, 1), seed: 7 + ref.vcpu }));
        expectBothWorkersRan(threads);
        check('populate');
        expect(mapped()).toBe(s.layout.guestPages);
        await runner.phase('read', (ref) => ({ ...memstressStream(c, s.layout, ref, 0, 'random', 0, 2), accesses: 2000, seed: 9 + ref.vcpu }));
        check('read');
        expect(sum('pf_emulate')).toBe(0);
        // Every vCPU stores to every page of slot 0 (code + tables), in its own order.
        await runner.phase('pt-stores', (ref) => ({ ...memstressStream(c, s.layout, ref, 0, 'permute', 100, 3), baseGfn: 0, pages: slot0, seed: 11 + ref.vcpu }));
        check('pt-stores');
        const emulated = sum('pf_emulate');
        expect(emulated).toBeGreaterThan(0);
        expect(vm.getStats().mmu_pte_write).toBe(emulated);
        const before = sum('pf_fixed');
        await runner.phase('rewrite', (ref) => ({ ...memstressStream(c, s.layout, ref, 0, 'sequential', 100, 4) }));
        check('rewrite');
        // Every data gfn is mapped exactly once again (one rmap entry at 4K or at 2M).
        const slot = vm.slots.get(1)!;
        const head = (g: number, level: number) => vm.rmaps.headIndex(vm.slotRmapBase(slot), slot.baseGfn, level, g);
        const unmapped: number[] = [];
        for (let g = slot.baseGfn; g < slot.endGfn; g++) if (vm.rmaps.count(head(g, 1)) + vm.rmaps.count(head(g & -512, 2)) !== 1) unmapped.push(g);
        expect(unmapped).toEqual([]);
        // What the table stores dropped faulted back in (only there: the rest was still mapped).
        expect(sum('pf_fixed') - before).toBeLessThanOrEqual(s.layout.guestPages);
      } finally {
        await runner.close();
      }
    });
  }
});
