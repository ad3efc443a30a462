/**
 * guest_memfd on the KVM side (virt/kvm/guest_memfd.c): KVM_CREATE_GUEST_MEMFD, binding to a
 * memslot (KVM_MEM_GUEST_MEMFD + guest_memfd_offset), kvm_gmem_get_pfn() for faults, the
 * punch-hole and conversion invalidations of bound gfns, and the 2026 in-place conversion
 * series' KVM_SET_MEMORY_ATTRIBUTES2 on the file. The file itself (folios, shareability, host
 * mmap, pins) is src/gmem/gmem-file.ts.
 *
 * Which VMs get what (6.18 + the in-place series):
 *   - KVM_X86_DEFAULT_VM: guest_memfd for shared memory only; flags MMAP and INIT_SHARED.
 *   - KVM_X86_SW_PROTECTED_VM with the 'vm' attribute path: the file holds private memory only
 *     (no flags: mmap of a private-memory VM's file is not supported before in-place conversion).
 *   - KVM_X86_SW_PROTECTED_VM with the 'gmem' attribute path: MMAP and INIT_SHARED; the file's
 *     shareability is the attribute; a slot bound to an MMAP file takes shared faults from the
 *     file too (kvm_memslot_is_gmem_only()), so one folio serves both (in-place conversion).
 */
import { fail } from '../host/errno.js';
import type { HostThread, NumaPolicy } from '../host/host.js';
import { count, countN } from '../metrics/counters.js';
import { Op } from '../metrics/ops.js';
import {
  FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, GUEST_MEMFD_FLAG_INIT_SHARED, GUEST_MEMFD_FLAG_MMAP, GmemFile, GmemWord, kPolicyModes,
  type GmemBacking, type GmemFileHandle, gmemBackingOrder, isGmemBacking,
} from '../gmem/gmem-file.js';
import { KVM_MEMORY_ATTRIBUTE_PRIVATE, kvmArchPostSetMemoryAttributes, kvmMmuInvalidateAddHugeRange } from './attributes.js';
import { kvmMmuInvalidateBegin, kvmMmuInvalidateEnd } from './invalidate.js';
import { tdpMmuZapLeafs } from './mmu/tdp/zap.js';
import { kvmFlushRemoteTlbs } from './requests.js';
import { HostPage } from '../host/host.js';
import { bitRangeAll } from '../shm/bitmap.js';
import type { Memslot } from './memslot.js';
import type { Vm } from './vm.js';

/** arch/x86/include/uapi/asm/kvm.h VM types. */
export const KVM_X86_DEFAULT_VM = 0;
export const KVM_X86_SW_PROTECTED_VM = 1;

/** How an in-place conversion splits a huge folio that becomes mixed (`--conversion`). */
export type InPlaceSplit = '4k' | '2m-first';

/** struct kvm_create_guest_memfd, plus the harness's folio size and NUMA policy. */
export interface KvmCreateGuestMemfd {
  size: number;
  flags?: number;
  /** Folio size: 4K, THP 2M, hugetlb 2M or 1G (guest_memfd's hugetlb flag in the 1G series). */
  backing?: GmemBacking;
  policy?: NumaPolicy;
  /** In-place conversion of a huge folio: split to 4K (the series), or 1G -> 2M first. */
  inPlaceSplit?: InPlaceSplit;
}

/** struct kvm_memory_attributes2 (the guest_memfd ioctl): file offset, size, attributes, flags; error_offset out. */
export interface KvmMemoryAttributes2 {
  offset: number;
  size: number;
  attributes: number;
  flags?: number;
}

/** KVM_CAP_GUEST_MEMFD_FLAGS for this VM (kvm_gmem_get_supported_flags()). */
export function kvmGmemSupportedFlags(vm: Vm | null): number {
  if (vm === null || !vm.privateMem || vm.attrPath === 'gmem') return GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED;
  return 0;
}

/** The fd KVM_CREATE_GUEST_MEMFD returns: file operations the selftests exercise. */
export class GuestMemfd {
  readonly file: GmemFile;
  /** The file's index in its VM (memslot records name it). */
  readonly index: number;
  readonly inPlaceSplit: InPlaceSplit;
  /** Maple-tree entries the last KVM_SET_MEMORY_ATTRIBUTES2 stored or replaced (for reports). */
  lastRangeEntries = 0;

  constructor(readonly vm: Vm, index: number, file: GmemFile, inPlaceSplit: InPlaceSplit) {
    this.index = index;
    this.file = file;
    this.inPlaceSplit = inPlaceSplit;
  }

  get size(): number {
    return this.file.npages * 4096;
  }

  /** fstat(): each fd its own inode, st_blksize = PAGE_SIZE. */
  stat(): { st_ino: number; st_size: number; st_blksize: number } {
    return { st_ino: this.file.ino, st_size: this.size, st_blksize: 4096 };
  }

  /** read(2)/write(2)/pread/pwrite: guest_memfd has no read_iter/write_iter. */
  read(): never {
    return fail('EINVAL', 'read() on a guest_memfd: it has no read/write file operations');
  }
  write(): never {
    return fail('EINVAL', 'write() on a guest_memfd: it has no read/write file operations');
  }

  /** madvise(MADV_COLLAPSE) over the mapping: guest_memfd folios are not khugepaged's. */
  madviseCollapse(): never {
    return fail('EINVAL', 'MADV_COLLAPSE on a guest_memfd mapping is rejected');
  }

  /** mbind(): folios allocated from now on follow `policy`. */
  mbind(policy: NumaPolicy): void {
    // do_mbind() -> sanitize_mpol_flags(): a mode the kernel does not know is EINVAL (else the
    // file would store mode -1 and later allocations read an undefined policy).
    if (!kPolicyModes.includes(policy.mode)) fail('EINVAL', `mbind: policy mode '${String(policy.mode)}' is not one of ${kPolicyModes.join(', ')}`);
    if (!(policy.node >= 0 && policy.node < this.vm.host.zones.length)) fail('EINVAL', `mbind: NUMA node ${policy.node} does not exist (host has ${this.vm.host.zones.length})`);
    this.file.setPolicy(policy);
  }

  /**
   * mmap(): MAP_SHARED only, and only with GUEST_MEMFD_FLAG_MMAP (ENODEV otherwise, as
   * kvm_gmem_mmap()). `size` (default: the file's) may run past the end of the file, as an
   * mmap() of any file may: a page there SIGBUSes when touched.
   */
  mmap(opts: { shared: boolean; size?: number }): void {
    if ((this.file.flags & GUEST_MEMFD_FLAG_MMAP) === 0) fail('ENODEV', `mmap of guest_memfd ${this.file.ino}: created without GUEST_MEMFD_FLAG_MMAP`);
    if (!opts.shared) fail('EINVAL', `mmap of guest_memfd ${this.file.ino} with MAP_PRIVATE: guest_memfd has no copy-on-write`);
    const size = opts.size ?? this.size;
    if (!Number.isSafeInteger(size) || size <= 0) fail('EINVAL', `mmap of guest_memfd ${this.file.ino}: length 0x${Number(size).toString(16)} must be positive`);
    // The VMM process's mapping, seen by all its threads: its length in pages (0: not mapped).
    Atomics.store(this.file.w, GmemWord.kMmapped, Math.ceil(size / 4096));
  }

  /**
   * The host touches byte `offset` through its mapping: the pfn, or 'SIGBUS' for a private page
   * or a page past the end of the file (kvm_gmem_fault_user_mapping(): pgoff >= i_size is
   * VM_FAULT_SIGBUS); counted in the file, nothing of the page is read. Outside the mapping
   * the access would be a SIGSEGV: EFAULT here.
   */
  hostAccess(t: HostThread, offset: number, write: boolean, stamp = 0): number | 'SIGBUS' {
    const mapSize = this.file.counter(GmemWord.kMmapped) * 4096;
    if (mapSize === 0) fail('EFAULT', `guest_memfd ${this.file.ino} is not mmap()ed`);
    if (!Number.isSafeInteger(offset) || offset < 0 || offset >= mapSize) {
      fail('EFAULT', `host access: offset 0x${offset.toString(16)} outside the mapping of guest_memfd ${this.file.ino} (length 0x${mapSize.toString(16)})`);
    }
    const pfn = this.file.hostFault(t, Math.floor(offset / 4096));
    count(this.vm.ctx.metrics, Op.gmem_host_fault);
    if (pfn === -1) return 'SIGBUS';
    if (pfn === -2) fail('ENOMEM', `guest_memfd ${this.file.ino}: host out of memory`);
    if (write) this.vm.host.frames.writeStamp(pfn, 0xfff, stamp);
    return pfn;
  }

  /** munmap / MADV_DONTNEED of the host's mapping over [offset, offset + len). */
  munmap(offset: number, len: number): number {
    this.checkAligned('munmap', offset, len);
    return this.file.hostUnmap(offset / 4096, len / 4096);
  }

  /** A long-term pin on a host-mapped shared page (vfio, io_uring). */
  pin(offset: number): void {
    this.file.pin(this.pageOf(offset, 'pin'), 1);
  }
  unpin(offset: number): void {
    this.file.pin(this.pageOf(offset, 'unpin'), -1);
  }

  private pageOf(offset: number, what: string): number {
    if (!Number.isSafeInteger(offset) || offset < 0 || offset >= this.size) fail('EINVAL', `${what}: offset 0x${offset.toString(16)} outside guest_memfd ${this.file.ino} (size 0x${this.size.toString(16)})`);
    return Math.floor(offset / 4096);
  }

  private checkAligned(what: string, offset: number, len: number, inside = true): void {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(len) || offset < 0 || len <= 0 || offset % 4096 !== 0 || len % 4096 !== 0) {
      fail('EINVAL', `${what}: offset 0x${offset.toString(16)} and len 0x${len.toString(16)} must be page aligned, len > 0`);
    }
    if (inside && offset + len > this.size) fail('EINVAL', `${what}: [0x${offset.toString(16)}, 0x${(offset + len).toString(16)}) past the end of guest_memfd ${this.file.ino} (0x${this.size.toString(16)})`);
  }

  /**
   * fallocate(mode, offset, len), kvm_gmem_fallocate(): KEEP_SIZE is required (a guest_memfd's
   * size is fixed: EOPNOTSUPP without it), offset and len page aligned (EINVAL); allocate, or
   * PUNCH_HOLE: invalidate bound gfns (zap), free or split the folios, end the invalidation.
   */
  fallocate(t: HostThread, mode: number, offset: number, len: number): void {
    if ((mode & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE)) !== 0) fail('EOPNOTSUPP', `fallocate mode 0x${mode.toString(16)} is not supported by guest_memfd`);
    if ((mode & FALLOC_FL_KEEP_SIZE) === 0) fail('EOPNOTSUPP', 'fallocate on a guest_memfd needs FALLOC_FL_KEEP_SIZE (its size is fixed)');
    const punch = (mode & FALLOC_FL_PUNCH_HOLE) !== 0;
    // kvm_gmem_allocate() refuses a range past i_size (EINVAL); kvm_gmem_punch_hole() does not
    // check it: truncate_inode_pages_range() past the end has nothing to drop, and succeeds.
    this.checkAligned('fallocate', offset, len, !punch);
    const off = offset / 4096;
    const n = Math.min(len / 4096, this.file.npages - off);
    if (n <= 0) return;
    const m = this.vm.ctx.metrics;
    if (!punch) {
      const added = this.file.allocateRange(t, off, n);
      if (added > 0) {
        count(m, Op.frame_alloc);
        countN(m, Op.page_zero_4k, added);
      }
      return;
    }
    this.file.lock();
    try {
      kvmGmemInvalidateBegin(this.vm, this, off, off + n);
      const punched = this.file.punchHoleLocked(t, off, n);
      if (punched > 0) count(m, Op.frame_free);
      count(m, Op.gmem_punch);
      kvmGmemInvalidateEnd(this.vm, this, off, off + n);
    } finally {
      this.file.unlock();
      t.drain();
    }
  }

  /**
   * KVM_SET_MEMORY_ATTRIBUTES2 (KVM_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES), the in-place series:
   * set the shareability of file pages [offset, offset + size). Shared -> private unmaps the
   * host's mappings of the range, then needs every page of it unreferenced (no pin): otherwise
   * EAGAIN with error_offset, and nothing else changed. Then: invalidate bound gfns (zap, flush), store
   * the range (a maple-tree range store), split huge folios the change made mixed, merge those
   * it made uniform (after zapping their 4K mappings, so later faults map them huge again),
   * recompute mixed flags, end the invalidation. Returns error_offset (-1 when it succeeded).
   */
  setMemoryAttributes2(t: HostThread, a: KvmMemoryAttributes2): number {
    const vm = this.vm;
    if (!vm.privateMem || vm.attrPath !== 'gmem') {
      fail('ENOTTY', vm.privateMem
        ? 'KVM_SET_MEMORY_ATTRIBUTES2: this VM sets attributes through the VM ioctl (--attributes vm), the two are mutually exclusive'
        : `KVM_SET_MEMORY_ATTRIBUTES2: VM type ${vm.vmType} has no private memory`);
    }
    if ((a.flags ?? 0) !== 0) fail('EINVAL', `KVM_SET_MEMORY_ATTRIBUTES2: flags must be 0, got 0x${(a.flags ?? 0).toString(16)}`);
    if ((a.attributes & ~KVM_MEMORY_ATTRIBUTE_PRIVATE) !== 0) fail('EINVAL', `KVM_SET_MEMORY_ATTRIBUTES2: unsupported attributes 0x${a.attributes.toString(16)}`);
    this.checkAligned('KVM_SET_MEMORY_ATTRIBUTES2', a.offset, a.size);
    const f = this.file;
    const off = a.offset / 4096;
    const n = a.size / 4096;
    const end = off + n;
    const priv = a.attributes !== 0;
    const m = vm.ctx.metrics;
    f.lock();
    try {
      count(m, Op.attr_mt_load);
      if (rangeAllPrivate(f, off, end, priv)) return -1;
      if (priv) {
        // kvm_gmem_convert_should_proceed(): unmap_mapping_pages() of the range first (guest_memfd
        // owns the host's mappings of its pages and tears them down itself), then, after
        // lru_add_drain_all(), any reference beyond the file's own (a pin, which keeps its page
        // mapped) refuses the change.
        f.hostUnmapLocked(off, n);
        const bad = f.firstReferenced(off, n);
        if (bad >= 0) {
          count(m, Op.gmem_eagain);
          return bad * 4096;
        }
      }
      kvmGmemInvalidateBegin(vm, this, off, end);
      const entries = f.setPrivateLocked(off, n, priv);
      count(m, Op.attr_mt_store);
      countN(m, Op.attr_mt_entry, entries);
      this.lastRangeEntries = entries;
      if (f.order > 0) this.restructure(off, end);
      kvmGmemInvalidateEnd(vm, this, off, end);
    } finally {
      f.unlock();
      t.drain();
    }
    return -1;
  }

  /**
   * In-place conversion's folio work over [off, end): a huge folio that now holds both
   * shareabilities is split (to 4K, or 1G -> 2M and then only the mixed 2M pieces to 4K), and
   * a region that is uniform, whole and contiguous again is merged, 2M then 1G. The merged
   * regions' gfns join the invalidation (their small SPTEs go) before the merge, so later faults
   * map them huge again. Split and merge are priced per struct page the kernel rewrites.
   */
  private restructure(off: number, end: number): void {
    const f = this.file;
    const m = this.vm.ctx.metrics;
    const big = 1 << f.order;
    const mid = 1 << HostPage.kOrder2M;
    let pages = 0;
    for (let b = off - (off % big); b < end; b += big) {
      if (f.map[b] === 0 && (f.hugeHead === null || f.hugeHead[b >>> f.order] === 0)) continue;
      if (f.folioOrder(b) === f.order) {
        if (!f.hugeMixed(b)) continue;
        if (this.inPlaceSplit === '2m-first' && f.order === HostPage.kOrder1G) {
          pages += f.splitLocked(b, f.order, HostPage.kOrder2M);
        } else {
          pages += f.splitLocked(b, f.order, 0);
          continue;
        }
        count(m, Op.folio_split);
      }
      if (f.orderMid === null) continue;
      for (let s = Math.max(b, off - (off % mid)); s < Math.min(b + big, end); s += mid) {
        if (f.folioOrder(s) === HostPage.kOrder2M && f.midMixed(s)) {
          pages += f.splitLocked(s, HostPage.kOrder2M, 0);
          count(m, Op.folio_split);
        }
      }
    }
    const levels = f.order === HostPage.kOrder1G ? [HostPage.kOrder2M, HostPage.kOrder1G] : [f.order];
    for (const order of levels) {
      const len = 1 << order;
      for (let b = off - (off % len); b < end; b += len) {
        if (!f.mergeable(b, order)) continue;
        kvmGmemInvalidateAdd(this.vm, this, b, b + len);
        pages += f.mergeLocked(b, order);
        count(m, Op.folio_merge);
      }
    }
    if (pages > 0) countN(m, Op.folio_split_page, pages);
  }
}

function rangeAllPrivate(f: GmemFile, start: number, end: number, priv: boolean): boolean {
  return bitRangeAll(f.priv, start, end, priv);
}

/** The gfn range of `slot` bound to file pages [start, end), or null if they do not meet. */
function boundGfns(slot: Memslot, start: number, end: number): [number, number] | null {
  const lo = Math.max(start, slot.gmemPgoff);
  const hi = Math.min(end, slot.gmemPgoff + slot.npages);
  if (lo >= hi) return null;
  return [slot.baseGfn + (lo - slot.gmemPgoff), slot.baseGfn + (hi - slot.gmemPgoff)];
}

/**
 * kvm_gmem_invalidate_begin(): for every memslot bound to the file pages, mmu_lock for write,
 * invalidate begin, add the gfns, zap them (private and shared: the file serves both here),
 * flush. Called with the file's invalidate lock held.
 */
export function kvmGmemInvalidateBegin(vm: Vm, fd: GuestMemfd, start: number, end: number): void {
  count(vm.ctx.metrics, Op.invalidate);
  // Begin and the range add under one hold of mmu_lock: a fault in between would see an
  // in-progress invalidation with no range (KVM WARNs on dropping the lock there).
  kvmGmemInvalidateAdd(vm, fd, start, end, true);
}

/**
 * Widen a running invalidation to file pages [start, end) of every bound slot and zap them, with
 * mmu_lock held for write (the huge pages the range cuts join the range too: their folios may
 * split and their mixed flags change before the end, see kvmMmuInvalidateAddHugeRange()).
 */
function kvmGmemInvalidateAdd(vm: Vm, fd: GuestMemfd, start: number, end: number, begin = false): void {
  vm.withMmuWriteLock(() => {
    if (begin) kvmMmuInvalidateBegin(vm);
    let flush = false;
    for (const s of vm.gmemBindings(fd.file)) {
      const r = boundGfns(s, start, end);
      if (r === null) continue;
      kvmMmuInvalidateAddHugeRange(vm, r[0], r[1]);
      if (tdpMmuZapLeafs(vm, r[0], r[1])) flush = true;
    }
    if (flush) kvmFlushRemoteTlbs(vm);
  });
}

/**
 * kvm_gmem_invalidate_end(): on the 'gmem' attribute path the bound slots' mixed flags follow
 * the file's shareability (the attribute); then invalidate end.
 */
export function kvmGmemInvalidateEnd(vm: Vm, fd: GuestMemfd, start: number, end: number): void {
  vm.withMmuWriteLock(() => {
    if (vm.privateMem && vm.attrPath === 'gmem') {
      for (const s of vm.gmemBindings(fd.file)) {
        const r = boundGfns(s, start, end);
        if (r === null) continue;
        // Mixed flags are per gfn range; recompute for the changed range's pages as a whole.
        kvmArchPostSetMemoryAttributesRange(vm, s, r[0], r[1]);
      }
    }
    kvmMmuInvalidateEnd(vm);
  });
}

/** The post-set recomputation over a range that may hold both attributes (split by runs). */
function kvmArchPostSetMemoryAttributesRange(vm: Vm, slot: Memslot, start: number, end: number): void {
  const f = slot.gmem!;
  let g = start;
  while (g < end) {
    const priv = f.isPrivate(slot.gmemPgoff + (g - slot.baseGfn));
    let e = g + 1;
    while (e < end && f.isPrivate(slot.gmemPgoff + (e - slot.baseGfn)) === priv) e++;
    kvmArchPostSetMemoryAttributes(vm, slot, g, e, priv);
    g = e;
  }
}

/**
 * KVM_CREATE_GUEST_MEMFD, kvm_gmem_create(): size > 0 and page aligned (EINVAL), a multiple of
 * the folio size for hugetlb files (EINVAL), flags within KVM_CAP_GUEST_MEMFD_FLAGS (EINVAL).
 */
export function kvmGmemCreate(vm: Vm, index: number, args: KvmCreateGuestMemfd): GuestMemfd {
  const flags = args.flags ?? 0;
  const backing = args.backing ?? '4k';
  if (!isGmemBacking(backing)) fail('EINVAL', `guest_memfd backing '${String(backing)}' is not one of 4k, thp-2m, hugetlb-2m, hugetlb-1g`);
  const supported = kvmGmemSupportedFlags(vm);
  // flags is a __u64: a bit above 31, which JS bitwise operators would drop, is as invalid as any.
  if (!Number.isSafeInteger(flags) || flags < 0 || flags > 0x7fffffff || (flags & ~supported) !== 0) fail('EINVAL', `KVM_CREATE_GUEST_MEMFD: flags 0x${flags.toString(16)} not supported on this VM (KVM_CAP_GUEST_MEMFD_FLAGS = 0x${supported.toString(16)})`);
  const size = args.size;
  if (!Number.isSafeInteger(size) || size <= 0 || size % 4096 !== 0) fail('EINVAL', `KVM_CREATE_GUEST_MEMFD: size 0x${Number(size).toString(16)} must be a positive multiple of the page size`);
  const order = gmemBackingOrder(backing);
  const hugetlb = backing === 'hugetlb-2m' || backing === 'hugetlb-1g';
  if (hugetlb && size % (4096 * 2 ** order) !== 0) fail('EINVAL', `KVM_CREATE_GUEST_MEMFD: size 0x${size.toString(16)} is not a multiple of the ${backing} page size`);
  const policy = args.policy ?? { mode: 'preferred', node: vm.id % vm.host.zones.length };
  if (!kPolicyModes.includes(policy.mode)) fail('EINVAL', `NUMA policy mode '${String(policy.mode)}' is not one of ${kPolicyModes.join(', ')}`);
  if (policy.node < 0 || policy.node >= vm.host.zones.length) fail('EINVAL', `NUMA node ${policy.node} does not exist (host has ${vm.host.zones.length})`);
  // Without INIT_SHARED a file starts private (6.18: a host fault on it is SIGBUS).
  const file = GmemFile.create(vm.owner, size / 4096, flags, backing, policy, (flags & GUEST_MEMFD_FLAG_INIT_SHARED) === 0);
  return new GuestMemfd(vm, index, file, args.inPlaceSplit ?? '4k');
}

export function attachGuestMemfd(vm: Vm, index: number, h: GmemFileHandle, inPlaceSplit: InPlaceSplit): GuestMemfd {
  return new GuestMemfd(vm, index, new GmemFile(h), inPlaceSplit);
}

/**
 * kvm_gmem_get_pfn(): the pfn of `gfn` in `slot`'s file, allocating the folio (zeroed) if
 * there is none; -1 when the host is out of memory. ht.lastOrder gets the folio's order, the
 * fault's max level (kvm_max_level_for_order()).
 */
export function kvmGmemGetPfn(vm: Vm, slot: Memslot, gfn: number): number {
  const f = slot.gmem!;
  const ht = vm.ctx.hostThread;
  const pfn = f.getOrAllocate(ht, slot.gmemPgoff + (gfn - slot.baseGfn));
  if (pfn < 0) return -1;
  const m = vm.ctx.metrics;
  count(m, Op.gmem_get_pfn);
  if (f.lastAllocated > 0) {
    // kvm_gmem_get_folio() + the folio's first use: allocated and zeroed whole (clear_highpage()
    // of every page before folio_mark_uptodate()).
    count(m, Op.host_fault);
    count(m, Op.frame_alloc);
    countN(m, Op.page_zero_4k, f.lastAllocated);
    f.lastAllocated = 0;
  }
  ht.lastOrder = f.folioOrder(slot.gmemPgoff + (gfn - slot.baseGfn));
  return pfn;
}

/** Counters of a file, for accounting and reports. */
export function gmemCounters(f: GmemFile): Record<string, number> {
  return {
    allocated: f.counter(GmemWord.kAllocated), private: f.counter(GmemWord.kPrivatePages), hostMapped: f.counter(GmemWord.kHostMapped),
    pinned: f.counter(GmemWord.kPinned), stranded: f.counter(GmemWord.kStranded),
    folioSplits: f.counter(GmemWord.kFolioSplits), folioMerges: f.counter(GmemWord.kFolioMerges), sigbus: f.counter(GmemWord.kSigbus),
    punched: f.counter(GmemWord.kPunched),
  };
}
