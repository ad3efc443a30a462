// -u MINOR over shared backings: the page cache is prefaulted through the alias (prefault_mem()),
// so every vCPU fault is a minor fault the reader resolves with UFFDIO_CONTINUE, mapping the
// cached folio: nothing is allocated or zeroed in the fault path, shared_hugetlb maps 2M pages,
// and the audit (page cache + mapping references on each folio) is clean.
import { describe, expect, it } from 'vitest';
import { readFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mmuh } from './fixtures/mmuh.js';

function run(backing: string): { code: number | null; err: string; res: any } {
  const json = join(mkdtempSync(join(tmpdir(), 'uffd-minor-')), 'r.json');
  const r = mmuh(['run', 'demand-paging', '-b', '8M', '-v', '2', '--workers', '2', '-s', backing, '-u', 'MINOR', '--json', json, '-q']);
  return { code: r.code, err: r.err, res: r.code === 0 ? JSON.parse(readFileSync(json, 'utf8')) : null };
}

describe('demand-paging -u MINOR', () => {
  it('over shared_hugetlb: UFFDIO_CONTINUE of each 2M page cache page, mapped huge', () => {
    const { code, err, res } = run('shared_hugetlb');
    expect(code, err).toBe(0);
    expect(res.audit.ok).toBe(true);
    expect(res.counters.uffd_continue).toBe(8);
    expect(res.counters.uffd_copy).toBe(0);
    expect(res.counters.host_fault).toBe(0);
    expect(res.counters.frame_alloc).toBe(0);
    expect(res.stats['demand-paging'].total.pages_2m).toBe(8);
    expect(res.metrics.uffdResolved).toBe(8);
  });
  it('over shmem: UFFDIO_CONTINUE per 4K page', () => {
    const { code, err, res } = run('shmem');
    expect(code, err).toBe(0);
    expect(res.audit.ok).toBe(true);
    expect(res.counters.uffd_continue).toBe(4096);
    expect(res.counters.page_zero_4k).toBe(0);
    expect(res.stats['demand-paging'].total.pages_4k).toBe(4096);
  });
  it('-u MISSING over shmem copies into the page cache', () => {
    const json = join(mkdtempSync(join(tmpdir(), 'uffd-shmem-')), 'r.json');
    const r = mmuh(['run', 'demand-paging', '-b', '4M', '-v', '1', '--workers', '1', '-s', 'shmem', '-u', 'MISSING', '--json', json, '-q']);
    expect(r.code, r.err).toBe(0);
    const res = JSON.parse(readFileSync(json, 'utf8'));
    expect(res.audit.ok).toBe(true);
    expect(res.counters.uffd_copy).toBe(1024);
  });
});
