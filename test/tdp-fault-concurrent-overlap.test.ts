// Several vCPUs on two workers fault the same pages at once (-o): every gfn is installed exactly
// once, losers see RET_PF_SPURIOUS or retry, and nothing is lost or leaked.
import { describe, expect, it } from 'vitest';
import { Runner, audit, config, createMemstressVms, memstressStream, kOp, trackWorkerThreads, expectBothWorkersRan } from './fixtures/dist.js';

async function race(backing: 'anonymous' | 'anonymous_hugetlb_2mb', bytes: number) {
  const c = config({ vcpus: 4, bytesPerVcpu: bytes, overlap: true, backing, workers: 2 });
  const s = createMemstressVms(c);
  const runner = new Runner(s.host, s.vms, { workers: 2, cost: s.cost, sliceAccesses: 256 });
  try {
    const threads = trackWorkerThreads(runner);
    const p = await runner.phase('race', (ref) => ({ ...memstressStream(c, s.layout, ref, 0, 'permute', 100, 1), seed: 100 + ref.vcpu }));
    for (const v of p.vcpus) expect(v.accesses).toBe(bytes / 4096);
    const vcpus = s.vms[0]!.vcpuStats();
    const sum = (k: 'pf_taken' | 'pf_fixed' | 'pf_spurious') => vcpus.reduce((a, v) => a + v[k], 0);
    return { stats: s.vms[0]!.getStats(), taken: sum('pf_taken'), fixed: sum('pf_fixed'), spurious: sum('pf_spurious'), retries: p.counters[kOp.fault_retry]!, audit: audit(s.host, s.vms), threads };
  } finally {
    await runner.close();
  }
}

describe('concurrent TDP faults on one VM from two workers', () => {
  it('4K: each page installed exactly once; stats equal the recount', async () => {
    const pages = (16 * 2 ** 20) / 4096;
    const r = await race('anonymous', 16 * 2 ** 20);
    expectBothWorkersRan(r.threads);
    expect(r.audit.violations).toEqual([]);
    expect(r.stats.pages_4k).toBe(pages);
    expect(r.fixed).toBe(pages);
    // Every fault ends in exactly one of FIXED, SPURIOUS or RETRY.
    expect(r.taken).toBe(r.fixed + r.spurious + r.retries);
  });
  it('2M hugetlb: each huge page installed exactly once, from a pool sized exactly for the guest', async () => {
    // Repeated: racing host faults on one hugetlb page must not take two pages from the pool
    // (the hugetlb fault mutex), or the last page's fault finds the pool empty (EFAULT).
    for (let rep = 0; rep < 5; rep++) {
      const r = await race('anonymous_hugetlb_2mb', 64 * 2 ** 20);
      expectBothWorkersRan(r.threads);
      expect(r.audit.violations).toEqual([]);
      expect(r.stats.pages_2m).toBe(32);
      expect(r.stats.pages_4k).toBe(0);
      expect(r.fixed).toBe(32);
      expect(r.taken).toBe(r.fixed + r.spurious + r.retries);
    }
  });
});
