/**
 * Scenario guest-memfd (src/scenario/guest-memfd.ts): through the CLI on each backing (exit 0,
 * kselftest TAP lines), its flag sets per VM type, a core broken on purpose in the child process
 * (exit 1, the not ok line), and its check functions fed deliberately wrong inputs.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Host } from '../src/host/host.js';
import { Vm } from '../src/kvm/vm.js';
import { KVM_X86_DEFAULT_VM, KVM_X86_SW_PROTECTED_VM, type GuestMemfd } from '../src/kvm/guest_memfd.js';
import { GUEST_MEMFD_FLAG_INIT_SHARED, GUEST_MEMFD_FLAG_MMAP } from '../src/gmem/gmem-file.js';
import {
  GmemAssert, gmemFlagSets, gmemGuestRoundTrip, gmemTestPlan, kGmemFdTests, kGmemVmTests, runPoint, tapLines, tapTotals, type GmemEnv,
} from '../src/scenario/guest-memfd.js';
import { kBin, mmuh, oneLine } from './fixtures/mmuh.js';
import { kMiB, threadCtx } from './fixtures/vm-ctx.js';

const kPage = 4096;
const kShared = GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED;

/** The 31 points of a default VM: guest_memfd_flags, the three flag sets, the round trip, the audit. */
const kDefaultNames = [
  'guest_memfd_flags',
  ...['0', 'MMAP', 'MMAP|INIT_SHARED'].flatMap((set, i) => gmemTestPlan([0, GUEST_MEMFD_FLAG_MMAP, kShared][i]!).map((p) => `flags ${set}: ${p.name}`)),
  'guest_memfd_guest', 'audit',
];

function tapOf(out: string): string[] {
  return out.split('\n').filter((l) => /^(TAP version|1\.\.|ok |not ok |# Totals)/.test(l));
}

describe('guest-memfd through the CLI', () => {
  for (const backing of ['4k', 'thp-2m', 'hugetlb-2m', 'hugetlb-1g']) {
    it(`--backing ${backing}: exit 0, every point ok`, () => {
      const r = mmuh(['run', 'guest-memfd', '--backing', backing, '-q']);
      expect(r.err).toBe('');
      expect(r.code).toBe(0);
      expect(kDefaultNames).toHaveLength(31);
      expect(tapOf(r.out)).toEqual([
        'TAP version 13', '1..31', ...kDefaultNames.map((n, i) => `ok ${i + 1} ${n}`),
        '# Totals: pass:31 fail:0 xfail:0 xpass:0 skip:0 error:0',
      ]);
      expect(r.out).toContain(`# default VM: KVM_CAP_GUEST_MEMFD_FLAGS = 0x3 (MMAP|INIT_SHARED); ${backing} folios, 2 NUMA nodes`);
    });
  }

  it('a sw-protected VM on the VM attribute path supports no flags: only flag set 0 runs; --json records it', () => {
    const file = join(mkdtempSync(join(tmpdir(), 'mmuh-gmem-')), 'r.json');
    const r = mmuh(['run', 'guest-memfd', '--vm-type', 'sw-protected', '-q', '--json', file]);
    expect(r.code).toBe(0);
    expect(r.out).toContain('KVM_CAP_GUEST_MEMFD_FLAGS = 0x0 (none)');
    const tap = tapOf(r.out);
    expect(tap[1]).toBe('1..10');
    expect(tap.filter((l) => l.startsWith('ok ')).map((l) => l.replace(/^ok \d+ /, ''))).toEqual([
      'guest_memfd_flags', ...gmemTestPlan(0).map((p) => `flags 0: ${p.name}`), 'guest_memfd_guest', 'audit',
    ]);
    const j = JSON.parse(readFileSync(file, 'utf8'));
    expect(j).toMatchObject({ status: 'ok', scenario: 'guest-memfd', metrics: { checks: 10, checksFailed: 0, supportedFlags: 0, flagSets: '0' } });
    expect(j.output).toContain('ok 9 guest_memfd_guest');
    // --attributes gmem: the in-place series' file takes MMAP and INIT_SHARED.
    const g = mmuh(['run', 'guest-memfd', '--vm-type', 'sw-protected', '--attributes', 'gmem', '-q']);
    expect(g.code).toBe(0);
    expect(tapOf(g.out)[1]).toBe('1..31');
  });

  it('--attributes on a default VM is refused (exit 2)', () => {
    const r = mmuh(['run', 'guest-memfd', '--attributes', 'gmem']);
    expect(r.code).toBe(2);
    expect(oneLine(r)).toBe('mmuh: --attributes has no effect on a default VM (it has no private memory): give --vm-type sw-protected');
  });

  it('a core whose PUNCH_HOLE does nothing (patched in the child only) fails the checks: not ok lines, exit 1', () => {
    const fixture = join(__dirname, 'fixtures', 'gmem-break-punch.mjs');
    const c = spawnSync(process.execPath, ['--import', fixture, kBin, 'run', 'guest-memfd', '-q'], { encoding: 'utf8', timeout: 120_000 });
    expect(c.status).toBe(1);
    expect(c.stderr).toContain('check(s) failed');
    const lines = c.stdout.split('\n');
    const i = lines.findIndex((l) => /^not ok \d+ flags MMAP\|INIT_SHARED: mmap_supported$/.test(l));
    expect(i).toBeGreaterThan(0);
    expect(lines[i - 1]).toBe('# after PUNCH_HOLE of the first page: mem[0x0] reads 0xaa, expected 0x0');
    expect(lines).toContain('not ok 7 flags 0: fallocate');
    expect(lines.find((l) => l.startsWith('# Totals'))).toMatch(/^# Totals: pass:\d+ fail:[1-9]\d* xfail:0 xpass:0 skip:0 error:0$/);
  });
});

function env(opts: { type?: number; attributes?: 'vm' | 'gmem' } = {}): GmemEnv {
  const host = Host.create({ memory: 64 * kMiB, nodes: 2, stamps: true });
  const ctx = threadCtx(host);
  const vm = Vm.create(host, 0, ctx, { type: opts.type ?? KVM_X86_DEFAULT_VM, attributes: opts.attributes ?? 'vm' });
  return { host, t: ctx.hostThread, vm, backing: '4k', unit: kPage };
}

/** The fd with one method replaced: a deliberately wrong input for a check. */
function brokenFd<K extends keyof GuestMemfd>(fd: GuestMemfd, name: K, impl: GuestMemfd[K]): GuestMemfd {
  const b = Object.create(fd) as GuestMemfd;
  Object.defineProperty(b, name, { value: impl });
  return b;
}

function failure(fn: () => void): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof GmemAssert) return e.message;
    throw e;
  }
  return 'passed';
}

describe('the check functions', () => {
  it('pass on the real core (the positive control for the wrong inputs below)', () => {
    const e = env();
    for (const name of ['file_read_write', 'mmap_supported', 'numa_allocation', 'fault_overflow', 'mbind', 'file_size', 'fallocate', 'invalid_punch_hole']) {
      expect(failure(() => kGmemFdTests[name]!(e, e.vm.createGuestMemfd({ size: 4 * kPage, flags: kShared }), 4 * kPage)), name).toBe('passed');
    }
    expect(failure(() => kGmemFdTests.fault_private!(e, e.vm.createGuestMemfd({ size: 4 * kPage, flags: GUEST_MEMFD_FLAG_MMAP }), 4 * kPage))).toBe('passed');
    const guest = Vm.create(e.host, 1, e.vm.ctx, { type: KVM_X86_DEFAULT_VM });
    guest.createVcpu();
    expect(failure(() => gmemGuestRoundTrip(e, guest))).toBe('passed');
  });

  it('file_read_write: a read that succeeds fails the check', () => {
    const e = env();
    const fd = brokenFd(e.vm.createGuestMemfd({ size: 4 * kPage }), 'read', (() => 64) as unknown as GuestMemfd['read']);
    expect(failure(() => kGmemFdTests.file_read_write!(e, fd, 4 * kPage))).toBe('read on a guest_mem fd should fail (it succeeded)');
  });

  it('mmap_supported: a PUNCH_HOLE that leaves the contents fails the check', () => {
    const e = env();
    const real = e.vm.createGuestMemfd({ size: 4 * kPage, flags: kShared });
    const fd = brokenFd(real, 'fallocate', () => {});
    expect(failure(() => kGmemFdTests.mmap_supported!(e, fd, 4 * kPage))).toBe('after PUNCH_HOLE of the first page: mem[0x0] reads 0xaa, expected 0x0');
  });

  it('numa_allocation: an mbind that is ignored fails the placement check', () => {
    const e = env();
    const fd = brokenFd(e.vm.createGuestMemfd({ size: 4 * kPage, flags: kShared }), 'mbind', () => {});
    expect(failure(() => kGmemFdTests.numa_allocation!(e, fd, 4 * kPage))).toBe('Expected page 0 on node 1, got it on node 0');
  });

  it('fault_private on a shared file (no SIGBUS) fails; fault_overflow with a mapping no longer than the file fails', () => {
    const e = env();
    expect(failure(() => kGmemFdTests.fault_private!(e, e.vm.createGuestMemfd({ size: 4 * kPage, flags: kShared }), 4 * kPage))).toBe('memset of the mapping should SIGBUS');
    // A file 4x as large as the test thinks: the memset SIGBUSes nowhere.
    expect(failure(() => kGmemFdTests.fault_overflow!(e, e.vm.createGuestMemfd({ size: 16 * kPage, flags: kShared }), 4 * kPage))).toBe('memset of the mapping should SIGBUS');
  });

  it('file_size and fallocate: a file of another size fails', () => {
    const e = env();
    expect(failure(() => kGmemFdTests.file_size!(e, e.vm.createGuestMemfd({ size: 2 * kPage }), 4 * kPage))).toBe(`st_size ${2 * kPage}, expected ${4 * kPage}`);
    expect(failure(() => kGmemFdTests.fallocate!(e, e.vm.createGuestMemfd({ size: 8 * kPage }), 4 * kPage))).toBe('fallocate beginning at total_size should fail (it succeeded)');
  });

  it('create_guest_memfd_multiple: files that share an inode fail', () => {
    const e = env();
    const made: GuestMemfd[] = [];
    // A VM whose second file answers fstat with the first one's inode.
    const vm = Object.create(e.vm) as Vm;
    Object.defineProperty(vm, 'createGuestMemfd', {
      value: (a: Parameters<Vm['createGuestMemfd']>[0]) => {
        const fd = e.vm.createGuestMemfd(a);
        made.push(fd);
        return made.length === 1 ? fd : brokenFd(fd, 'stat', () => ({ ...fd.stat(), st_ino: made[0]!.stat().st_ino }));
      },
    });
    expect(failure(() => kGmemVmTests.create_guest_memfd_multiple!({ ...e, vm }, 0))).toBe(`different memfd should have different inode numbers (both ${made[0]!.file.ino})`);
  });

  it('guest_memfd_guest: a VM without MMAP support fails', () => {
    const e = env();
    const guest = Vm.create(e.host, 1, e.vm.ctx, { type: KVM_X86_SW_PROTECTED_VM });
    guest.createVcpu();
    expect(failure(() => gmemGuestRoundTrip(e, guest))).toBe('Default VM type should support MMAP, supported flags = 0x0');
  });

  it('TAP: a failed point prints its reason as # lines, then not ok; the totals count it', () => {
    const bad = runPoint('flags 0: fallocate', () => {
      throw new GmemAssert('fallocate with unaligned offset should fail (it succeeded)');
    });
    const good = runPoint('flags 0: file_size', () => {});
    expect(tapLines(2, bad)).toEqual(['# fallocate with unaligned offset should fail (it succeeded)', 'not ok 2 flags 0: fallocate']);
    expect(tapLines(1, good)).toEqual(['ok 1 flags 0: file_size']);
    expect(tapTotals([good, bad])).toBe('# Totals: pass:1 fail:1 xfail:0 xpass:0 skip:0 error:0');
    // A KVM error nobody expected is a failed point too, not a crash.
    const e = env();
    expect(runPoint('x', () => e.vm.createGuestMemfd({ size: 1 }))).toMatchObject({ ok: false, diag: expect.stringMatching(/^unexpected EINVAL: /) });
  });

  it('flag sets follow KVM_CAP_GUEST_MEMFD_FLAGS', () => {
    expect(gmemFlagSets(0)).toEqual([0]);
    expect(gmemFlagSets(GUEST_MEMFD_FLAG_MMAP)).toEqual([0, GUEST_MEMFD_FLAG_MMAP]);
    expect(gmemFlagSets(kShared)).toEqual([0, GUEST_MEMFD_FLAG_MMAP, kShared]);
  });
});
