// Faults of many vCPUs on one userfaultfd (-a) queue up and all resolve: with the readers held
// (the park hook: read() finds nothing), every vCPU on both workers queues its first fault and
// sleeps in GUP — nothing is mapped, the phase does not end — and once the readers go, every
// fault is resolved and woken: no lost wake-up, nothing left queued, the audit is clean. Run with
// readers beside the vCPUs and on a dedicated thread. A missing wake fails here with a timeout
// message, not a hang.
import { afterEach, describe, expect, it } from 'vitest';
import { Runner, audit, config, createMemstressVms, memstressStream, setupDemandPaging, waitFor } from './fixtures/dist.js';

const kVcpus = 8;
let runner: InstanceType<typeof Runner> | null = null;
afterEach(async () => {
  await runner?.close();
  runner = null;
});

function timeout(ms: number, what: string): Promise<never> {
  return new Promise((_, reject) => setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms).unref());
}


describe('many vCPUs fault on one userfaultfd', () => {
  for (const threads of [0, 1]) {
    it(`queue while the readers are held, all resolve once they run (${threads ? 'dedicated reader thread' : 'readers on the vCPU workers'})`, async () => {
      const c = config({ vcpus: kVcpus, bytesPerVcpu: 64 * 4096, workers: 2 });
      const s = createMemstressVms(c);
      const uffd = setupDemandPaging(s.host, s.vms, c, s.layout, { mode: 'MISSING', single: true, readers: 2, threads, delayUs: 0, realDelay: false });
      expect(uffd.uffds.length).toBe(1);
      const u = uffd.uffds[0]!;
      u.setPark(true);
      runner = new Runner(s.host, s.vms, { workers: 2, cost: s.cost, uffd: uffd.config });
      let ended = false;
      const phase = runner.phase('dp', (ref) => memstressStream(c, s.layout, ref, s.vms[ref.vm]!.id, 'sequential', 100, 1));
      phase.then(() => (ended = true), () => (ended = true));
      await waitFor(() => u.pending() === kVcpus, 20_000, `all ${kVcpus} vCPUs queue their first fault (pending ${u.pending()})`);
      // Every vCPU sleeps: nothing was mapped, nothing resolved, the phase is still running.
      const vma = s.vms[0]!.vmas[0]!;
      let mapped = 0;
      for (let i = 0; i < vma.npages; i++) if (vma.lookup(i) >= 0) mapped++;
      expect(mapped).toBe(0);
      expect(ended).toBe(false);
      expect(u.queued()).toBe(kVcpus);
      u.setPark(false);
      const out = await Promise.race([phase, timeout(30_000, 'vCPUs still asleep after the readers ran: a lost wake-up')]);
      const pages = kVcpus * 64;
      expect(out.uffdReaders!.reduce((n, r) => n + r.pages, 0)).toBe(pages);
      expect(out.vcpus.reduce((n, v) => n + v.accesses, 0)).toBe(pages);
      expect(u.queued()).toBe(0);
      const a = audit(s.host, s.vms);
      expect(a.violations).toEqual([]);
      expect(s.vms[0]!.getStats().pages_4k).toBe(pages);
    });
  }
});
