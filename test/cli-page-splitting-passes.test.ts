// §3.7: dirty-log-page-splitting reports both of its passes (without and with manual caps:
// phases, histograms, counters, stats, memory, audit), and exits with kselftest's KSFT_SKIP (4)
// where x86/dirty_log_page_splitting_test skips: TEST_REQUIRE(get_kvm_param_bool(
// "eager_page_split")) fails, i.e. --split on-fault (the TDP MMU is always on here).
import { describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mmuh } from './fixtures/mmuh.js';

describe('dirty-log-page-splitting', () => {
  it('reports both passes in the JSON and the text view', () => {
    const dir = mkdtempSync(join(tmpdir(), 'mmuh-split-'));
    const file = join(dir, 'r.json');
    const r = mmuh(['run', 'dirty-log-page-splitting', '-b', '64M', '--workers', '1', '--json', file]);
    expect(r.code, r.err).toBe(0);
    const j = JSON.parse(readFileSync(file, 'utf8'));
    expect(Object.keys(j.passes)).toEqual(['no-manual-caps', 'manual-protect']);
    for (const mode of ['no-manual-caps', 'manual-protect']) {
      const p = j.passes[mode];
      expect(p.phases.map((x: { name: string }) => x.name)).toEqual([`${mode}.populate`, `${mode}.dirty`, `${mode}.repopulate`]);
      expect(Object.keys(p.histograms).every((k) => k.startsWith(`${mode}.`))).toBe(true);
      expect(p.histograms[`${mode}.populate.page_fault/modeled`].count).toBe(64); // 2 vCPUs x 32 MiB in 2M pages
      expect(Object.keys(p.stats).every((k) => k.startsWith(`${mode}.`))).toBe(true);
      expect(p.counters.pt_page_alloc).toBeGreaterThan(0);
      expect(p.memory.sabBytes).toBeGreaterThan(0);
      expect(p.audit.ok).toBe(true);
    }
    // The top level holds both passes' phases and summed counters.
    expect(j.phases).toHaveLength(6);
    expect(j.counters.pt_page_alloc).toBe(j.passes['no-manual-caps'].counters.pt_page_alloc + j.passes['manual-protect'].counters.pt_page_alloc);
    expect(r.out).toMatch(/^no-manual-caps\.populate /m);
    expect(r.out).toMatch(/^manual-protect\.populate /m);
    expect(r.out).toMatch(/^no-manual-caps: audit ok\n {2}memory: /m);
    expect(r.out).toMatch(/^manual-protect: audit ok\n {2}memory: /m);
  });
  it('--split on-fault (kvm.eager_page_split=N) is a kselftest skip: exit 4, "# SKIP", status skipped', () => {
    const dir = mkdtempSync(join(tmpdir(), 'mmuh-split-'));
    const file = join(dir, 'r.json');
    const r = mmuh(['run', 'dirty-log-page-splitting', '-b', '64M', '--split', 'on-fault', '--json', file]);
    expect(r.code).toBe(4);
    expect(r.out).toMatch(/^1\.\.0 # SKIP .*eager_page_split/m);
    expect(JSON.parse(readFileSync(file, 'utf8')).status).toBe('skipped');
  });
  it('a non-hugetlb backing prints upstream\'s best-effort note and still runs', () => {
    const r = mmuh(['run', 'dirty-log-page-splitting', '-b', '8M', '-s', 'anonymous_thp', '--workers', '1', '-q']);
    expect(r.out).toMatch(/This test will only work reliably with HugeTLB memory/);
  });
});
