// mmuh run private-mem-conversions passes (exit 0, every check PASS, audit clean) with each
// guest_memfd folio size on both attribute paths: the 6.8 VM ioctl with separate shared memory
// (-s of a matching page size) and the in-place series' KVM_SET_MEMORY_ATTRIBUTES2 with shared
// memory in the guest_memfd. Its lines follow the selftest's order; bad options exit 2.
import { describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mmuh, oneLine } from './fixtures/mmuh.js';

const dir = mkdtempSync(join(tmpdir(), 'mmuh-pmc-'));

function run(args: string[]) {
  const f = join(dir, `${args.join('_').replace(/[^a-z0-9_-]/gi, '')}.json`);
  const r = mmuh(['run', 'private-mem-conversions', ...args, '--quiet', '--json', f]);
  return { ...r, json: r.code === 0 || r.code === 1 ? JSON.parse(readFileSync(f, 'utf8')) : null };
}

const kCases: [string, string[]][] = [
  ['vm 4k', ['--backing', '4k']],
  ['vm thp-2m', ['--backing', 'thp-2m', '-s', 'anonymous_thp']],
  ['vm hugetlb-2m', ['--backing', 'hugetlb-2m', '-s', 'anonymous_hugetlb_2mb']],
  ['vm hugetlb-1g', ['--backing', 'hugetlb-1g']],
  ['gmem 4k', ['--attributes', 'gmem', '--backing', '4k']],
  ['gmem thp-2m', ['--attributes', 'gmem', '--backing', 'thp-2m']],
  ['gmem hugetlb-2m', ['--attributes', 'gmem', '--backing', 'hugetlb-2m']],
  ['gmem hugetlb-1g', ['--attributes', 'gmem', '--backing', 'hugetlb-1g', '-n', '2', '-m', '2']],
];

describe('private-mem-conversions on the CLI', () => {
  for (const [name, args] of kCases) {
    it(`passes: ${name}`, () => {
      const r = run(args);
      expect(r.code, r.err).toBe(0);
      const j = r.json;
      expect(j.status).toBe('ok');
      expect(j.audit).toEqual({ ok: true, violations: [] });
      expect(j.metrics.checksFailed).toBe(0);
      const lines = r.out.trimEnd().split('\n');
      expect(lines[0]).toBe('Random seed: 0x1');
      expect(lines.filter((l) => l.startsWith('Testing '))).toEqual([
        'Testing explicit conversion', 'Testing explicit conversion with fallocate', 'Testing PUNCH_HOLE (whole range)', 'Testing PUNCH_HOLE (precise)',
      ]);
      // 4 tests x 5 ranges audited, and 2 x 3 one-page ranges probed per vCPU.
      const vcpus = args.includes('-n') ? Number(args[args.indexOf('-n') + 1]) : 1;
      expect(lines.filter((l) => l.startsWith('  PASS: '))).toHaveLength(20 + 6 * vcpus);
      expect(lines.filter((l) => l.includes('FAIL'))).toEqual([]);
      expect(lines.at(-1)).toMatch(/^All \d+ checks passed \(\d+ guest and \d+ host page comparisons\)$/);
    });
  }

  it('refuses what the selftest refuses (exit 2)', () => {
    const gm = mmuh(['run', 'private-mem-conversions', '--attributes', 'gmem', '-s', 'anonymous']);
    expect(gm.code).toBe(2);
    expect(oneLine(gm)).toContain('Testing in-place conversions, only shmem mem_type supported');
    const m = mmuh(['run', 'private-mem-conversions', '-m', '3']);
    expect(m.code).toBe(2);
    expect(oneLine(m)).toContain('The memfd size (0x400000) needs to be cleanly divisible by the number of memslots (3)');
  });
});
