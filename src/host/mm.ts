/**
 * The VMM process's address space: mmap'd regions (VMAs) that back memslots, the host page
 * fault that populates them (handle_mm_fault / hugetlb_fault), and MADV_DONTNEED.
 *
 * A VMA's host page table is one Int32 entry per mapping granule (4K for anonymous and THP,
 * the huge page for hugetlb) holding pfn + 1 (0 = not present). The folio's head-frame refcount
 * counts the entries that map it, so "frame refcounts equal a recount" is checkable.
 * Each VM lives in its own VMM process, so a VMA's owner is the VM that mapped it.
 */
import { allocSab } from '../shm/arena.js';
import { spinLock, spinUnlock } from '../shm/spinlock.js';
import { fail } from './errno.js';
import { type HostThread, type NumaPolicy, HostPage } from './host.js';

/** Backing sources, named as KVM's selftests name them (lib/test_util.c). */
export const kBackingSources = ['anonymous', 'anonymous_thp', 'anonymous_hugetlb_2mb', 'anonymous_hugetlb_1gb'] as const;
export type BackingSource = (typeof kBackingSources)[number];

export function backingPageOrder(src: BackingSource): number {
  switch (src) {
    case 'anonymous': return 0;
    case 'anonymous_thp': return HostPage.kOrder2M;
    case 'anonymous_hugetlb_2mb': return HostPage.kOrder2M;
    case 'anonymous_hugetlb_1gb': return HostPage.kOrder1G;
  }
}

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

  constructor(readonly handle: VmaHandle) {
    this.id = handle.id;
    this.owner = handle.owner;
    this.backing = handle.backing;
    this.startPage = handle.startPage;
    this.npages = handle.npages;
    this.granuleOrder = handle.granuleOrder;
    this.thp = handle.backing === 'anonymous_thp';
    this.hugetlb = handle.backing === 'anonymous_hugetlb_2mb' || handle.backing === 'anonymous_hugetlb_1gb';
    this.policy = handle.policy;
    this.map = new Int32Array(handle.map);
    this.lockw = new Int32Array(handle.lock);
    this.pmd = handle.pmd ? new Int32Array(handle.pmd) : null;
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

  static create(id: number, owner: number, backing: BackingSource, startPage: number, npages: number, policy: NumaPolicy): Vma {
    const order = backingPageOrder(backing);
    const hugetlb = backing === 'anonymous_hugetlb_2mb' || backing === 'anonymous_hugetlb_1gb';
    if (hugetlb && npages % (1 << order) !== 0) fail('EINVAL', `hugetlb mapping size must be a multiple of the huge page size (${4 << order} KiB)`);
    const granuleOrder = hugetlb ? order : 0;
    return new Vma({
      id, owner, backing, startPage, npages, granuleOrder, policy,
      map: allocSab((npages >>> granuleOrder) * 4), lock: allocSab(4),
      pmd: backing === 'anonymous_thp' ? allocSab(Math.ceil(npages / (1 << HostPage.kOrder2M)) * 4) : null,
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
    return this.map.byteLength;
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
  t.populated = true;
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
