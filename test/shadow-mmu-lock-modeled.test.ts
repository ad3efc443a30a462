// mmu_lock in modeled time (mmu-lock.ts with the VM's lock timeline): N vCPUs on one worker take
// turns in wall time, but in modeled time they fault at once from the phase's start, and the
// shadow MMU's write holds serialise on the timeline — every demand fault records its wait in
// <phase>.mmu_lock_wait_write, and the total wait grows with N. The TDP MMU (no lock timeline by
// default) has none. One worker gives the same counters and modeled ns every run.
import { describe, expect, it } from 'vitest';
import { Runner, config, createMemstressVms, memstressStream, kOp } from './fixtures/dist.js';

async function populate(mmu: 'tdp' | 'shadow', vcpus: number) {
  const c = config({ vcpus, bytesPerVcpu: 2 ** 20, backing: 'anonymous', workers: 1, mmu, guestPt: '4k' });
  const s = createMemstressVms(c);
  const runner = new Runner(s.host, s.vms, { workers: 1, cost: s.cost, sliceAccesses: 64 });
  try {
    const p = await runner.phase('populate', (ref) => memstressStream(c, s.layout, ref, 0, 'sequential', 100, 1));
    const h = runner.histograms.summaries()['populate.mmu_lock_wait_write/modeled'];
    return {
      wait: p.counters[kOp.lock_wait_modeled_ns]!, writes: p.counters[kOp.lock_write]!, histCount: h?.count ?? 0,
      counters: Array.from(p.counters), modeled: p.vcpus.map((v) => v.modeledNs), pfFixed: s.vms[0]!.vcpuStats().reduce((n, v) => n + v.pf_fixed, 0),
    };
  } finally {
    await runner.close();
  }
}

describe('shadow MMU: mmu_lock waits in modeled time', () => {
  it('grow with the number of vCPUs; one histogram sample per vCPU write acquisition; TDP has none; deterministic', async () => {
    const waits: number[] = [];
    for (const n of [1, 2, 4]) {
      const r = await populate('shadow', n);
      expect(r.pfFixed).toBe(256 * n);
      // Every demand fault took the write lock once and its wait was recorded.
      expect(r.writes).toBe(r.pfFixed);
      expect(r.histCount).toBe(r.writes);
      waits.push(r.wait);
    }
    // One vCPU never waits for itself; more vCPUs wait more.
    expect(waits[0]).toBe(0);
    expect(waits[1]).toBeGreaterThan(0);
    expect(waits[2]).toBeGreaterThan(waits[1]! * 1.5);
    const tdp = await populate('tdp', 4);
    expect(tdp.wait).toBe(0);
    expect(tdp.histCount).toBe(0);
    // One worker: the same interleaving, counters and modeled clocks twice.
    const a = await populate('shadow', 4);
    const b = await populate('shadow', 4);
    expect(b.counters).toEqual(a.counters);
    expect(b.modeled).toEqual(a.modeled);
    expect(a.wait).toBe(waits[2]);
  });
});
