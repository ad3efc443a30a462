// The workload's MMIO knob (MemstressConfig.mmioEvery = N): each vCPU makes one access to a
// device page outside every memslot after every N guest-memory accesses; the worker runtime acts
// as the VMM, completing every KVM_EXIT_MMIO and running the vCPU again. Across workers (one VM's
// vCPUs split over two workers, racing to install the same MMIO SPTEs) the run completes, the
// audit is clean, and the mmio_exits vCPU stat equals floor(accesses / N) per vCPU, as the VMM
// counted them. Same seed on one worker: identical counters.
import { describe, expect, it } from 'vitest';
import { Runner, audit, config, createMemstressVms, kOp, memstressStream, runDemandPaging, quietIo } from './fixtures/dist.js';
import { renderText } from '../dist/src/report/text.js';
import { costVector, loadCostModel } from '../dist/src/metrics/cost-model.js';
import { kMmioPages } from '../dist/src/scenario/memstress-vm.js';

describe('MMIO accesses in a memstress workload', () => {
  it('2 workers, 1 VM x 4 vCPUs, one MMIO access per 64: audit ok, mmio_exits exact, both workers ran', async () => {
    const every = 64;
    const c = config({ vms: 1, vcpus: 4, bytesPerVcpu: 4 * 2 ** 20, workers: 2, mmioEvery: every });
    const setup = createMemstressVms(c);
    const runner = new Runner(setup.host, setup.vms, { workers: 2, cost: costVector(loadCostModel('default')), sliceAccesses: 100 });
    try {
      expect(runner.shards.map((s) => s.length)).toEqual([2, 2]);
      const phase = await runner.phase('mmio', (ref) => memstressStream(c, setup.layout, ref, setup.vms[ref.vm]!.id, 'sequential', 50, 1));
      const perVcpu = Math.floor(setup.layout.pagesPerVcpu / every);
      expect(perVcpu).toBe(16);
      // Every vCPU ran (on both workers) and retired its memory and MMIO accesses.
      expect(phase.vcpus.map((v) => v.accesses)).toEqual(new Array(4).fill(setup.layout.pagesPerVcpu + perVcpu));
      expect(phase.vcpus.map((v) => v.mmioExits)).toEqual(new Array(4).fill(perVcpu));
      const stats = setup.vms[0]!.vcpuStats();
      expect(stats.map((s) => s.mmio_exits)).toEqual(new Array(4).fill(perVcpu));
      expect(phase.counters[kOp.mmio_exit]).toBe(4 * perVcpu);
      // Each of the kMmioPages device pages faulted once per vCPU at most; the rest took the
      // cached MMIO SPTE (EPT misconfig: no pf_taken, no pf_emulate).
      const emulate = stats.reduce((s, v) => s + v.pf_emulate, 0);
      expect(emulate).toBeGreaterThanOrEqual(kMmioPages);
      expect(emulate).toBeLessThanOrEqual(4 * kMmioPages);
      expect(setup.vms[0]!.getStats().pages_4k).toBe(4 * setup.layout.pagesPerVcpu);
      expect(audit(setup.host, setup.vms).violations).toEqual([]);
    } finally {
      await runner.close();
    }
  });

  it('demand-paging with the knob: stats show mmio_exits; one worker and a seed give identical counters', async () => {
    const once = async () => {
      const c = config({ vms: 2, vcpus: 2, bytesPerVcpu: 2 ** 20, workers: 1, seed: 3, mmioEvery: 10 });
      const r = await runDemandPaging(c, true, { slice: 64, 'wall-sample': 16 }, quietIo);
      const counters = { ...r.counters };
      delete counters.lock_wait_ns;
      return { r, counters };
    };
    const a = await once();
    const b = await once();
    expect(a.r.audit.ok).toBe(true);
    expect(a.r.stats['demand-paging']!.total.mmio_exits).toBe(2 * 2 * Math.floor(256 / 10));
    expect(a.counters.mmio_exit).toBe(2 * 2 * 25);
    expect(a.counters.guest_access).toBe(2 * 2 * (256 + 25));
    expect(b.counters).toEqual(a.counters);
    // The terminal view adds the MMIO columns when there were MMIO exits.
    const header = renderText(a.r).split('\n').find((l) => l.startsWith('stats after'))!;
    expect(header).toMatch(/pf_emulate\s+mmio_exits$/);
    expect(b.r.stats).toEqual(a.r.stats);
  });
});
