// `mmuh run demand-paging -u MISSING -r 2` prints demand_paging_test's lines, in its order, and
// the userfaultfd resolve-latency histograms (wall and modeled, one entry per resolved page);
// every page came through UFFDIO_COPY (no page populated in the fault path), two readers per
// uffd, one uffd per vCPU region.
import { describe, expect, it } from 'vitest';
import { readFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mmuh } from './fixtures/mmuh.js';

describe('demand-paging -u MISSING -r 2', () => {
  it("prints the selftest's lines and the uffd histograms", () => {
    const json = join(mkdtempSync(join(tmpdir(), 'uffd-')), 'r.json');
    const r = mmuh(['run', 'demand-paging', '-b', '8M', '-v', '2', '--workers', '2', '-u', 'MISSING', '-r', '2', '--json', json]);
    expect(r.code, r.err).toBe(0);
    const lines = r.out.split('\n');
    const order = [
      /^Finished creating vCPUs and starting uffd threads$/, /^Started all vCPUs$/, /^All vCPU threads joined$/,
      /^Total guest execution time:\t\d+\.\d{9}s$/, /^Per-vcpu demand paging rate:\t\d+\.\d{6} pgs\/sec\/vcpu$/,
      /^Overall demand paging rate:\t\d+\.\d{6} pgs\/sec$/,
    ];
    let at = -1;
    for (const re of order) {
      const i = lines.findIndex((l, k) => k > at && re.test(l));
      expect(i, `${re} after line ${at}`).toBeGreaterThan(at);
      at = i;
    }
    const pages = 2 * 2048;
    for (const clock of ['wall', 'modeled']) {
      const row = lines.find((l) => l.startsWith(`demand-paging.uffd_resolve/${clock} `));
      expect(row, clock).toBeDefined();
      if (clock === 'modeled') expect(row!.split(/\s+/)[1]).toBe(String(pages));
    }
    expect(r.out).toMatch(/^audit: ok$/m);
    const res = JSON.parse(readFileSync(json, 'utf8'));
    expect(res.metrics).toMatchObject({ uffds: 2, uffdReaders: 4, uffdResolved: pages, uffdEexist: 0, uffdLeftQueued: 0 });
    expect(res.counters.uffd_copy).toBe(pages);
    expect(res.counters.host_fault).toBe(0);
    expect(res.counters.page_zero_4k).toBe(0);
    expect(res.counters.uffd_fault).toBe(pages);
    expect(res.histograms['demand-paging.uffd_resolve/modeled'].count).toBe(pages);
  });
});
