// memslot-modification-stress with a VM's vCPUs on two workers: the VMM thread adds and deletes
// the dummy memslot while both workers fault (with KVM_X86_QUIRK_SLOT_ZAP_ALL every delete zaps
// all they mapped). At the end the audit is clean — every leaf inside a slot, page stats equal a
// recount, no store through a stale translation (content stamps on) — and every fault is
// accounted for: pf_taken = fixed + spurious + emulated + retried, the fault histogram holds each
// one that was not emulated, and every vCPU stopped at a pass boundary (GUEST_SYNC).
import { describe, expect, it } from 'vitest';
import { Piscina } from 'piscina';
import { findScenario, parseFlags, quietIo } from './fixtures/dist.js';

describe('memslot-modification-stress on two workers', () => {
  for (const quirk of [[], ['-q']]) {
    it(`audit clean, every fault accounted for ${quirk.join(' ')}`, async () => {
      // Which worker threads ran phase tasks, and how many guest accesses each retired.
      const threads = new Map<number, number>();
      const proto = Piscina.prototype as unknown as { run(task: unknown, opts?: unknown): Promise<{ threadId: number; vcpus: { accesses: number }[] }> };
      const run = proto.run;
      proto.run = async function (this: unknown, task: unknown, opts?: unknown) {
        const r = await run.call(this, task, opts);
        threads.set(r.threadId, (threads.get(r.threadId) ?? 0) + r.vcpus.reduce((a, v) => a + v.accesses, 0));
        return r;
      };
      try {
        const s = findScenario('memslot-modification-stress')!;
        const r = await s.run(parseFlags(s.flags, ['-v', '4', '-b', '16M', '-i', '150', '--workers', '2', ...quirk]), quietIo);
        expect(r.audit.violations).toEqual([]);
        const m = r.metrics;
        expect(m.memslotIterations).toBe(150);
        expect(m.faultsTaken).toBeGreaterThanOrEqual(4 * 4096);
        expect(m.faultsUnaccounted).toBe(0);
        expect(m.wholePasses).toBe(true);
        expect(m.minPasses).toBeGreaterThanOrEqual(1);
        const st = r.stats.stress!.total;
        expect(r.histograms['stress.page_fault/modeled']!.count).toBe((st.pf_taken ?? 0) - (st.pf_emulate ?? 0));
        expect(r.histograms['set_memory_region.create/modeled']!.count).toBe(150);
        expect(r.histograms['set_memory_region.delete/modeled']!.count).toBe(150);
        // 4 vCPUs x 4096 pages: at most everything is mapped at the end, and -q zaps nothing they map.
        expect(st.pages_4k).toBeLessThanOrEqual(4 * 4096);
        if (quirk.length > 0) expect(st.pages_4k).toBe(4 * 4096);
        expect(r.config.vmmAtRounds).toBe(false);
        expect(threads.size).toBe(2);
        expect([...threads.keys()]).not.toContain(0);
        expect([...threads.values()].every((n) => n > 0)).toBe(true);
      } finally {
        proto.run = run;
      }
    }, 60_000);
  }
});
