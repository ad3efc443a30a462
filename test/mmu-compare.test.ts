// mmu-compare reproduces the shape of the TDP MMU cover letter's comparison in modeled time: with
// many vCPUs demand-faulting through userfaultfd, the shadow MMU's vCPUs spend most of the run
// waiting for mmu_lock (every fault holds it for write) and the TDP MMU (faults share it for
// read) finishes in a fraction of the time; with few vCPUs the two are close. Lazy rmaps allocate
// nothing until a nested guest's first shadow root (then ~0.2 % of guest memory, the spike
// reported); eager rmaps have it from the start. Results are deterministic on one worker, and a
// --resume run reuses what is in --runs-dir.
import { describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mmuh } from './fixtures/mmuh.js';

function compare(args: string[], dir = mkdtempSync(join(tmpdir(), 'mmu-compare-'))) {
  const json = join(dir, 'r.json');
  const r = mmuh(['run', 'mmu-compare', '--workers', '1', '--runs-dir', join(dir, 'runs'), '--json', json, ...args]);
  expect(r.code, r.err + r.out).toBe(0);
  return { out: r.out, res: JSON.parse(readFileSync(json, 'utf8')) as { metrics: Record<string, number>; audit: { ok: boolean } }, dir };
}

describe('mmu-compare', () => {
  it('at 192 vCPUs the shadow MMU waits for mmu_lock most of the run and the TDP MMU takes a fraction of its time; at 2 vCPUs they are close', () => {
    const big = compare(['-v', '192', '-b', '2M', '-u', 'MISSING', '--variants', 'tdp,shadow']);
    expect(big.res.audit.ok).toBe(true);
    const m = big.res.metrics;
    expect(m['headline.v192.w1.shadowLockWaitShare']).toBeGreaterThan(0.5);
    expect(m['headline.v192.w1.tdpShareOfShadow']).toBeLessThan(0.5);
    // Plain TDP faults only share mmu_lock: no modeled wait at all.
    expect(m['demand-paging.tdp.v192.w1.lockWaitShare']).toBe(0);
    expect(big.out).toMatch(/^headline \(192 vCPUs, 1 worker\(s\), modeled\): the TDP MMU finished in [\d.]+ % of the shadow MMU's time/m);
    const small = compare(['-v', '2', '-b', '2M', '-u', 'MISSING', '--variants', 'tdp,shadow']);
    expect(small.res.metrics['headline.v2.w1.shadowLockWaitShare']).toBeLessThan(0.05);
    expect(small.res.metrics['headline.v2.w1.tdpShareOfShadow']).toBeGreaterThan(0.8);
  });

  it('lazy rmaps: none until a nested guest runs, then ~0.2 % of guest memory with the allocation reported; eager: from the start', () => {
    const noL2 = compare(['-v', '2', '-b', '16M', '--variants', 'tdp,tdp-eager']);
    const m = noL2.res.metrics;
    expect(m['demand-paging.tdp.v2.w1.rmapBytes']).toBe(0);
    const eager = m['demand-paging.tdp-eager.v2.w1.rmapBytes']!;
    const guest = 2 * 16 * 2 ** 20;
    expect(eager / guest).toBeGreaterThan(0.00195);
    expect(eager / guest).toBeLessThan(0.0021);
    const l2 = compare(['-v', '2', '-b', '16M', '--variants', 'tdp', '--l2-at', '1000']);
    expect(l2.res.metrics['demand-paging.tdp.v2.w1.rmapBytes']).toBeGreaterThan(0);
    expect(l2.res.metrics['demand-paging.tdp.v2.w1.lazyRmapAllocKiB']).toBeGreaterThan(0);
    expect(l2.res.metrics['demand-paging.tdp.v2.w1.lazyRmapAllocModeledUs']).toBeGreaterThan(0);
    expect(l2.out).toMatch(/lazy rmaps: the first shadow root \(L2 launched\) allocated \d+ KiB of rmaps/);
    expect(l2.res.audit.ok).toBe(true);
    // sp->shadowed_translation (2 KiB per page-table page) exists only once shadow pages do, as
    // KVM allocates it per shadow page: a TDP VM without L2 carries only the per-page words.
    // 256 MiB, so that the page-table pool grows past its initial 64 pages.
    const breakdown = (args: string[]): Record<string, number> => {
      const r = compare(['-v', '1', '-b', '256M', '--variants', 'tdp', ...args]);
      return (JSON.parse(readFileSync(join(r.dir, 'runs', 'demand-paging.tdp.v1.w1.json'), 'utf8')) as { memory: { breakdown: Record<string, number> } }).memory.breakdown;
    };
    const before = breakdown([]), after = breakdown(['--l2-at', '1000']);
    expect(before.shadowPages! / before.ptPool!).toBeLessThan(0.2); // control words and 40 B per page; 2 KiB more with it
    expect(after.shadowPages! / after.ptPool!).toBeGreaterThan(0.4);
  });

  it('is deterministic on one worker, and --resume reuses the runs it has', () => {
    const a = compare(['-v', '8', '-b', '2M', '-u', 'MISSING', '--variants', 'tdp,shadow']);
    const b = compare(['-v', '8', '-b', '2M', '-u', 'MISSING', '--variants', 'tdp,shadow']);
    for (const k of Object.keys(a.res.metrics).filter((k) => !k.endsWith('wallNs'))) expect(b.res.metrics[k], k).toEqual(a.res.metrics[k]);
    expect(readdirSync(join(a.dir, 'runs')).sort()).toEqual(['demand-paging.shadow.v8.w1.json', 'demand-paging.tdp.v8.w1.json']);
    const again = compare(['-v', '8', '-b', '2M', '-u', 'MISSING', '--variants', 'tdp,shadow', '--resume'], a.dir);
    expect(again.out.match(/reusing /g)?.length).toBe(2);
    expect(again.res.metrics['demand-paging.shadow.v8.w1.wallNs']).toBe(a.res.metrics['demand-paging.shadow.v8.w1.wallNs']);
  });
});
