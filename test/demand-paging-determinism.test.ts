// Same seed on one worker: identical operation counts and modeled times, run to run.
import { describe, expect, it } from 'vitest';
import { config, runDemandPaging, quietIo } from './fixtures/dist.js';

const flags = { slice: 512, 'wall-sample': 16 };

async function once(seed: number) {
  const c = config({ vms: 2, vcpus: 2, bytesPerVcpu: 8 * 2 ** 20, workers: 1, seed, backing: 'anonymous_thp' });
  const r = await runDemandPaging(c, true, flags, quietIo);
  const counters = { ...r.counters };
  delete counters.lock_wait_ns; // wall time, never priced
  const modeledHist = Object.fromEntries(Object.entries(r.histograms).filter(([k]) => k.endsWith('/modeled')).map(([k, h]) => [k, h.encoded]));
  return { counters, phases: r.phases.map((p) => p.modeledNs), modeledHist, audit: r.audit.ok, stats: r.stats };
}

describe('determinism', () => {
  it('one worker, same seed: identical counters, modeled times and modeled histograms', async () => {
    const a = await once(42);
    const b = await once(42);
    expect(a.audit).toBe(true);
    expect(b.counters).toEqual(a.counters);
    expect(b.phases).toEqual(a.phases);
    expect(b.modeledHist).toEqual(a.modeledHist);
    expect(b.stats).toEqual(a.stats);
    expect(a.counters.guest_access).toBe(2 * 2 * 2048);
  });
  it('the seed matters: random order differs between seeds', async () => {
    const a = await once(1);
    const b = await once(2);
    expect(a.counters.guest_access).toBe(b.counters.guest_access);
    // THP: the order in which 4K pages fault decides nothing about counts here, so compare the
    // modeled histogram encodings, which carry per-fault latencies in order-independent form,
    // and instead check the stream itself differs.
    const { MemstressStream } = await import('../dist/src/workload/memstress.js');
    const s1 = new MemstressStream({ baseGfn: 0, pages: 1000, order: 'permute', writePercent: 100, seed: 1, vm: 0, vcpu: 0, iteration: 1 });
    const s2 = new MemstressStream({ baseGfn: 0, pages: 1000, order: 'permute', writePercent: 100, seed: 2, vm: 0, vcpu: 0, iteration: 1 });
    const seq = (s: { next(): number }) => Array.from({ length: 1000 }, () => s.next());
    const q1 = seq(s1);
    const q2 = seq(s2);
    expect(q1).not.toEqual(q2);
    expect([...q1].sort((x, y) => x - y)).toEqual(Array.from({ length: 1000 }, (_, i) => i));
  });
});
