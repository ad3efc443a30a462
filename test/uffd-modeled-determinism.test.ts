// userfaultfd runs' modeled figures do not depend on how readers and vCPUs interleaved: on one
// worker every op count (except the unpriced wait-queue scan and lock waits) and the modeled
// phase time repeat exactly; the modeled time is the same whether the readers share the vCPU
// worker or run on a dedicated thread; and -d adds exactly the delay to every fault of a vCPU.
import { describe, expect, it } from 'vitest';
import { readFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mmuh } from './fixtures/mmuh.js';

function run(extra: string[]): any {
  const json = join(mkdtempSync(join(tmpdir(), 'uffd-det-')), 'r.json');
  const r = mmuh(['run', 'demand-paging', '-b', '2M', '-v', '4', '--workers', '1', '-u', 'MISSING', '-r', '2', '-q', '--json', json, ...extra]);
  if (r.code !== 0) throw new Error(r.err);
  return JSON.parse(readFileSync(json, 'utf8'));
}

const kUnpriced = new Set(['uffd_wake_scan', 'lock_wait_ns']);
function priced(c: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(c).filter(([k]) => !kUnpriced.has(k)));
}

describe('userfaultfd modeled time', () => {
  it('repeats exactly on one worker, with readers beside the vCPUs or on their own thread', () => {
    const a = run([]);
    const b = run([]);
    const t = run(['--uffd-threads', '1']);
    const t2 = run(['--uffd-threads', '1']);
    expect(priced(b.counters)).toEqual(priced(a.counters));
    expect(b.phases[0].modeledNs).toBe(a.phases[0].modeledNs);
    expect(priced(t2.counters)).toEqual(priced(t.counters));
    expect(t.phases[0].modeledNs).toBe(a.phases[0].modeledNs);
    expect(t.counters.uffd_copy).toBe(a.counters.uffd_copy);
  });
  it('-d 100 adds 100 us to each of a vCPU\'s faults', () => {
    const a = run([]);
    const d = run(['-d', '100']);
    const pagesPerVcpu = 512;
    expect(d.phases[0].modeledNs - a.phases[0].modeledNs).toBe(pagesPerVcpu * 100_000);
    expect(d.counters.uffd_delay_ns).toBe(4 * pagesPerVcpu * 100_000);
  });
});
