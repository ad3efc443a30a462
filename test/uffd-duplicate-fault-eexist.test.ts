// Two vCPUs fault on the same page at once (-o, both start at the same gfn): each queues its own
// message, as each faulting task queues its own wait-queue entry in Linux. With both messages in
// two readers' hands, the first UFFDIO_COPY maps the page and wakes both vCPUs; the second finds
// it mapped and gets EEXIST (counted, tolerated as demand_paging_test does). The page is copied
// once: no second folio (the hugetlb pool is sized exactly for the guest, so a double copy runs
// it dry), the frame accounting balances, the audit is clean.
import { afterEach, describe, expect, it } from 'vitest';
import { Runner, audit, config, createMemstressVms, kOp, memstressStream, setupDemandPaging, waitFor } from './fixtures/dist.js';

let runner: InstanceType<typeof Runner> | null = null;
afterEach(async () => {
  await runner?.close();
  runner = null;
});


describe('a page faulted by two vCPUs at once', () => {
  for (const backing of ['anonymous', 'anonymous_hugetlb_2mb'] as const) {
    it(`is copied once; the second UFFDIO_COPY gets EEXIST (${backing})`, async () => {
      const c = config({ vcpus: 2, bytesPerVcpu: 4 * 2 ** 20, overlap: true, backing, workers: 2 });
      const s = createMemstressVms(c);
      // Two readers on one reader thread: each pass reads both messages before handling either.
      const uffd = setupDemandPaging(s.host, s.vms, c, s.layout, { mode: 'MISSING', single: true, readers: 2, threads: 1, delayUs: 0, realDelay: false });
      const u = uffd.uffds[0]!;
      u.setPark(true);
      runner = new Runner(s.host, s.vms, { workers: 2, cost: s.cost, uffd: uffd.config });
      const phase = runner.phase('dp', (ref) => memstressStream(c, s.layout, ref, s.vms[ref.vm]!.id, 'sequential', 100, 1));
      phase.catch(() => {});
      await waitFor(() => u.pending() === 2, 20_000, `both vCPUs queue a fault on the first page (pending ${u.pending()})`);
      expect(u.waiterIdx(0)).toBe(u.waiterIdx(1));
      u.setPark(false);
      const out = await phase;
      const rs = out.uffdReaders!;
      const eexist = rs.reduce((n, r) => n + r.eexist, 0);
      const resolved = rs.reduce((n, r) => n + r.pages, 0);
      expect(eexist).toBeGreaterThanOrEqual(1);
      expect(out.counters[kOp.uffd_eexist]).toBe(eexist);
      expect(out.counters[kOp.uffd_copy]).toBe(resolved + eexist);
      const granules = s.layout.guestPages / (s.layout.backingPageBytes / 4096);
      // Each granule copied exactly once, every vCPU fault woken.
      expect(resolved).toBe(granules);
      expect(out.counters[kOp.frame_alloc]).toBe(granules);
      expect(s.host.ownedPages(s.vms[0]!.owner)).toBe(s.layout.guestPages);
      expect(u.queued()).toBe(0);
      expect(audit(s.host, s.vms).violations).toEqual([]);
    });
  }
});
