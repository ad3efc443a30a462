// The mmuh CLI: KVM-style output, exit codes, and the acceptance runs of the foundation issue.
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const bin = join(__dirname, '..', 'bin', 'mmuh.js');
function mmuh(...args: string[]) {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 120_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

describe('mmuh', () => {
  it('usage errors are one line on stderr and exit 2', () => {
    for (const args of [['run', 'demand-paging', '--bogus'], ['run', 'demand-paging', '-b', '12X'], ['run', 'nope'],
      ['run', 'demand-paging', '-b', '1M', '-s', 'anonymous_hugetlb_2mb'], ['run', 'demand-paging', '-v', '0']]) {
      const r = mmuh(...args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.err.trim().split('\n')).toHaveLength(1);
      expect(r.err).toMatch(/^mmuh: /);
    }
  });
  it('list and help', () => {
    expect(mmuh('list').out).toMatch(/demand-paging/);
    const h = mmuh('run', 'demand-paging', '--help');
    expect(h.code).toBe(0);
    expect(h.out).toMatch(/-b, --bytes/);
  });
  it('acceptance: 2 VMs x 2 vCPUs x 256M on hugetlb 2M map everything huge; anonymous maps 4K', () => {
    const dir = mkdtempSync(join(tmpdir(), 'mmuh-'));
    const huge = mmuh('run', 'demand-paging', '--vms', '2', '-v', '2', '-b', '256M', '-s', 'anonymous_hugetlb_2mb', '--workers', '2', '--seed', '1', '--json', join(dir, 'h.json'));
    expect(huge.code, huge.err).toBe(0);
    expect(huge.out).toMatch(/^Total guest execution time:\t\d+\.\d{9}s$/m);
    expect(huge.out).toMatch(/^Per-vcpu demand paging rate:\t\d+\.\d{6} pgs\/sec\/vcpu$/m);
    expect(huge.out).toMatch(/^Overall demand paging rate:\t\d+\.\d{6} pgs\/sec$/m);
    const h = JSON.parse(readFileSync(join(dir, 'h.json'), 'utf8'));
    expect(h.schema).toBe('kvm-mmu-harness/result@1');
    const st = h.stats['demand-paging'];
    expect(st.vms.reduce((a: number, v: { vm: { pages_2m: number } }) => a + v.vm.pages_2m, 0)).toBe(512);
    expect(st.total.pages_4k).toBe(0);
    expect(h.audit.ok).toBe(true);
    expect(h.histograms['demand-paging.page_fault/modeled'].encoded).toMatch(/^HISTFAAA/);
    const anon = mmuh('run', 'demand-paging', '--vms', '2', '-v', '2', '-b', '256M', '-s', 'anonymous', '--workers', '2', '--seed', '1', '--json', join(dir, 'a.json'), '-q');
    expect(anon.code, anon.err).toBe(0);
    const a = JSON.parse(readFileSync(join(dir, 'a.json'), 'utf8'));
    expect(a.stats['demand-paging'].total.pages_4k).toBe(262144);
    expect(a.audit.ok).toBe(true);
  });
  it('a worker that fails fails the run: exit 1, the error, and a result file that says failed', () => {
    const dir = mkdtempSync(join(tmpdir(), 'mmuh-'));
    const r = mmuh('run', 'demand-paging', '-b', '256M', '--host-memory', '64M', '--workers', '1', '--json', join(dir, 'r.json'), '-q');
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/EFAULT: KVM_RUN: host out of memory/);
    expect(existsSync(join(dir, 'r.json'))).toBe(true);
    expect(JSON.parse(readFileSync(join(dir, 'r.json'), 'utf8')).status).toBe('failed');
  });
  it('dirty-log-page-splitting passes on hugetlb 2M and 1G, and fails (exit 1) when splitting happens at enable under INITIALLY_SET', () => {
    for (const s of ['anonymous_hugetlb_2mb', 'anonymous_hugetlb_1gb']) {
      const r = mmuh('run', 'dirty-log-page-splitting', '-b', '1G', '-s', s, '--workers', '2', '-q');
      expect(r.code, r.err).toBe(0);
      expect(r.out).toMatch(/All 8 checks passed/);
      expect(r.out).not.toMatch(/FAIL/);
    }
    const bad = mmuh('run', 'dirty-log-page-splitting', '-b', '64M', '--split', 'eager-enable', '--workers', '1', '-q');
    expect(bad.code).toBe(1);
    expect(bad.out).toMatch(/FAIL: enable leaves huge pages/);
    expect(bad.err).toMatch(/check\(s\) failed/);
  });
  it('dirty-log-perf rejects -i 1 and a ring size that is not a power of two', () => {
    expect(mmuh('run', 'dirty-log-perf', '-i', '1').code).toBe(2);
    expect(mmuh('run', 'dirty-log-perf', '--dirty', 'ring', '--ring-entries', '3000').code).toBe(2);
  });
});
