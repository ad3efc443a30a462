/**
 * GmemFile (src/gmem/gmem-file.ts) through the fd's operations: allocation on fault at the
 * folio order, THP fallback to 4K, PUNCH_HOLE of whole and partial folios (splits, frees,
 * hugetlb pieces stranded and the huge page returned to its pool when the last piece goes),
 * contents reading back zero, NUMA placement, SIGBUS counting, inode numbers, and the EAGAIN of
 * KVM_SET_MEMORY_ATTRIBUTES2 with a host mapping or a pin. Host accounting and audit() after
 * each step.
 */
import { describe, expect, it } from 'vitest';
import { Host } from '../src/host/host.js';
import { FrameLayout } from '../src/host/frame-table.js';
import { audit } from '../src/kvm/audit.js';
import { Vm } from '../src/kvm/vm.js';
import { KVM_X86_DEFAULT_VM, KVM_X86_SW_PROTECTED_VM, type GuestMemfd } from '../src/kvm/guest_memfd.js';
import { KVM_MEMORY_ATTRIBUTE_PRIVATE } from '../src/kvm/attributes.js';
import { KVM_MEM_GUEST_MEMFD } from '../src/kvm/memslot.js';
import { FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, GUEST_MEMFD_FLAG_INIT_SHARED, GUEST_MEMFD_FLAG_MMAP, GmemWord } from '../src/gmem/gmem-file.js';
import { accesses, kGiB, kMiB, threadCtx } from './fixtures/vm-ctx.js';

const kPage = 4096;
const k2M = 2 * kMiB;
const kShared = GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED;
const kPunch = FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE;

function setup(opts: { memory?: number; hugepages2m?: number; hugepages1g?: number; nodes?: number; type?: number; attributes?: 'vm' | 'gmem' } = {}) {
  const host = Host.create({ memory: opts.memory ?? 64 * kMiB, hugepages2m: opts.hugepages2m ?? 0, hugepages1g: opts.hugepages1g ?? 0, nodes: opts.nodes ?? 1, stamps: true });
  const ctx = threadCtx(host);
  const vm = Vm.create(host, 0, ctx, { type: opts.type ?? KVM_X86_DEFAULT_VM, attributes: opts.attributes ?? 'vm' });
  return { host, t: ctx.hostThread, vm };
}

function nodeOf(host: Host, pfn: number): number {
  return (host.frames.meta(pfn) >>> FrameLayout.kMetaNodeShift) & FrameLayout.kMetaNodeMask;
}

/** Pages the VM's process owns (the thread's pending accounting drained first). */
function owned(host: Host, vm: Vm): number {
  vm.ctx.hostThread.drain();
  return host.ownedPages(vm.owner);
}

function clean(host: Host, vm: Vm): void {
  vm.ctx.hostThread.drain();
  expect(audit(host, [vm]).violations).toEqual([]);
}

describe('NUMA placement', () => {
  it('interleave spreads THP folios over the nodes by folio index, as hugetlb folios', () => {
    const { host, t, vm } = setup({ memory: 64 * kMiB, nodes: 2 });
    const fd: GuestMemfd = vm.createGuestMemfd({ size: 4 * k2M, flags: kShared, backing: 'thp-2m', policy: { mode: 'interleave', node: 0 } });
    fd.fallocate(t, FALLOC_FL_KEEP_SIZE, 0, 4 * k2M);
    expect([0, 1, 2, 3].map((i) => host.frames.order(fd.file.lookup(i * 512)))).toEqual([9, 9, 9, 9]);
    expect([0, 1, 2, 3].map((i) => nodeOf(host, fd.file.lookup(i * 512)))).toEqual([0, 1, 0, 1]);
    clean(host, vm);
    fd.fallocate(t, kPunch, 0, 4 * k2M);
  });
});

/** The stamp of file page `p` (0 for a hole: a new folio reads back zero). */
function stampOf(host: Host, fd: GuestMemfd, p: number): number {
  const pfn = fd.file.lookup(p);
  return pfn < 0 ? 0 : host.frames.readStampIteration(pfn);
}

describe('allocation on fault', () => {
  for (const [backing, order, hp] of [['4k', 0, {}], ['thp-2m', 9, {}], ['hugetlb-2m', 9, { hugepages2m: 2 }]] as const) {
    it(`${backing}: a host fault allocates the whole folio of order ${order} around the page, accounted to the VM`, () => {
      const { host, t, vm } = setup(hp);
      const fd = vm.createGuestMemfd({ size: 2 * k2M, flags: kShared, backing });
      fd.mmap({ shared: true });
      const owned0 = owned(host, vm);
      const free2m = host.hugetlbFree(9);
      const pfn = fd.hostAccess(t, 519 * kPage, true, 3) as number;
      const base = 519 - (519 % (1 << order));
      const head = fd.file.lookup(base);
      expect(pfn).toBe(head + (519 - base));
      expect(fd.file.counter(GmemWord.kAllocated)).toBe(1 << order);
      expect(fd.file.folioOrder(519)).toBe(order);
      expect(host.frames.order(head)).toBe(order);
      // Only the faulting folio: the first 2M of the file is still a hole.
      expect(fd.file.lookup(0)).toBe(-1);
      if (backing === 'hugetlb-2m') {
        expect(host.hugetlbFree(9)).toBe(free2m - 1);
      } else {
        expect(owned(host, vm) - owned0).toBe(1 << order);
      }
      // The new folio is zeroed; the host's store is the only stamp in it.
      for (let p = base; p < base + (1 << order); p++) expect(stampOf(host, fd, p)).toBe(p === 519 ? 3 : 0);
      clean(host, vm);
      fd.file.truncateAll(t);
      expect(host.hugetlbFree(9)).toBe(free2m);
      clean(host, vm);
    });
  }

  it('a guest fault through a bound slot allocates the folio and maps it at its order', () => {
    const { host, vm } = setup({ hugepages2m: 1 });
    const fd = vm.createGuestMemfd({ size: k2M, flags: kShared, backing: 'hugetlb-2m' });
    vm.setUserMemoryRegion2({ slot: 1, flags: KVM_MEM_GUEST_MEMFD, guestPhysAddr: 4 * kGiB, memorySize: k2M, userspaceAddr: 0, guestMemfd: fd, guestMemfdOffset: 0 });
    const vcpu = vm.createVcpu();
    expect(vcpu.run(accesses([(4 * kGiB) / kPage + 3]), 10, null)).toBe(1);
    expect(fd.file.counter(GmemWord.kAllocated)).toBe(512);
    expect(vm.getStats()).toMatchObject({ pages_2m: 1, pages_4k: 0 });
    clean(host, vm);
  });

  it('THP falls back to 4K: past the last whole 2M, in a range that is not a hole, and when the host has no 2M block', () => {
    const { host, t, vm } = setup();
    const fd = vm.createGuestMemfd({ size: k2M + 8 * kPage, flags: kShared, backing: 'thp-2m' });
    fd.mmap({ shared: true });
    fd.hostAccess(t, k2M + kPage, true, 1);
    expect(fd.file.counter(GmemWord.kAllocated)).toBe(1);
    expect(fd.file.folioOrder(513)).toBe(0);
    // A 2M range holding 4K pieces after a partial punch gets 4K folios again.
    fd.hostAccess(t, 0, true, 1);
    expect(fd.file.folioOrder(0)).toBe(9);
    fd.fallocate(t, kPunch, 5 * kPage, kPage);
    expect(fd.file.folioOrder(0)).toBe(0);
    fd.hostAccess(t, 5 * kPage, true, 2);
    expect(host.frames.order(fd.file.lookup(5))).toBe(0);
    expect(fd.file.counter(GmemWord.kAllocated)).toBe(513);
    clean(host, vm);
    // A host without any free order-9 block (1 MiB of memory): the fault still gets a 4K folio.
    const small = setup({ memory: kMiB });
    const fd2 = small.vm.createGuestMemfd({ size: k2M, flags: kShared, backing: 'thp-2m' });
    fd2.mmap({ shared: true });
    expect(typeof fd2.hostAccess(small.t, 9 * kPage, true, 1)).toBe('number');
    expect(fd2.file.counter(GmemWord.kAllocated)).toBe(1);
    expect(fd2.file.folioOrder(9)).toBe(0);
    clean(small.host, small.vm);
  });
});

describe('PUNCH_HOLE', () => {
  it('THP: a whole folio is freed; a cut one is split, the pages inside freed, the rest keep their contents', () => {
    const { host, t, vm } = setup();
    const fd = vm.createGuestMemfd({ size: 2 * k2M, flags: kShared, backing: 'thp-2m' });
    fd.mmap({ shared: true });
    for (let p = 0; p < 1024; p++) fd.hostAccess(t, p * kPage, true, 100 + p);
    const owned0 = owned(host, vm);
    fd.fallocate(t, kPunch, k2M, k2M);
    expect(owned(host, vm)).toBe(owned0 - 512);
    expect(fd.file.counter(GmemWord.kFolioSplits)).toBe(0);
    clean(host, vm);
    fd.fallocate(t, kPunch, 10 * kPage, 2 * kPage);
    expect(fd.file.counter(GmemWord.kFolioSplits)).toBe(1);
    expect(fd.file.counter(GmemWord.kAllocated)).toBe(510);
    expect(fd.file.counter(GmemWord.kPunched)).toBe(514);
    expect(owned(host, vm)).toBe(owned0 - 514);
    // The frame table split the THP: every remaining piece is a 4K folio with its own reference.
    expect(host.frames.order(fd.file.lookup(0))).toBe(0);
    expect(host.frames.refcount(fd.file.lookup(511))).toBe(1);
    expect([9, 10, 11, 12].map((p) => stampOf(host, fd, p))).toEqual([109, 0, 0, 112]);
    // Punched pages read back zero through the mapping (a new page), and so do the freed 2M.
    expect(host.frames.readStampIteration(fd.hostAccess(t, 10 * kPage, false) as number)).toBe(0);
    expect(host.frames.readStampIteration(fd.hostAccess(t, k2M + 3 * kPage, false) as number)).toBe(0);
    clean(host, vm);
  });

  it('hugetlb 2M: a punched piece is stranded (still the file\'s, pool unchanged) until the last piece goes, then the page is merged back to the pool', () => {
    const { host, t, vm } = setup({ hugepages2m: 2 });
    const fd = vm.createGuestMemfd({ size: k2M, flags: kShared, backing: 'hugetlb-2m' });
    fd.mmap({ shared: true });
    for (let p = 0; p < 512; p++) fd.hostAccess(t, p * kPage, true, 1 + p);
    const head = fd.file.lookup(0);
    expect(host.hugetlbFree(9)).toBe(1);
    fd.fallocate(t, kPunch, 0, kPage);
    expect(fd.file.counter(GmemWord.kStranded)).toBe(1);
    expect(fd.file.counter(GmemWord.kAllocated)).toBe(511);
    expect(fd.file.ownedPages()).toBe(512);
    expect(fd.file.counter(GmemWord.kFolioSplits)).toBe(1);
    expect(host.hugetlbFree(9)).toBe(1);
    expect(stampOf(host, fd, 1)).toBe(2);
    clean(host, vm);
    // A stranded piece faulted again comes back at its own place, zeroed.
    expect(fd.hostAccess(t, 0, false)).toBe(head);
    expect(host.frames.readStampIteration(head)).toBe(0);
    expect(fd.file.counter(GmemWord.kStranded)).toBe(0);
    clean(host, vm);
    // Punch it all in two steps: the last piece merges the page and frees it to the pool.
    fd.fallocate(t, kPunch, 0, 256 * kPage);
    expect(fd.file.counter(GmemWord.kStranded)).toBe(256);
    expect(host.hugetlbFree(9)).toBe(1);
    clean(host, vm);
    fd.fallocate(t, kPunch, 256 * kPage, 256 * kPage);
    expect(fd.file.counter(GmemWord.kStranded)).toBe(0);
    expect(fd.file.ownedPages()).toBe(0);
    expect(fd.file.counter(GmemWord.kFolioMerges)).toBe(1);
    expect(host.hugetlbFree(9)).toBe(2);
    expect(fd.file.folioOrder(0)).toBe(9);
    clean(host, vm);
    // The next fault gets a whole huge page again.
    fd.hostAccess(t, 5 * kPage, true, 9);
    expect(fd.file.counter(GmemWord.kAllocated)).toBe(512);
    expect(host.hugetlbFree(9)).toBe(1);
    clean(host, vm);
  });

  it('hugetlb: close() with stranded pieces returns the huge page to its pool', () => {
    const { host, t, vm } = setup({ hugepages2m: 1 });
    const fd = vm.createGuestMemfd({ size: k2M, flags: kShared, backing: 'hugetlb-2m' });
    fd.fallocate(t, FALLOC_FL_KEEP_SIZE, 0, k2M);
    fd.fallocate(t, kPunch, 100 * kPage, 3 * kPage);
    expect(fd.file.counter(GmemWord.kStranded)).toBe(3);
    expect(host.hugetlbFree(9)).toBe(0);
    fd.file.truncateAll(t);
    expect(fd.file.ownedPages()).toBe(0);
    expect(host.hugetlbFree(9)).toBe(1);
    clean(host, vm);
  });

  it('hugetlb 1G: whole-page punch frees to the 1G pool; a 4K punch strands one piece', () => {
    const { host, t, vm } = setup({ memory: 2 * kGiB + 64 * kMiB, hugepages1g: 2 });
    const fd = vm.createGuestMemfd({ size: 2 * kGiB, flags: kShared, backing: 'hugetlb-1g' });
    fd.fallocate(t, FALLOC_FL_KEEP_SIZE, 0, 2 * kGiB);
    expect(host.hugetlbFree(18)).toBe(0);
    fd.fallocate(t, kPunch, kGiB, kGiB);
    expect(host.hugetlbFree(18)).toBe(1);
    fd.fallocate(t, kPunch, 0, kPage);
    expect(fd.file.counter(GmemWord.kStranded)).toBe(1);
    expect(fd.file.ownedPages()).toBe(262144);
    expect(host.hugetlbFree(18)).toBe(1);
    clean(host, vm);
  });
});

describe('inodes', () => {
  it('each guest_memfd is its own inode', () => {
    const { vm } = setup();
    const inos = [1, 2, 3].map((n) => vm.createGuestMemfd({ size: n * kPage }).stat().st_ino);
    expect(new Set(inos).size).toBe(3);
  });
});

describe('KVM_SET_MEMORY_ATTRIBUTES2 EAGAIN', () => {
  function gmemVm() {
    const s = setup({ type: KVM_X86_SW_PROTECTED_VM, attributes: 'gmem' });
    const fd = s.vm.createGuestMemfd({ size: 16 * kPage, flags: kShared });
    fd.mmap({ shared: true });
    return { ...s, fd };
  }
  const toPrivate = (offset: number, size: number) => ({ offset, size, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE });

  it('shared -> private unmaps the host mappings of the range first (kvm_gmem_convert_should_proceed()): mapped pages convert, then SIGBUS', () => {
    const { host, t, vm, fd } = gmemVm();
    fd.hostAccess(t, 9 * kPage, true, 1);
    fd.hostAccess(t, 5 * kPage, true, 1);
    fd.hostAccess(t, 15 * kPage, true, 1);
    expect(fd.file.counter(GmemWord.kHostMapped)).toBe(3);
    expect(fd.setMemoryAttributes2(t, toPrivate(2 * kPage, 12 * kPage))).toBe(-1);
    expect(fd.file.counter(GmemWord.kPrivatePages)).toBe(12);
    // The two pages inside the range lost their host mapping; page 15, outside it, kept it.
    expect(fd.file.counter(GmemWord.kHostMapped)).toBe(1);
    expect(fd.file.hostMapped[15]).toBe(1);
    // Private now: the host's touch is SIGBUS, counted.
    expect(fd.hostAccess(t, 5 * kPage, false)).toBe('SIGBUS');
    expect(fd.file.counter(GmemWord.kSigbus)).toBe(1);
    clean(host, vm);
  });

  it('a pin refuses shared -> private with error_offset at the pinned page and changes nothing, until unpinned', () => {
    const { host, t, vm, fd } = gmemVm();
    fd.hostAccess(t, 7 * kPage, true, 1);
    fd.hostAccess(t, 3 * kPage, true, 1);
    fd.pin(7 * kPage);
    expect(fd.file.counter(GmemWord.kPinned)).toBe(1);
    // munmap leaves the pinned page mapped for its pinner.
    fd.munmap(0, 16 * kPage);
    expect(fd.file.hostMapped[7]).toBe(1);
    fd.hostAccess(t, 3 * kPage, true, 1);
    expect(fd.setMemoryAttributes2(t, toPrivate(0, 16 * kPage))).toBe(7 * kPage);
    for (let p = 0; p < 16; p++) expect(fd.file.isPrivate(p)).toBe(false);
    expect(fd.file.counter(GmemWord.kPrivatePages)).toBe(0);
    // The attributes are unchanged; the host mappings were torn down before the check, as
    // the series' kvm_gmem_convert_should_proceed() does (the pinned page keeps its mapping).
    expect(fd.file.hostMapped[3]).toBe(0);
    expect(fd.file.hostMapped[7]).toBe(1);
    fd.unpin(7 * kPage);
    expect(fd.setMemoryAttributes2(t, toPrivate(0, 16 * kPage))).toBe(-1);
    expect(fd.file.isPrivate(7)).toBe(true);
    expect(fd.file.counter(GmemWord.kHostMapped)).toBe(0);
    clean(host, vm);
  });

  it('private -> shared needs no such check', () => {
    const s = setup({ type: KVM_X86_SW_PROTECTED_VM, attributes: 'gmem' });
    const fd = s.vm.createGuestMemfd({ size: 4 * kPage, flags: GUEST_MEMFD_FLAG_MMAP });
    expect(fd.file.counter(GmemWord.kPrivatePages)).toBe(4);
    fd.mmap({ shared: true });
    expect(fd.hostAccess(s.t, 0, false)).toBe('SIGBUS');
    expect(fd.setMemoryAttributes2(s.t, { offset: 0, size: 2 * kPage, attributes: 0 })).toBe(-1);
    expect(typeof fd.hostAccess(s.t, kPage, true, 4)).toBe('number');
    fd.pin(kPage);
    // A pinned shared page refuses the way back; shared again needs no check at all.
    expect(fd.setMemoryAttributes2(s.t, toPrivate(0, 4 * kPage))).toBe(kPage);
    expect(fd.setMemoryAttributes2(s.t, { offset: 0, size: 4 * kPage, attributes: 0 })).toBe(-1);
    fd.unpin(kPage);
    clean(s.host, s.vm);
  });
});
