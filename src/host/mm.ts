/**
 * The VMM process's address space: mmap'd regions (VMAs) that back memslots, the host page
 * fault that populates them (handle_mm_fault / hugetlb_fault), and MADV_DONTNEED.
 *
 * A VMA's host page table is one Int32 entry per mapping granule (4K for anonymous and THP,
 * the huge page for hugetlb) holding pfn + 1 (0 = not present). The folio's head-frame refcount
 * counts the entries that map it, so "frame refcounts equal a recount" is checkable.
 * Each VM lives in its own VMM process, so a VMA's owner is the VM that mapped it.
 *
 * Shared backings (shmem, shared_hugetlb: kvm_util's memfd-backed regions) have a page cache
 * beside the host page table: one entry per granule, the file's folio there, which holds one
 * reference of its own. A fault maps the cached folio (a minor fault) or adds a new one to the
 * cache and maps it; MADV_DONTNEED unmaps and leaves the cache alone.
 *
 * A range registered with a userfaultfd (userfaultfd.ts) is not populated by the fault: a
 * missing page (MISSING) or a cached but unmapped one (MINOR) queues a message and the faulting
 * thread sleeps until the VMM resolves the range (mfill.ts).
 */
import { allocSab, populateSab } from '../shm/arena.js';
import { spinLock, spinUnlock } from '../shm/spinlock.js';
import { fail } from './errno.js';
import { type HostThread, type NumaPolicy, HostPage } from './host.js';
import { type UffdRange, type UffdRangeHandle, UffdFlag, UffdMode, Userfaultfd, uffdRangeOf } from './userfaultfd.js';

/** Backing sources, named as KVM's selftests name them (lib/test_util.c). */
export const kBackingSources = ['anonymous', 'anonymous_thp', 'anonymous_hugetlb_2mb', 'anonymous_hugetlb_1gb', 'shmem', 'shared_hugetlb'] as const;
export type BackingSource = (typeof kBackingSources)[number];

/** get_backing_src_pagesz() as an order; shared_hugetlb is the default hugetlb size, 2 MiB on x86. */
export function backingPageOrder(src: BackingSource): number {
  switch (src) {
    case 'anonymous': return 0;
    case 'anonymous_thp': return HostPage.kOrder2M;
    case 'anonymous_hugetlb_2mb': return HostPage.kOrder2M;
    case 'anonymous_hugetlb_1gb': return HostPage.kOrder1G;
    case 'shmem': return 0;
    case 'shared_hugetlb': return HostPage.kOrder2M;
  }
}

/** Backed by a hugetlb pool. */
export function isHugetlbBacking(src: BackingSource): boolean {
  return src === 'anonymous_hugetlb_2mb' || src === 'anonymous_hugetlb_1gb' || src === 'shared_hugetlb';
}

/** backing_src_is_shared(): MAP_SHARED over a memfd, with a page cache. */
export function isSharedBacking(src: BackingSource): boolean {
  return src === 'shmem' || src === 'shared_hugetlb';
}

/** hostFault()'s answer when the faulting thread sleeps in handle_userfault() (HostThread.uffdBlocked says where). */
export const kHostFaultUffd = -2;

export function isBackingSource(s: string): s is BackingSource {
  return (kBackingSources as readonly string[]).includes(s);
}

export interface VmaHandle {
  readonly id: number;
  readonly owner: number;
  readonly backing: BackingSource;
  /** First 4K page of the mapping (hva >> 12). */
  readonly startPage: number;
  readonly npages: number;
  /** log2 of pages per host page-table entry: 0, or the hugetlb order. */
  readonly granuleOrder: number;
  readonly policy: NumaPolicy;
  readonly map: SharedArrayBuffer;
  readonly lock: SharedArrayBuffer;
  /** THP only: one word per 2M region, 1 while a 2M folio is PMD-mapped there. */
  readonly pmd: SharedArrayBuffer | null;
  /** Shared backings only: the page cache, one entry (pfn + 1) per granule. */
  readonly cache: SharedArrayBuffer | null;
  /** userfaultfd-registered ranges, sorted (UFFDIO_REGISTER appends before the workers attach). */
  readonly uffd: UffdRangeHandle[];
}

export class Vma {
  readonly id: number;
  readonly owner: number;
  readonly backing: BackingSource;
  readonly startPage: number;
  readonly npages: number;
  readonly granuleOrder: number;
  readonly thp: boolean;
  readonly hugetlb: boolean;
  readonly policy: NumaPolicy;
  readonly map: Int32Array;
  readonly lockw: Int32Array;
  readonly pmd: Int32Array | null;
  readonly cache: Int32Array | null;
  /** Registered userfaultfd ranges, or null (the fault path's only cost when there are none). */
  uffd: UffdRange[] | null = null;

  constructor(readonly handle: VmaHandle) {
    this.id = handle.id;
    this.owner = handle.owner;
    this.backing = handle.backing;
    this.startPage = handle.startPage;
    this.npages = handle.npages;
    this.granuleOrder = handle.granuleOrder;
    this.thp = handle.backing === 'anonymous_thp';
    this.hugetlb = isHugetlbBacking(handle.backing);
    this.policy = handle.policy;
    this.map = new Int32Array(handle.map);
    this.lockw = new Int32Array(handle.lock);
    this.pmd = handle.pmd ? new Int32Array(handle.pmd) : null;
    this.cache = handle.cache ? new Int32Array(handle.cache) : null;
    this.attachUffd();
  }

  /** Views of the registered ranges' contexts (after UFFDIO_REGISTER changed the handle's list). */
  attachUffd(): void {
    const ctx = new Map<number, Userfaultfd>();
    for (const u of this.uffd ?? []) ctx.set(u.uffd.id, u.uffd);
    this.uffd = this.handle.uffd.length === 0 ? null : this.handle.uffd.map((r) => {
      let u = ctx.get(r.uffd.id);
      if (u === undefined) ctx.set(r.uffd.id, (u = new Userfaultfd(r.uffd)));
      return { uffd: u, start: r.start, end: r.end, mode: r.mode };
    });
  }

  /**
   * Order of the host mapping that covers page idx (host_pfn_mapping_level()'s answer): the
   * hugetlb page, a THP only while it is still PMD-mapped, else 4K.
   */
  mappingOrder(idx: number): number {
    if (this.hugetlb) return this.granuleOrder;
    if (this.pmd !== null && this.pmd[idx >>> HostPage.kOrder2M] !== 0) return HostPage.kOrder2M;
    return 0;
  }

  /**
   * The page-table and page-cache index arrays every fault on this VMA reads and writes, backed
   * now (populateSab): the VMM's mmap is where the harness pays for its own shared state.
   */
  static create(id: number, owner: number, backing: BackingSource, startPage: number, npages: number, policy: NumaPolicy): Vma {
    const order = backingPageOrder(backing);
    const hugetlb = isHugetlbBacking(backing);
    if (hugetlb && npages % (1 << order) !== 0) fail('EINVAL', `hugetlb mapping size must be a multiple of the huge page size (${4 << order} KiB)`);
    const granuleOrder = hugetlb ? order : 0;
    return new Vma({
      id, owner, backing, startPage, npages, granuleOrder, policy,
      map: populatedSab((npages >>> granuleOrder) * 4), lock: allocSab(4),
      pmd: backing === 'anonymous_thp' ? allocSab(Math.ceil(npages / (1 << HostPage.kOrder2M)) * 4) : null,
      cache: isSharedBacking(backing) ? populatedSab((npages >>> granuleOrder) * 4) : null,
      uffd: [],
    });
  }

  get hva(): number {
    return this.startPage * 2 ** HostPage.kPageShift;
  }

  /** pfn mapped at page `idx` of the VMA, or -1 if not populated. */
  lookup(idx: number): number {
    const g = idx >>> this.granuleOrder;
    const e = Atomics.load(this.map, g);
    return e === 0 ? -1 : e - 1 + (idx & ((1 << this.granuleOrder) - 1));
  }

  bytes(): number {
    return this.map.byteLength + (this.cache?.byteLength ?? 0);
  }
}

/**
 * Host page fault for page `idx` of `vma`: returns the pfn of that 4K page, populating it
 * (allocating a folio of the backing's size) if needed, or -1 when the host is out of memory.
 * `t.lastOrder` receives the order of the folio that backs it, which bounds the mapping level
 * KVM may use (host_pfn_mapping_level()).
 */
export function hostFault(t: HostThread, vma: Vma, idx: number): number {
  const frames = t.host.frames;
  const g = idx >>> vma.granuleOrder;
  // A plain read is a hint: a stale 0 ends in a failed cmpxchg below, a stale pfn in a fault that
  // the mmu_invalidate_seq check retries (the entry only goes away under an invalidation).
  const e = vma.map[g]!;
  if (e !== 0) {
    t.lastOrder = vma.mappingOrder(idx);
    t.populated = false;
    return e - 1 + (idx & ((1 << vma.granuleOrder) - 1));
  }
  if (vma.uffd !== null) {
    const r = uffdRangeOf(vma.uffd, idx);
    if (r !== null && userfaultFor(vma, r, g)) return handleUserfault(t, vma, idx, g, r);
  }
  t.populated = true;
  if (vma.cache !== null) return sharedFault(t, vma, idx, g);
  if (vma.hugetlb) return hugetlbFault(t, vma, idx, g);
  if (vma.thp) return thpFault(t, vma, idx);
  // The new folio is private to this thread until the cmpxchg publishes it: refcount 1 up front.
  const pfn = t.allocFolio(0, vma.owner, vma.policy, idx, 1);
  if (pfn < 0) return -1;
  const prev = Atomics.compareExchange(vma.map, g, 0, pfn + 1);
  if (prev !== 0) {
    // Another thread populated it first; drop ours (the fault is still satisfied).
    frames.addRef(pfn, -1);
    t.freeFolio(pfn);
    t.lastOrder = 0;
    t.populated = false;
    return prev - 1;
  }
  t.lastOrder = 0;
  return pfn;
}

/**
 * Whether an unmapped granule of a registered range is a userfault: MISSING when no folio
 * exists (the page cache has none either, for a shared backing), MINOR when the page cache holds
 * one that this mapping does not map yet.
 */
function userfaultFor(vma: Vma, r: UffdRange, g: number): boolean {
  const cached = vma.cache !== null && Atomics.load(vma.cache, g) !== 0;
  return r.mode === UffdMode.MINOR ? cached : !cached;
}

/**
 * handle_userfault(): queue this thread's message and, unless the range got mapped meanwhile
 * (userfaultfd_must_wait(): the page-table re-read after queueing, which the resolver's map then
 * wake under the queue lock orders against), go to sleep: kHostFaultUffd, with t.uffdBlocked
 * naming the uffd. A mapped entry means the fault is satisfied after all: the thread does not
 * sleep (its entry leaves the queue) but still yields the CPU before GUP retries, and
 * t.uffdSleptNs carries the resolution's modeled ns. So whether the reader was faster than the
 * re-check changes neither the interleaving of a worker's vCPUs nor modeled time.
 */
function handleUserfault(t: HostThread, vma: Vma, idx: number, g: number, r: UffdRange): number {
  if (t.uffdWaiter < 0) fail('EFAULT', `the VMM thread touched page ${idx} of a userfaultfd-registered ${vma.backing} mapping with no reader to serve it`);
  const flags = (t.faultWrite ? UffdFlag.UFFD_PAGEFAULT_FLAG_WRITE : 0) | (r.mode === UffdMode.MINOR ? UffdFlag.UFFD_PAGEFAULT_FLAG_MINOR : 0);
  r.uffd.queueFault(t.uffdWaiter, t.uffdCpu, vma.id, idx - (idx & ((1 << vma.granuleOrder) - 1)), flags, t.faultTimed);
  t.uffdBlocked = r.uffd;
  if (Atomics.load(vma.map, g) !== 0) t.uffdSleptNs = r.uffd.cancelFault(t.uffdWaiter);
  return kHostFaultUffd;
}

/**
 * shmem_fault() / hugetlb_fault() on a MAP_SHARED mapping: map the page-cache folio, adding a
 * new (zeroed) one to the cache first if there is none. The cache's reference and the
 * mapping's are both counted. One lock per VMA serializes population (the folio lock / hugetlb
 * fault mutex), so two threads never add two folios for one index.
 */
function sharedFault(t: HostThread, vma: Vma, idx: number, g: number): number {
  const off = idx & ((1 << vma.granuleOrder) - 1);
  const cache = vma.cache!;
  spinLock(vma.lockw, 0);
  try {
    t.lastOrder = vma.granuleOrder;
    const e = Atomics.load(vma.map, g);
    if (e !== 0) {
      t.populated = false;
      return e - 1 + off;
    }
    let c = Atomics.load(cache, g);
    if (c !== 0) {
      t.host.frames.addRef(c - 1, 1);
      t.populated = false;
    } else {
      const head = vma.hugetlb ? t.allocHugetlb(vma.granuleOrder, vma.owner, vma.policy, g, 2) : t.allocFolio(0, vma.owner, vma.policy, idx, 2);
      if (head < 0) return -1;
      c = head + 1;
      Atomics.store(cache, g, c);
    }
    Atomics.store(vma.map, g, c);
    return c - 1 + off;
  } finally {
    spinUnlock(vma.lockw, 0);
  }
}

/**
 * Write through an alias mapping of a shared backing's file (kvm_util's mmap_alias), as
 * demand_paging_test's prefault_mem() does for MINOR: every granule of VMA pages
 * [first, first + n) gets a page-cache folio, and this mapping still maps none of them. The
 * alias's own page-table references are not modelled. Returns the folios added.
 */
export function prefaultAlias(t: HostThread, vma: Vma, first: number, n: number): number {
  const cache = vma.cache;
  if (cache === null) fail('EINVAL', `${vma.backing} has no page cache to prefault through an alias (use shmem or shared_hugetlb)`);
  const go = vma.granuleOrder;
  let added = 0;
  spinLock(vma.lockw, 0);
  try {
    for (let g = first >>> go; g < (first + n + (1 << go) - 1) >>> go && g < cache.length; g++) {
      if (Atomics.load(cache, g) !== 0) continue;
      const head = vma.hugetlb ? t.allocHugetlb(go, vma.owner, vma.policy, g, 1) : t.allocFolio(0, vma.owner, vma.policy, g, 1);
      if (head < 0) fail('ENOMEM', `host out of memory prefaulting the ${vma.backing} page cache`);
      Atomics.store(cache, g, head + 1);
      added++;
    }
  } finally {
    spinUnlock(vma.lockw, 0);
  }
  return added;
}

/** Drop a shared backing's page cache (the memfd's last close): folios no mapping holds are freed. */
export function truncatePageCache(t: HostThread, vma: Vma): void {
  const cache = vma.cache;
  if (cache === null) return;
  const frames = t.host.frames;
  for (let g = 0; g < cache.length; g++) {
    const c = Atomics.exchange(cache, g, 0);
    if (c !== 0 && frames.addRef(c - 1, -1) === 0) t.freeFolio(c - 1);
  }
}

/**
 * hugetlb_fault(): faults on one huge page are serialized (the kernel's hugetlb fault mutex,
 * hashed by mapping and index; one lock per VMA here, hugetlb faults are rare), so two vCPUs
 * racing for the same page never take two pages from a pool sized exactly for the guest.
 */
function hugetlbFault(t: HostThread, vma: Vma, idx: number, g: number): number {
  const off = idx & ((1 << vma.granuleOrder) - 1);
  spinLock(vma.lockw, 0);
  try {
    const e = Atomics.load(vma.map, g);
    if (e !== 0) {
      t.lastOrder = vma.granuleOrder;
      t.populated = false;
      return e - 1 + off;
    }
    const head = t.allocHugetlb(vma.granuleOrder, vma.owner, vma.policy, g, 1);
    if (head < 0) return -1;
    Atomics.store(vma.map, g, head + 1);
    t.lastOrder = vma.granuleOrder;
    return head + off;
  } finally {
    spinUnlock(vma.lockw, 0);
  }
}

/** THP "always": a 2M folio when the aligned 2M range lies inside the VMA, else 4K. */
function thpFault(t: HostThread, vma: Vma, idx: number): number {
  const base = idx - (idx & ((1 << HostPage.kOrder2M) - 1));
  const hvaAligned = ((vma.startPage + base) & ((1 << HostPage.kOrder2M) - 1)) === 0;
  spinLock(vma.lockw, 0);
  try {
    const e = Atomics.load(vma.map, idx);
    if (e !== 0) {
      t.lastOrder = vma.mappingOrder(idx);
      t.populated = false;
      return e - 1;
    }
    let empty = hvaAligned && base + (1 << HostPage.kOrder2M) <= vma.npages;
    for (let i = 0; empty && i < 1 << HostPage.kOrder2M; i++) if (Atomics.load(vma.map, base + i) !== 0) empty = false;
    if (empty) {
      const head = t.allocFolio(HostPage.kOrder2M, vma.owner, vma.policy, base, 1 << HostPage.kOrder2M);
      if (head >= 0) {
        for (let i = 0; i < 1 << HostPage.kOrder2M; i++) Atomics.store(vma.map, base + i, head + i + 1);
        Atomics.store(vma.pmd!, base >>> HostPage.kOrder2M, 1);
        t.lastOrder = HostPage.kOrder2M;
        return head + (idx - base);
      }
    }
    const pfn = t.allocFolio(0, vma.owner, vma.policy, idx, 1);
    if (pfn < 0) return -1;
    Atomics.store(vma.map, idx, pfn + 1);
    t.lastOrder = 0;
    return pfn;
  } finally {
    spinUnlock(vma.lockw, 0);
  }
}

/**
 * The VMA pages [first, end) that MADV_DONTNEED over [first, first + n) really unmaps, which is
 * the range its mmu_notifier invalidation must cover (written to `out[0..1]`, clamped to the VMA):
 *  - hugetlb unmaps whole huge pages only: __unmap_hugepage_range() widens the notifier range to
 *    the huge page size (adjust_range_if_pmd_sharing_possible() and the hstate alignment) before
 *    mmu_notifier_invalidate_range_start(), so the range grows to the huge page boundaries;
 *  - THP and 4K: zap_huge_pmd() drops a whole PMD-mapped folio only when the range covers the
 *    whole PMD, else __split_huge_pmd() splits it and only the 4K PTEs in range go; either way the
 *    pages unmapped are exactly those requested.
 */
export function dontneedExtent(vma: Vma, first: number, n: number, out: Int32Array | number[]): void {
  const granule = 2 ** vma.granuleOrder;
  out[0] = Math.floor(first / granule) * granule;
  out[1] = Math.min(vma.npages, Math.ceil((first + n) / granule) * granule);
}

/**
 * MADV_DONTNEED over VMA pages [first, first + n): drop the host mappings, freeing folios whose
 * last mapping goes. Hugetlb ranges are widened to whole huge pages, as the kernel requires
 * (dontneedExtent() says which pages go). The caller has already run the mmu_notifier
 * invalidation over dontneedExtent(), not just the requested pages.
 */
export function madviseDontneed(t: HostThread, vma: Vma, first: number, n: number): number {
  const frames = t.host.frames;
  const go = vma.granuleOrder;
  const g0 = first >>> go;
  const g1 = (first + n + (1 << go) - 1) >>> go;
  let dropped = 0;
  // Unmapping any part of a PMD-mapped THP splits the PMD (split_huge_pmd): what stays mapped is
  // mapped by 4K PTEs, so KVM may no longer map it huge.
  if (vma.pmd !== null) for (let r = first >>> HostPage.kOrder2M; r <= (first + n - 1) >>> HostPage.kOrder2M && r < vma.pmd.length; r++) Atomics.store(vma.pmd, r, 0);
  for (let g = g0; g < g1 && g < vma.map.length; g++) {
    const e = Atomics.exchange(vma.map, g, 0);
    if (e === 0) continue;
    dropped++;
    const head = frames.head(e - 1);
    if (frames.addRef(head, -1) === 0) t.freeFolio(head);
  }
  return dropped;
}

function populatedSab(bytes: number): SharedArrayBuffer {
  const sab = allocSab(bytes);
  populateSab(sab);
  return sab;
}
