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
import { KVM_MEM_GUEST_MEMFD, KVM_MEM_LOG_DIRTY_PAGES } from '../src/kvm/memslot.js';
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

describe('KVM_CREATE_GUEST_MEMFD', () => {
  it('size: positive, page aligned, a multiple of the huge page for hugetlb (EINVAL)', () => {
    const { vm } = setup();
    for (const size of [0, -kPage, 1, kPage - 1, kPage + 1, 1.5 * kPage, NaN]) expect(errnoOf(() => vm.createGuestMemfd({ size }))).toBe('EINVAL');
    for (const size of [kPage, 2 * kMiB - kPage, 2 * kMiB + kPage]) expect(errnoOf(() => vm.createGuestMemfd({ size, backing: 'hugetlb-2m' }))).toBe('EINVAL');
    expect(errnoOf(() => vm.createGuestMemfd({ size: 2 * kMiB, backing: 'hugetlb-1g' }))).toBe('EINVAL');
    expect(errnoOf(() => vm.createGuestMemfd({ size: 4 * kMiB, backing: 'hugetlb-2m' }))).toBe('ok');
    // THP files need not be 2M multiples (the tail gets 4K folios).
    expect(errnoOf(() => vm.createGuestMemfd({ size: 3 * kPage, backing: 'thp-2m' }))).toBe('ok');
    expect(errnoOf(() => vm.createGuestMemfd({ size: kPage, backing: '64k' as unknown as '4k' }))).toBe('EINVAL');
  });

  it('flags follow KVM_CAP_GUEST_MEMFD_FLAGS per VM type and attribute path', () => {
    const flagSets = [GUEST_MEMFD_FLAG_MMAP, GUEST_MEMFD_FLAG_INIT_SHARED, kShared];
    expect(flagSets.map((flags) => errnoOf(() => setup().vm.createGuestMemfd({ size: kPage, flags })))).toEqual(['ok', 'ok', 'ok']);
    // A private-memory VM on the 6.8 attribute path: the file holds private memory only.
    const sw = setup({ type: KVM_X86_SW_PROTECTED_VM });
    expect(flagSets.map((flags) => errnoOf(() => sw.vm.createGuestMemfd({ size: kPage, flags })))).toEqual(['EINVAL', 'EINVAL', 'EINVAL']);
    expect(errnoOf(() => sw.vm.createGuestMemfd({ size: kPage, flags: 0 }))).toBe('ok');
    const inPlace = setup({ type: KVM_X86_SW_PROTECTED_VM, attributes: 'gmem' });
    expect(flagSets.map((flags) => errnoOf(() => inPlace.vm.createGuestMemfd({ size: kPage, flags })))).toEqual(['ok', 'ok', 'ok']);
  });

  it('a policy on a node the host does not have is EINVAL', () => {
    const { vm } = setup({ nodes: 2 });
    expect(errnoOf(() => vm.createGuestMemfd({ size: kPage, policy: { mode: 'bind', node: 2 } }))).toBe('EINVAL');
    expect(errnoOf(() => vm.createGuestMemfd({ size: kPage, policy: { mode: 'bind', node: 1 } }))).toBe('ok');
  });
});

describe('file operations', () => {
  it('read/write EINVAL, MADV_COLLAPSE EINVAL; stat: own inode, size, st_blksize = PAGE_SIZE', () => {
    const { vm } = setup();
    const fd = vm.createGuestMemfd({ size: 3 * kPage, flags: kShared });
    expect(errnoOf(() => fd.read())).toBe('EINVAL');
    expect(errnoOf(() => fd.write())).toBe('EINVAL');
    expect(errnoOf(() => fd.madviseCollapse())).toBe('EINVAL');
    expect(fd.stat()).toEqual({ st_ino: fd.file.ino, st_size: 3 * kPage, st_blksize: kPage });
  });

  it('mmap: ENODEV without GUEST_MEMFD_FLAG_MMAP, EINVAL for MAP_PRIVATE or a zero length; an access before mmap is EFAULT', () => {
    const { t, vm } = setup();
    const plain = vm.createGuestMemfd({ size: kPage });
    expect(errnoOf(() => plain.mmap({ shared: true }))).toBe('ENODEV');
    expect(errnoOf(() => plain.mmap({ shared: false }))).toBe('ENODEV');
    const fd = vm.createGuestMemfd({ size: kPage, flags: kShared });
    expect(errnoOf(() => fd.hostAccess(t, 0, false))).toBe('EFAULT');
    expect(errnoOf(() => fd.mmap({ shared: false }))).toBe('EINVAL');
    expect(errnoOf(() => fd.mmap({ shared: true, size: 0 }))).toBe('EINVAL');
    expect(errnoOf(() => fd.mmap({ shared: true }))).toBe('ok');
  });

  it('munmap: page aligned, len > 0, inside the file (EINVAL)', () => {
    const { vm } = setup();
    const fd = vm.createGuestMemfd({ size: 4 * kPage, flags: kShared });
    fd.mmap({ shared: true });
    for (const [o, l] of [[1, kPage], [0, kPage - 1], [0, 0], [-kPage, kPage], [3 * kPage, 2 * kPage]] as const) expect(errnoOf(() => fd.munmap(o, l))).toBe('EINVAL');
    expect(fd.munmap(0, 4 * kPage)).toBe(0);
  });

  it('pin: EFAULT on a page the host does not map, EINVAL outside the file, below zero or above 255 pins', () => {
    const { t, vm } = setup();
    const fd = vm.createGuestMemfd({ size: 4 * kPage, flags: kShared });
    fd.mmap({ shared: true });
    expect(errnoOf(() => fd.pin(0))).toBe('EFAULT');
    fd.hostAccess(t, 0, true, 1);
    expect(errnoOf(() => fd.pin(4 * kPage))).toBe('EINVAL');
    expect(errnoOf(() => fd.unpin(0))).toBe('EINVAL');
    fd.pin(0);
    expect(fd.file.counter(GmemWord.kPinned)).toBe(1);
    fd.unpin(0);
    expect(fd.file.counter(GmemWord.kPinned)).toBe(0);
    // The per-page pin count is a byte: the 256th pin is refused, the count unchanged.
    for (let i = 0; i < 255; i++) fd.pin(0);
    expect(errnoOf(() => fd.pin(0))).toBe('EINVAL');
    expect(fd.file.counter(GmemWord.kPinned)).toBe(255);
  });

  it('fallocate: EOPNOTSUPP without KEEP_SIZE or with another mode bit; EINVAL for unaligned, empty or negative ranges', () => {
    const { t, vm } = setup();
    const fd = vm.createGuestMemfd({ size: 4 * kPage });
    expect(errnoOf(() => fd.fallocate(t, 0, 0, kPage))).toBe('EOPNOTSUPP');
    expect(errnoOf(() => fd.fallocate(t, FALLOC_FL_PUNCH_HOLE, 0, kPage))).toBe('EOPNOTSUPP');
    for (const bit of [0x04, 0x08, 0x10, 0x20, 0x40]) expect(errnoOf(() => fd.fallocate(t, FALLOC_FL_KEEP_SIZE | bit, 0, kPage))).toBe('EOPNOTSUPP');
    for (const mode of [FALLOC_FL_KEEP_SIZE, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE]) {
      for (const [o, l] of [[1, kPage], [0, 1], [0, 0], [-kPage, kPage], [kPage, kPage + 1], [kPage / 2, kPage], [kPage, kPage / 2], [512, 2 * kPage]] as const) {
        expect(errnoOf(() => fd.fallocate(t, mode, o, l))).toBe('EINVAL');
      }
    }
    expect(fd.file.counter(GmemWord.kAllocated)).toBe(0);
  });

  it('ENOMEM when the host has no memory left: fallocate and a host fault', () => {
    const { t, vm } = setup({ memory: 64 * kPage });
    const fd = vm.createGuestMemfd({ size: 128 * kPage, flags: kShared });
    expect(errnoOf(() => fd.fallocate(t, FALLOC_FL_KEEP_SIZE, 0, 128 * kPage))).toBe('ENOMEM');
    fd.mmap({ shared: true });
    expect(errnoOf(() => fd.hostAccess(t, 127 * kPage, true, 1))).toBe('ENOMEM');
  });
});

describe('KVM_SET_MEMORY_ATTRIBUTES2 errors', () => {
  it('ENOTTY off the gmem attribute path; EINVAL for flags, unknown attributes, unaligned, empty or outside ranges', () => {
    const dflt = setup();
    const a = { offset: 0, size: kPage, attributes: 8 };
    expect(errnoOf(() => dflt.vm.createGuestMemfd({ size: kPage }).setMemoryAttributes2(dflt.t, a))).toBe('ENOTTY');
    const sw = setup({ type: KVM_X86_SW_PROTECTED_VM });
    expect(errnoOf(() => sw.vm.createGuestMemfd({ size: kPage }).setMemoryAttributes2(sw.t, a))).toBe('ENOTTY');
    const { t, vm } = setup({ type: KVM_X86_SW_PROTECTED_VM, attributes: 'gmem' });
    const fd = vm.createGuestMemfd({ size: 4 * kPage, flags: kShared });
    expect(errnoOf(() => fd.setMemoryAttributes2(t, { ...a, flags: 1 }))).toBe('EINVAL');
    expect(errnoOf(() => fd.setMemoryAttributes2(t, { ...a, attributes: 8 | 1 }))).toBe('EINVAL');
    for (const [offset, size] of [[1, kPage], [0, 1], [0, 0], [4 * kPage, kPage], [3 * kPage, 2 * kPage]] as const) {
      expect(errnoOf(() => fd.setMemoryAttributes2(t, { offset, size, attributes: 8 }))).toBe('EINVAL');
    }
    expect(fd.file.counter(GmemWord.kPrivatePages)).toBe(0);
    expect(fd.setMemoryAttributes2(t, a)).toBe(-1);
    expect(fd.file.counter(GmemWord.kPrivatePages)).toBe(1);
  });
});

describe('binding (KVM_SET_USER_MEMORY_REGION2 with KVM_MEM_GUEST_MEMFD)', () => {
  it('EINVAL for another VM\'s file, an offset unaligned or past the end, pages already bound, dirty logging', () => {
    const { host, vm } = setup();
    const other = Vm.create(host, 1, vm.ctx, {});
    const fd = vm.createGuestMemfd({ size: 8 * kPage, flags: kShared });
    const r = { slot: 1, flags: KVM_MEM_GUEST_MEMFD, guestPhysAddr: 0, memorySize: 4 * kPage, userspaceAddr: 0, guestMemfd: fd, guestMemfdOffset: 0 };
    expect(errnoOf(() => other.setUserMemoryRegion2(r))).toBe('EINVAL');
    expect(errnoOf(() => vm.setUserMemoryRegion2({ ...r, guestMemfdOffset: 1 }))).toBe('EINVAL');
    expect(errnoOf(() => vm.setUserMemoryRegion2({ ...r, guestMemfdOffset: 6 * kPage }))).toBe('EINVAL');
    expect(errnoOf(() => vm.setUserMemoryRegion2({ ...r, flags: KVM_MEM_GUEST_MEMFD | KVM_MEM_LOG_DIRTY_PAGES }))).toBe('EINVAL');
    expect(errnoOf(() => vm.setUserMemoryRegion2(r))).toBe('ok');
    expect(errnoOf(() => vm.setUserMemoryRegion2({ ...r, slot: 2, guestPhysAddr: 16 * kPage, guestMemfdOffset: 3 * kPage }))).toBe('EINVAL');
    expect(errnoOf(() => vm.setUserMemoryRegion2({ ...r, slot: 2, guestPhysAddr: 16 * kPage, guestMemfdOffset: 4 * kPage }))).toBe('ok');
  });
});
