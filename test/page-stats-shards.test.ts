// pages_4k/2m/1g are sharded (src/kvm/mmu/page-stats.ts): a vCPU's faults count in the vCPU's
// own words, the VMM's changes in the VM's, and getStats() sums them. One VM's two vCPUs fault
// on two workers: no fault may write the VM-wide shard (the cache line both workers would fight
// over), each vCPU's shard holds exactly its own leaves, stats read while they run never exceed
// what is mapped, and at quiescence the sum equals the audit's recount — also after the VMM
// zapped (its own shard goes negative, the sum stays exact).
import { describe, expect, it } from 'vitest';
import { Runner, audit, config, createMemstressVms, memstressStream, trackWorkerThreads, VmLayout, VcpuLayout } from './fixtures/dist.js';

describe('page stats sharded per vCPU', () => {
  it('two vCPUs of one VM on two workers count in their own shards; the sum is exact', async () => {
    const c = config({ vcpus: 2, bytesPerVcpu: 16 * 2 ** 20, workers: 2 });
    const s = createMemstressVms(c);
    const vm = s.vms[0]!;
    const runner = new Runner(s.host, s.vms, { workers: 2, cost: s.cost, sliceAccesses: 256 });
    const threads = trackWorkerThreads(runner);
    const pages = s.layout.pagesPerVcpu;
    try {
      let done = false;
      const p = runner.phase('fault', (ref) => memstressStream(c, s.layout, ref, 0, 'sequential', 100, 1)).finally(() => (done = true));
      // Read while they run: a sum of shards, never more than both regions.
      const seen: number[] = [];
      while (!done) {
        seen.push(vm.getStats().pages_4k);
        await new Promise((r) => setImmediate(r));
      }
      await p;
      expect([...threads.values()].filter((n) => n > 0).length).toBe(2);
      expect(Math.max(...seen)).toBeLessThanOrEqual(2 * pages);
      // No fault wrote the VM-wide words.
      expect([0, 1, 2].map((l) => Atomics.load(vm.w, VmLayout.kVmStatPages4k + l))).toEqual([0, 0, 0]);
      // Each vCPU's shard: one 4K leaf per page it faulted, nothing else.
      for (let i = 0; i < 2; i++) {
        expect(Atomics.load(vm.vcpuWords[i]!, VcpuLayout.kVcpuStatPages4k)).toBe(pages);
      }
      expect(vm.getStats().pages_4k).toBe(2 * pages);
      expect(audit(s.host, s.vms).violations).toEqual([]);
      // The VMM zaps half of vCPU 0's region: its own shard goes negative, the sum is exact.
      const g0 = s.layout.gpa / 4096;
      vm.invalidateRange(g0, g0 + pages / 2);
      expect(Atomics.load(vm.w, VmLayout.kVmStatPages4k)).toBe(-pages / 2);
      expect(vm.getStats().pages_4k).toBe(2 * pages - pages / 2);
      expect(audit(s.host, s.vms).violations).toEqual([]);
    } finally {
      await runner.close();
    }
  });
});
