/**
 * The resolving ioctls of mm/userfaultfd.c: UFFDIO_COPY (mfill_atomic_copy(): allocate a folio,
 * copy the VMM's source page into it, map it) and UFFDIO_CONTINUE (mfill_atomic_continue(): map
 * the folio the page cache already holds), then wake_userfault() over the range unless
 * UFFDIO_COPY_MODE_DONTWAKE. Both work granule by granule (4K, or the hugetlb page) and stop at
 * the first one that fails: the result is the pages resolved, or the error if none was
 * (-EEXIST when the first granule is already mapped: another reader resolved it, as happens
 * when two vCPUs faulted on one page; nothing is woken then, the first resolution woke both).
 *
 * The copy's content is not modelled beyond the frame stamps (the VMM's 0xAB prototype has no
 * writer): a copied frame starts with cleared stamps, as a zeroed one does.
 */
import { spinLock, spinUnlock } from '../shm/spinlock.js';
import type { HostThread } from './host.js';
import type { Vma } from './mm.js';
import type { Userfaultfd } from './userfaultfd.js';

export const kEEXIST = -17;
export const kEFAULT = -14;
export const kENOMEM = -12;

/**
 * mfill_atomic_copy() over VMA pages [idx, idx + n) (granule-aligned): returns the 4K pages
 * copied (granules × their size), or a negative errno if none was.
 */
export function mfillAtomicCopy(t: HostThread, vma: Vma, idx: number, n: number): number {
  const go = vma.granuleOrder;
  const g0 = idx >>> go;
  const g1 = (idx + n) >>> go;
  let done = 0;
  for (let g = g0; g < g1; g++) {
    const r = mfillAtomicPteCopy(t, vma, g);
    if (r < 0) return done > 0 ? done : r;
    done += 1 << go;
  }
  return done;
}

/**
 * One granule: mfill_atomic_pte_copy() (anonymous: a new folio, cmpxchg'd into the empty PTE so
 * a racing copy loses with -EEXIST and frees its folio), shmem_mfill_atomic_pte() (the folio goes
 * into the page cache too; one already cached is -EEXIST), hugetlb_mfill_atomic_pte() (under the
 * fault mutex, from the pool). Returns 0 or a negative errno.
 */
function mfillAtomicPteCopy(t: HostThread, vma: Vma, g: number): number {
  const frames = t.host.frames;
  if (vma.cache === null && !vma.hugetlb && !vma.thp) {
    if (Atomics.load(vma.map, g) !== 0) return kEEXIST;
    const pfn = t.allocFolio(0, vma.owner, vma.policy, g, 1);
    if (pfn < 0) return kENOMEM;
    if (Atomics.compareExchange(vma.map, g, 0, pfn + 1) !== 0) {
      frames.addRef(pfn, -1);
      t.freeFolio(pfn);
      return kEEXIST;
    }
    return 0;
  }
  // THP, hugetlb and shared backings populate under the VMA lock, as their fault paths do.
  spinLock(vma.lockw, 0);
  try {
    if (Atomics.load(vma.map, g) !== 0) return kEEXIST;
    if (vma.cache !== null && Atomics.load(vma.cache, g) !== 0) return kEEXIST;
    const shared = vma.cache !== null;
    // A THP range is filled with 4K pages: UFFDIO_COPY never installs a huge PMD for anonymous memory.
    const head = vma.hugetlb
      ? t.allocHugetlb(vma.granuleOrder, vma.owner, vma.policy, g, shared ? 2 : 1)
      : t.allocFolio(0, vma.owner, vma.policy, g, shared ? 2 : 1);
    if (head < 0) return kENOMEM;
    if (shared) Atomics.store(vma.cache!, g, head + 1);
    Atomics.store(vma.map, g, head + 1);
    return 0;
  } finally {
    spinUnlock(vma.lockw, 0);
  }
}

/**
 * mfill_atomic_continue() over VMA pages [idx, idx + n): map each granule's page-cache folio.
 * -EEXIST when the first granule is mapped already, -EFAULT when the cache has no folio there
 * (UFFDIO_CONTINUE never allocates).
 */
export function mfillAtomicContinue(t: HostThread, vma: Vma, idx: number, n: number): number {
  const cache = vma.cache;
  if (cache === null) return kEFAULT;
  const go = vma.granuleOrder;
  let done = 0;
  spinLock(vma.lockw, 0);
  try {
    for (let g = idx >>> go; g < (idx + n) >>> go; g++) {
      let r = 0;
      const c = Atomics.load(cache, g);
      if (Atomics.load(vma.map, g) !== 0) r = kEEXIST;
      else if (c === 0) r = kEFAULT;
      if (r < 0) return done > 0 ? done : r;
      t.host.frames.addRef(c - 1, 1);
      Atomics.store(vma.map, g, c);
      done += 1 << go;
    }
  } finally {
    spinUnlock(vma.lockw, 0);
  }
  return done;
}

/** UFFDIO_COPY: mfillAtomicCopy(), then wake_userfault() over what was copied. Returns as mfillAtomicCopy(). */
export function uffdioCopy(t: HostThread, uffd: Userfaultfd, vma: Vma, idx: number, n: number, resolveNs = 0): number {
  const r = mfillAtomicCopy(t, vma, idx, n);
  if (r > 0) uffd.wake(vma.id, idx, idx + r, resolveNs);
  return r;
}

/** UFFDIO_CONTINUE: mfillAtomicContinue(), then wake_userfault() over what was mapped. */
export function uffdioContinue(t: HostThread, uffd: Userfaultfd, vma: Vma, idx: number, n: number, resolveNs = 0): number {
  const r = mfillAtomicContinue(t, vma, idx, n);
  if (r > 0) uffd.wake(vma.id, idx, idx + r, resolveNs);
  return r;
}
