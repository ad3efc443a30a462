/**
 * Every errno path of a guest_memfd fd (src/kvm/guest_memfd.ts), as virt/kvm/guest_memfd.c
 * returns them: KVM_CREATE_GUEST_MEMFD's validation, read/write, mmap, fallocate, mbind,
 * MADV_COLLAPSE, pins and KVM_SET_MEMORY_ATTRIBUTES2.
 */
import { describe, expect, it } from 'vitest';
import { Host } from '../src/host/host.js';
import { KvmError } from '../src/host/errno.js';
import { Vm } from '../src/kvm/vm.js';
import { KVM_X86_DEFAULT_VM, KVM_X86_SW_PROTECTED_VM, type GuestMemfd } from '../src/kvm/guest_memfd.js';
import { FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, GUEST_MEMFD_FLAG_INIT_SHARED, GUEST_MEMFD_FLAG_MMAP, GmemWord } from '../src/gmem/gmem-file.js';
import { kMiB, threadCtx } from './fixtures/vm-ctx.js';

const kPage = 4096;
const kShared = GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED;

function errnoOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof KvmError) return e.errno;
    throw e;
  }
  return 'ok';
}

function setup(opts: { type?: number; attributes?: 'vm' | 'gmem'; memory?: number; hugepages2m?: number; nodes?: number } = {}) {
  const host = Host.create({ memory: opts.memory ?? 64 * kMiB, hugepages2m: opts.hugepages2m ?? 0, nodes: opts.nodes ?? 1, stamps: true });
  const ctx = threadCtx(host);
  const vm = Vm.create(host, 0, ctx, { type: opts.type ?? KVM_X86_DEFAULT_VM, attributes: opts.attributes ?? 'vm' });
  return { host, t: ctx.hostThread, vm };
}

describe('fallocate', () => {
  it('PUNCH_HOLE at or past the end succeeds and drops nothing; allocation there is EINVAL', () => {
    const { t, vm } = setup();
    const fd: GuestMemfd = vm.createGuestMemfd({ size: 4 * kPage, flags: kShared });
    fd.fallocate(t, FALLOC_FL_KEEP_SIZE, 0, 4 * kPage);
    const size = 4 * kPage;
    const punch = FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE;
    expect(errnoOf(() => fd.fallocate(t, punch, size, kPage))).toBe('ok');
    expect(errnoOf(() => fd.fallocate(t, punch, size + kPage, kPage))).toBe('ok');
    // A punch straddling the end drops the pages inside the file only.
    expect(errnoOf(() => fd.fallocate(t, punch, 3 * kPage, 2 * kPage))).toBe('ok');
    expect([0, 1, 2, 3].map((p) => fd.file.lookup(p) >= 0)).toEqual([true, true, true, false]);
    expect(errnoOf(() => fd.fallocate(t, FALLOC_FL_KEEP_SIZE, size, kPage))).toBe('EINVAL');
    expect(errnoOf(() => fd.fallocate(t, FALLOC_FL_KEEP_SIZE, size + kPage, kPage))).toBe('EINVAL');
    expect(errnoOf(() => fd.fallocate(t, FALLOC_FL_KEEP_SIZE, 3 * kPage, 2 * kPage))).toBe('EINVAL');
  });
});

describe('host mapping', () => {
  it('a mapping longer than the file: pages past the end SIGBUS (counted), outside the mapping EFAULT', () => {
    const { t, vm } = setup();
    const fd = vm.createGuestMemfd({ size: 4 * kPage, flags: kShared });
    fd.mmap({ shared: true, size: 16 * kPage });
    expect(typeof fd.hostAccess(t, 3 * kPage, true, 5)).toBe('number');
    expect(fd.hostAccess(t, 4 * kPage, true, 5)).toBe('SIGBUS');
    expect(fd.hostAccess(t, 16 * kPage - 1, false)).toBe('SIGBUS');
    expect(fd.file.counter(GmemWord.kSigbus)).toBe(2);
    // Nothing was allocated for the SIGBUSed accesses.
    expect(fd.file.counter(GmemWord.kAllocated)).toBe(1);
    expect(errnoOf(() => fd.hostAccess(t, 16 * kPage, false))).toBe('EFAULT');
    expect(errnoOf(() => fd.hostAccess(t, -1, false))).toBe('EFAULT');
  });
});

describe('mbind', () => {
  it('an unknown policy mode or node is EINVAL and leaves the policy as it was', () => {
    const { vm } = setup({ nodes: 2 });
    const fd = vm.createGuestMemfd({ size: 4 * kPage, flags: kShared });
    fd.mbind({ mode: 'bind', node: 1 });
    expect(errnoOf(() => fd.mbind({ mode: 999 as unknown as 'bind', node: 0 }))).toBe('EINVAL');
    expect(errnoOf(() => fd.mbind({ mode: 'bind', node: 2 }))).toBe('EINVAL');
    expect(errnoOf(() => fd.mbind({ mode: 'bind', node: -1 }))).toBe('EINVAL');
    expect(fd.file.policy()).toEqual({ mode: 'bind', node: 1 });
    expect(errnoOf(() => vm.createGuestMemfd({ size: kPage, policy: { mode: 'default' as unknown as 'bind', node: 0 } }))).toBe('EINVAL');
  });
});

describe('KVM_CREATE_GUEST_MEMFD flags', () => {
  it('every bit of the __u64 outside KVM_CAP_GUEST_MEMFD_FLAGS is EINVAL, bits above 31 included', () => {
    const { vm } = setup();
    const got: string[] = [];
    for (let bit = 0; bit < 64; bit++) got.push(errnoOf(() => vm.createGuestMemfd({ size: kPage, flags: 2 ** bit })));
    expect(got).toEqual(['ok', 'ok', ...Array<string>(62).fill('EINVAL')]);
    expect(errnoOf(() => vm.createGuestMemfd({ size: kPage, flags: -1 }))).toBe('EINVAL');
    expect(errnoOf(() => vm.createGuestMemfd({ size: kPage, flags: 2 ** 32 + GUEST_MEMFD_FLAG_MMAP }))).toBe('EINVAL');
  });
});
