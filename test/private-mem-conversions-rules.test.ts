// What private-mem-conversions' checks rest on, read from the result of in-process runs:
//  - the (2M, 4K) range makes the 2M page above the data's first 2M mixed: its private page is
//    mapped 4K, while the uniform 2M below it is mapped 2M when its backing has 2M folios (and
//    4K when it has not); lpage_info's mixed flag agrees at every probe;
//  - every PUNCH_HOLE check reads zero (the freed folio comes back zeroed), and on the in-place
//    path the whole-range punch after each range zeroes shared memory too;
//  - private pages are not the host's: SIGBUS in place, the shared copy's pattern otherwise.
import { describe, expect, it, vi } from 'vitest';
import { parseFlags } from '../src/scenario/flags.js';
import { consoleIo } from '../src/scenario/scenario.js';
import { privateMemConversions } from '../src/scenario/private-mem-conversions.js';
import { kDefaultCostModelPath } from './fixtures/vm-ctx.js';
import { GuestMemfd } from '../src/kvm/guest_memfd.js';
import { FALLOC_FL_PUNCH_HOLE } from '../src/gmem/gmem-file.js';

async function run(args: string[]) {
  const f = parseFlags(privateMemConversions.flags, [...args, '--cost-model', kDefaultCostModelPath]);
  privateMemConversions.check!(f);
  const io = consoleIo(true);
  const r = await privateMemConversions.run(f, io);
  return { r, lines: io.lines };
}

const kMixedStep = 'explicit conversion: range 4 (+0x200000, 0x1000): vCPU 0 after the private write';

describe('private-mem-conversions rules', () => {
  it('vm path, hugetlb 2M: the mixed 2M page maps 4K, the uniform one 2M', async () => {
    const { r, lines } = await run(['--backing', 'hugetlb-2m', '-s', 'anonymous_hugetlb_2mb']);
    expect(r.metrics.checksFailed).toBe(0);
    // Shared [base, base + 2M) through one 2M SPTE, the private page at base + 2M through a 4K one.
    expect(r.stats[kMixedStep]!.total).toMatchObject({ pages_4k: 1, pages_2m: 1, pages_1g: 0 });
    expect(lines).toContain('  PASS: range 4 (+0x200000, 0x1000) vCPU 0 mixed flags and levels: 2 2M page(s) of its data, 1 mixed, mixed flags and 513 load levels agree; private page 4K, uniform 2M below it huge');
    expect(r.audit.ok).toBe(true);
  });

  it('gmem path, THP: the same in place, from the guest_memfd\'s own 2M folio', async () => {
    const { r, lines } = await run(['--attributes', 'gmem', '--backing', 'thp-2m']);
    expect(r.metrics.checksFailed).toBe(0);
    expect(r.stats[kMixedStep]!.total).toMatchObject({ pages_4k: 1, pages_2m: 1 });
    expect(lines.some((l) => l.startsWith('  PASS: range 4 (+0x200000, 0x1000) vCPU 0') && l.endsWith('uniform 2M below it huge'))).toBe(true);
  });

  it('4K backing: everything 4K, 512 shared + 1 private page mapped', async () => {
    const { r, lines } = await run(['--attributes', 'gmem', '--backing', '4k']);
    expect(r.metrics.checksFailed).toBe(0);
    expect(r.stats[kMixedStep]!.total).toMatchObject({ pages_4k: 513, pages_2m: 0 });
    expect(lines.some((l) => l.includes('uniform 2M below it 4K (its backing has no 2M folio there)'))).toBe(true);
  });

  it('PUNCH_HOLE reads zero: every zero check counted, on both paths', async () => {
    const vm = await run(['--backing', 'hugetlb-2m']);
    // guest_test_punch_hole() x2: each range's pages read back zero after its punch.
    expect(vm.r.metrics).toMatchObject({ checksFailed: 0, zeroChecks: 2 * (1 + 512 + 1 + 512 + 1) });
    const gm = await run(['--attributes', 'gmem', '--backing', 'hugetlb-2m']);
    // In place also the whole-range punch after each of the 10 conversion ranges.
    expect(gm.r.metrics).toMatchObject({ checksFailed: 0, zeroChecks: 2 * 1027 + 10 * 513 });
  });

  it('the host never reads private memory: SIGBUS in place, the shared copy otherwise', async () => {
    // Each SYNC_PRIVATE page (one-page ranges 0, 2, 4: two syncs each, in both conversion passes)
    // is a host read: in place a SIGBUS the file counts, else a read of the shared copy's p1.
    const gm = await run(['--attributes', 'gmem']);
    expect(gm.r.metrics).toMatchObject({ checksFailed: 0, 'gmem.sigbus': 12 });
    const vm = await run([]);
    expect(vm.r.metrics).toMatchObject({ checksFailed: 0, 'gmem.sigbus': 0, hostChecks: gm.r.metrics.hostChecks });
  });

  it('a PUNCH_HOLE that frees nothing fails the run the way the selftest does', async () => {
    // "if KVM zaps SPTEs but doesn't actually punch a hole in the inode, the subsequent read will
    // still see the previous value": here the punch does nothing at all. 16 checks passed before
    // (10 conversion ranges audited, 6 probes); the guest's assertion is the 17th.
    const orig = GuestMemfd.prototype.fallocate;
    const spy = vi.spyOn(GuestMemfd.prototype, 'fallocate').mockImplementation(function (this: GuestMemfd, t, mode, offset, len) {
      if ((mode & FALLOC_FL_PUNCH_HOLE) === 0) orig.call(this, t, mode, offset, len);
    });
    try {
      const { r, lines } = await run([]);
      expect(r.metrics).toMatchObject({ checksFailed: 1, failure: 'Guest expected 0x0 at offset 0 (gpa 0x100000000), got 0xcc' });
      const at = lines.indexOf('==== Test Assertion Failure ====');
      expect(lines.slice(at - 1, at + 3)).toEqual([
        'Testing PUNCH_HOLE (whole range)', '==== Test Assertion Failure ====', '  Guest expected 0x0 at offset 0 (gpa 0x100000000), got 0xcc', '1 of 17 checks FAILED',
      ]);
    } finally {
      spy.mockRestore();
    }
  });
});
