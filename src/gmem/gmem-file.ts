/**
 * A guest_memfd file: the inode's page cache of folios (4K, THP 2M, hugetlb 2M or 1G), its
 * per-page shareability (the 2026 in-place conversion series keeps it in the file), the host's
 * mmap of shared pages and the pins on them. The KVM side (virt/kvm/guest_memfd.c: create,
 * bind, get_pfn, the attribute ioctls) is src/kvm/guest_memfd.ts; this layer knows no KVM words
 * beyond the callbacks it is handed to invalidate bound gfns.
 *
 * Shared layout (every thread attaches the same SABs):
 *   words     Int32, padded: [kLock] the filemap invalidate lock + folio lock (one spinlock: the
 *             harness serialises allocation, punch, split/merge and conversion of one file), then
 *             counters written under the lock and read with Atomics.load
 *   map       Int32 per 4K page: pfn + 1 of the page, 0 = hole (no folio)
 *   priv      Int32 bitmap, 1 bit per page: set = private (shareability)
 *   hostMapped Uint8 per page: 1 while the host's mmap maps the page
 *   pins      Uint8 per page: long-term pins (GUP FOLL_LONGTERM) on the page
 *   orderHuge huge files only, Int8 per huge index: the folio order there now (2M files: 9 or
 *             0; 1G files: 18, or 9 meaning "see orderMid")
 *   orderMid  1G files only, Int8 per 2M index: 9 or 0
 *   privCount huge files only, Int32 per huge index: private pages in it (uniform at 0 or 2^order)
 *   hugeHead  hugetlb only, Int32 per huge index: head pfn + 1 of the huge page allocated there,
 *             kept while any piece of it is still owned (split pieces, stranded pieces)
 *   stranded  hugetlb only, Int32 per huge index: pieces punched out of a split huge page that
 *             cannot go back to the pool until every piece is free again
 *
 * Folios: a folio of order o covers file offsets aligned to 2^o (allocated at the aligned index,
 * as filemap_alloc_folio() does). The frame table records the physical allocation (the hugetlb
 * page, the THP); the file's folio structure above records how it is split now, so the fault
 * path's max level is folioOrder(off). A split or merge is O(512) here where the kernel rewrites
 * every struct page of the folio: modeled time prices it per struct page (folio_split_page).
 * A 4K piece leaves the frame table's folio only when it is freed (a THP is split there first;
 * a hugetlb page cannot be: its piece is stranded). Splits and merges run under the lock inside
 * the caller's invalidation, so a fault that read the old order retries.
 *
 * Content: frames carry stamps when the host has them. A hole reads back as zero (a new folio
 * is zeroed; a punched page's stamp is cleared even when its memory cannot be freed).
 */
import { allocSab, Arena } from '../shm/arena.js';
import { spinLock, spinUnlock } from '../shm/spinlock.js';
import { bitCount, bitRangeAll, bitRangeSet, bitTest } from '../shm/bitmap.js';
import { fail } from '../host/errno.js';
import { FrameLayout } from '../host/frame-table.js';
import { HostPage, type HostThread, type NumaPolicy } from '../host/host.js';

/** include/uapi/linux/kvm.h: struct kvm_create_guest_memfd flags. */
export const GUEST_MEMFD_FLAG_MMAP = 1 << 0;
export const GUEST_MEMFD_FLAG_INIT_SHARED = 1 << 1;
/** include/uapi/linux/falloc.h */
export const FALLOC_FL_KEEP_SIZE = 0x01;
export const FALLOC_FL_PUNCH_HOLE = 0x02;

/** Folio sizes a guest_memfd can be backed by (`--backing`). */
export const kGmemBackings = ['4k', 'thp-2m', 'hugetlb-2m', 'hugetlb-1g'] as const;
export type GmemBacking = (typeof kGmemBackings)[number];

export function isGmemBacking(s: string): s is GmemBacking {
  return (kGmemBackings as readonly string[]).includes(s);
}

export function gmemBackingOrder(b: GmemBacking): number {
  return b === '4k' ? 0 : b === 'hugetlb-1g' ? HostPage.kOrder1G : HostPage.kOrder2M;
}

export const enum GmemWord {
  kLock = 0,
  /** Counters (pages, except where named), under kLock. */
  kAllocated = Arena.kPadWords,
  kHostMapped = Arena.kPadWords + 1,
  kPinned = Arena.kPadWords + 2,
  kStranded = Arena.kPadWords + 3,
  kFolioSplits = Arena.kPadWords + 4,
  kFolioMerges = Arena.kPadWords + 5,
  kSigbus = Arena.kPadWords + 6,
  kPunched = Arena.kPadWords + 7,
  kPrivatePages = Arena.kPadWords + 8,
  /** NUMA policy (mbind): mode 0 preferred, 1 bind, 2 interleave; node. */
  kPolicyMode = Arena.kPadWords + 9,
  kPolicyNode = Arena.kPadWords + 10,
  /** The VMM's mapping of the file (MAP_SHARED), its length in pages; 0: not mapped. */
  kMmapped = Arena.kPadWords + 11,
  /**
   * Pages of this file's gfns backed twice right now (a private frame and the VMM's shared
   * copy), and the most there ever were: kept by the VMM of split-and-double-allocate.
   */
  kDoubleNow = Arena.kPadWords + 12,
  kDoublePeak = Arena.kPadWords + 13,
  /** Bumped by every mbind(), so each thread's cached policy object is rebuilt only then. */
  kPolicyGen = Arena.kPadWords + 14,
  kWords = Arena.kPadWords * 2,
}

export interface GmemFileHandle {
  /** The inode number: each guest_memfd gets its own inode (anon_inode_create_getfile). */
  readonly ino: number;
  readonly owner: number;
  readonly npages: number;
  readonly flags: number;
  readonly backing: GmemBacking;
  readonly words: SharedArrayBuffer;
  readonly map: SharedArrayBuffer;
  readonly priv: SharedArrayBuffer;
  readonly hostMapped: SharedArrayBuffer;
  readonly pins: SharedArrayBuffer;
  readonly orderHuge: SharedArrayBuffer | null;
  readonly orderMid: SharedArrayBuffer | null;
  readonly privCount: SharedArrayBuffer | null;
  readonly hugeHead: SharedArrayBuffer | null;
  readonly stranded: SharedArrayBuffer | null;
}

/** The mempolicy modes modeled (MPOL_PREFERRED, MPOL_BIND, MPOL_INTERLEAVE), in kPolicyMode's encoding. */
export const kPolicyModes = ['preferred', 'bind', 'interleave'] as const;

let nextIno = 1;

export class GmemFile {
  readonly ino: number;
  readonly owner: number;
  readonly npages: number;
  readonly flags: number;
  readonly backing: GmemBacking;
  /** Folio order new folios get (0, 9 or 18). */
  readonly order: number;
  readonly hugetlb: boolean;
  readonly w: Int32Array;
  readonly map: Int32Array;
  readonly priv: Int32Array;
  readonly hostMapped: Uint8Array;
  readonly pins: Uint8Array;
  readonly orderHuge: Int8Array | null;
  readonly orderMid: Int8Array | null;
  readonly privCount: Int32Array | null;
  readonly hugeHead: Int32Array | null;
  readonly stranded: Int32Array | null;

  constructor(readonly handle: GmemFileHandle) {
    this.ino = handle.ino;
    this.owner = handle.owner;
    this.npages = handle.npages;
    this.flags = handle.flags;
    this.backing = handle.backing;
    this.order = gmemBackingOrder(handle.backing);
    this.hugetlb = handle.backing === 'hugetlb-2m' || handle.backing === 'hugetlb-1g';
    this.w = new Int32Array(handle.words);
    this.map = new Int32Array(handle.map);
    this.priv = new Int32Array(handle.priv);
    this.hostMapped = new Uint8Array(handle.hostMapped);
    this.pins = new Uint8Array(handle.pins);
    this.orderHuge = handle.orderHuge ? new Int8Array(handle.orderHuge) : null;
    this.orderMid = handle.orderMid ? new Int8Array(handle.orderMid) : null;
    this.privCount = handle.privCount ? new Int32Array(handle.privCount) : null;
    this.hugeHead = handle.hugeHead ? new Int32Array(handle.hugeHead) : null;
    this.stranded = handle.stranded ? new Int32Array(handle.stranded) : null;
  }

  /**
   * A new file of `npages` (hugetlb files are sized in huge pages; a THP file's tail past the
   * last whole 2M gets 4K folios). `initPrivate`: every page starts private (no INIT_SHARED).
   */
  static create(owner: number, npages: number, flags: number, backing: GmemBacking, policy: NumaPolicy, initPrivate: boolean): GmemFile {
    const order = gmemBackingOrder(backing);
    const hugetlb = backing === 'hugetlb-2m' || backing === 'hugetlb-1g';
    const nHuge = order > 0 ? Math.ceil(npages / 2 ** order) : 0;
    const f = new GmemFile({
      ino: nextIno++, owner, npages, flags, backing,
      words: allocSab(GmemWord.kWords * 4),
      map: allocSab(npages * 4),
      priv: allocSab(Math.ceil(npages / 32) * 4),
      hostMapped: allocSab(npages),
      pins: allocSab(npages),
      orderHuge: order > 0 ? allocSab(nHuge) : null,
      orderMid: order === HostPage.kOrder1G ? allocSab(nHuge << (HostPage.kOrder1G - HostPage.kOrder2M)) : null,
      privCount: order > 0 ? allocSab(nHuge * 4) : null,
      hugeHead: hugetlb ? allocSab(nHuge * 4) : null,
      stranded: hugetlb ? allocSab(nHuge * 4) : null,
    });
    f.setPolicy(policy);
    if (initPrivate) {
      f.priv.fill(-1);
      Atomics.store(f.w, GmemWord.kPrivatePages, npages);
      if (f.privCount !== null) for (let hi = 0; hi < nHuge; hi++) f.privCount[hi] = Math.min(2 ** order, npages - hi * 2 ** order);
    }
    return f;
  }

  lock(): number {
    return spinLock(this.w, GmemWord.kLock);
  }
  unlock(): void {
    spinUnlock(this.w, GmemWord.kLock);
  }

  /** mbind(): the policy later folios are allocated with (folios already there stay put). */
  setPolicy(p: NumaPolicy): void {
    Atomics.store(this.w, GmemWord.kPolicyMode, kPolicyModes.indexOf(p.mode));
    Atomics.store(this.w, GmemWord.kPolicyNode, p.node);
    Atomics.add(this.w, GmemWord.kPolicyGen, 1);
  }
  /** The policy now (an allocation's; the pair: setPolicy()'s stores, then its add of the generation). */
  policy(): NumaPolicy {
    const gen = Atomics.load(this.w, GmemWord.kPolicyGen);
    if (gen !== this.policyGen || this.policyObj === null) {
      this.policyObj = { mode: kPolicyModes[Atomics.load(this.w, GmemWord.kPolicyMode)]!, node: Atomics.load(this.w, GmemWord.kPolicyNode) };
      this.policyGen = gen;
    }
    return this.policyObj;
  }
  private policyObj: NumaPolicy | null = null;
  private policyGen = -1;

  /** pfn of page `off`, or -1 for a hole. Lock-free: a stale answer is caught by the caller's invalidation retry. */
  lookup(off: number): number {
    const e = Atomics.load(this.map, off);
    return e === 0 ? -1 : e - 1;
  }

  /** Shareability of page `off` (the pair: the lock holder's Atomics.or/and on the word). */
  isPrivate(off: number): boolean {
    return bitTest(this.priv, off);
  }

  /**
   * Order of the folio holding page `off` now (kvm_gmem_get_pfn()'s max_order). Lock-free: the
   * pair is the lock holder's Atomics.store of the order inside an invalidation, this load before
   * the fault's mmu_invalidate_seq check.
   */
  folioOrder(off: number): number {
    if (this.order === 0) return 0;
    const hi = off >>> this.order;
    if ((hi + 1) << this.order > this.npages) return 0;
    const o = Atomics.load(this.orderHuge!, hi);
    if (o === this.order || this.orderMid === null) return o;
    return Atomics.load(this.orderMid, off >>> HostPage.kOrder2M);
  }

  counter(word: GmemWord): number {
    this.publishPending();
    return Atomics.load(this.w, word);
  }

  /** Whether file page `off` still holds memory: in the file, or a stranded piece of a huge page. */
  holdsPage(off: number): boolean {
    // Read by the VMM's accounting on any thread, outside the lock: the pairs are the lock
    // holder's Atomics.store of the entry and of the huge page's head.
    return Atomics.load(this.map, off) !== 0 || (this.hugeHead !== null && Atomics.load(this.hugeHead, off >>> this.order) !== 0);
  }

  /** `d` more (or fewer) pages backed twice; the peak follows (the pair: Atomics on both words). */
  addDouble(d: number): void {
    const now = Atomics.add(this.w, GmemWord.kDoubleNow, d) + d;
    for (let peak = Atomics.load(this.w, GmemWord.kDoublePeak); now > peak; peak = Atomics.load(this.w, GmemWord.kDoublePeak)) {
      if (Atomics.compareExchange(this.w, GmemWord.kDoublePeak, peak, now) === peak) break;
    }
  }
  private bump(word: GmemWord, d: number): void {
    Atomics.add(this.w, word, d);
  }

  /**
   * kvm_gmem_get_folio() with creation: the pfn of page `off`, allocating the folio that covers
   * it if there is none (under the lock, like the filemap's folio lock). Returns -1 when the host
   * is out of memory; `lastAllocated` says how many pages were added (the caller zeroes them).
   */
  getOrAllocate(t: HostThread, off: number): number {
    // A plain read is a hint, as hostFault()'s: a stale 0 ends in the cmpxchg (4K) or the locked
    // re-read below, a stale pfn (a punch racing the fault) in the fault's mmu_invalidate_seq
    // retry, since the punch runs inside an invalidation of the bound gfns.
    const e = this.map[off]!;
    if (e !== 0) {
      this.lastAllocated = 0;
      return e - 1;
    }
    if (this.order === 0) return this.allocate4k(t, off);
    this.lock();
    try {
      return this.allocateLocked(t, off);
    } finally {
      this.unlock();
    }
  }

  /**
   * A 4K file's fault-time allocation without the file lock: filemap_add_folio() inserts under
   * the page cache's own xarray lock, which the cmpxchg of the entry stands for, and KVM's
   * kvm_gmem_get_pfn() takes no invalidate lock either (a punch racing it is caught by the
   * fault's mmu_invalidate_seq retry; the folio it added stays in the file, as in KVM). The
   * loser of a race frees its folio and uses the winner's.
   */
  private allocate4k(t: HostThread, off: number): number {
    this.lastAllocated = 0;
    const pfn = t.allocFolio(0, this.owner, this.policy(), off, 1);
    if (pfn < 0) return -1;
    const prev = Atomics.compareExchange(this.map, off, 0, pfn + 1);
    if (prev !== 0) {
      t.host.frames.addRef(pfn, -1);
      t.freeFolio(pfn);
      return prev - 1;
    }
    // The allocation counter is batched per thread on this path (an atomic add per 4K fault on
    // a line every faulting thread writes is measurable) and published at the thread's drain(),
    // which every thread runs before it reports, as the host's per-owner accounting is.
    if (this.pendingAllocated++ === 0 && this.drainFor !== t) {
      this.drainFor = t;
      t.onDrain.push(() => this.publishPending());
    }
    this.lastAllocated = 1;
    return pfn;
  }

  private pendingAllocated = 0;
  private drainFor: HostThread | null = null;

  private publishPending(): void {
    if (this.pendingAllocated === 0) return;
    Atomics.add(this.w, GmemWord.kAllocated, this.pendingAllocated);
    this.pendingAllocated = 0;
  }

  /** Pages the last allocation added (0 if the page was there). */
  lastAllocated = 0;

  private allocateLocked(t: HostThread, off: number): number {
    this.lastAllocated = 0;
    const e = Atomics.load(this.map, off);
    if (e !== 0) return e - 1;
    const policy = this.policy();
    const big = 1 << this.order;
    if (this.hugetlb) {
      const hi = off >>> this.order;
      const base = hi << this.order;
      const head = this.hugeHead![hi]! - 1;
      if (head >= 0) {
        // A piece of a split huge page that was punched out: still this file's memory
        // (stranded); it comes back at its own place, zeroed.
        const pfn = head + (off - base);
        Atomics.store(this.map, off, pfn + 1);
        this.stranded![hi]!--;
        this.bump(GmemWord.kStranded, -1);
        this.added(1);
        return pfn;
      }
      const h = t.allocHugetlb(this.order, this.owner, policy, hi, 1);
      if (h < 0) return -1;
      Atomics.store(this.hugeHead!, hi, h + 1);
      this.setHugeOrder(hi, this.order);
      for (let i = 0; i < big; i++) Atomics.store(this.map, base + i, h + i + 1);
      this.added(big);
      return h + (off - base);
    }
    if (this.order > 0) {
      // THP: a 2M folio when the aligned range is a hole, else 4K (as shmem falls back).
      const base = off - (off & (big - 1));
      let empty = base + big <= this.npages;
      for (let i = 0; empty && i < big; i++) if (this.map[base + i] !== 0) empty = false;
      if (empty) {
        // Interleave by folio index, as the hugetlb path does (the kernel's NO_INTERLEAVE_INDEX
        // round-robins per allocation: folios allocated in file order alternate nodes); the
        // page index of a 2M folio is a multiple of 512 and would put every one on one node.
        const h = t.allocFolio(this.order, this.owner, policy, off >>> this.order, 1);
        if (h >= 0) {
          this.setHugeOrder(off >>> this.order, this.order);
          for (let i = 0; i < big; i++) Atomics.store(this.map, base + i, h + i + 1);
          this.added(big);
          return h + (off - base);
        }
      }
      if (base + big <= this.npages) Atomics.store(this.orderHuge!, off >>> this.order, 0);
    }
    const pfn = t.allocFolio(0, this.owner, policy, off, 1);
    if (pfn < 0) return -1;
    Atomics.store(this.map, off, pfn + 1);
    this.added(1);
    return pfn;
  }

  private added(pages: number): void {
    this.bump(GmemWord.kAllocated, pages);
    this.lastAllocated += pages;
  }

  private setHugeOrder(hi: number, order: number): void {
    Atomics.store(this.orderHuge!, hi, order);
    if (this.orderMid !== null) this.orderMid.fill(HostPage.kOrder2M, hi << 9, (hi + 1) << 9);
  }

  /** fallocate(0 or KEEP_SIZE): allocate every folio over [off, off + n). Returns pages added. */
  allocateRange(t: HostThread, off: number, n: number): number {
    let added = 0;
    this.lock();
    try {
      for (let p = off; p < off + n; p++) {
        if (this.map[p] !== 0) continue;
        if (this.allocateLocked(t, p) < 0) fail('ENOMEM', `guest_memfd ${this.ino}: host out of memory allocating page ${p} (${this.backing})`);
        added += this.lastAllocated;
      }
    } finally {
      this.unlock();
      t.drain();
    }
    this.lastAllocated = 0;
    return added;
  }

  /**
   * fallocate(PUNCH_HOLE | KEEP_SIZE) over [off, off + n), after the caller's invalidation
   * zapped every mapping of it (kvm_gmem_punch_hole: invalidate begin, truncate, end). A folio
   * wholly inside the range is freed; one the range cuts is split to 4K (split_folio()) and the
   * pages inside go: freed, or, for a hugetlb page, stranded — still this file's memory,
   * counted — until every piece is punched, then the huge page is merged and goes back to its
   * pool. Every punched page reads back as zero; the host's mappings of punched pages go too
   * (truncate unmaps them). Returns the pages that left the file.
   */
  punchHoleLocked(t: HostThread, off: number, n: number): number {
    let punched = 0;
    const end = off + n;
    let p = off;
    while (p < end) {
      if (this.map[p] === 0) {
        p++;
        continue;
      }
      const order = this.folioOrder(p);
      const fbase = p - (p & ((1 << order) - 1));
      const fend = fbase + (1 << order);
      if (fbase >= off && fend <= end) {
        this.removeFolio(t, fbase, order);
        punched += 1 << order;
        p = fend;
        continue;
      }
      this.splitLocked(fbase, order, 0);
    }
    return punched;
  }

  /** Drop folio [base, base + 2^order) from the file (its pages are unmapped everywhere). */
  private removeFolio(t: HostThread, base: number, order: number): void {
    const frames = t.host.frames;
    const n = 1 << order;
    const pfn = this.map[base]! - 1;
    for (let i = 0; i < n; i++) {
      Atomics.store(this.map, base + i, 0);
      if (this.hostMapped[base + i] !== 0) {
        Atomics.store(this.hostMapped, base + i, 0);
        this.bump(GmemWord.kHostMapped, -1);
      }
    }
    this.bump(GmemWord.kAllocated, -n);
    this.bump(GmemWord.kPunched, n);
    frames.clearStamps(pfn, frames.stamps ? n : 0);
    if (!this.hugetlb) {
      const physOrder = frames.order(pfn);
      if (physOrder > order) this.splitPhysical(frames, pfn - (pfn & ((1 << physOrder) - 1)), physOrder);
      frames.addRef(pfn, -1);
      t.freeFolio(pfn);
      return;
    }
    const hi = base >>> this.order;
    if (order === this.order) {
      Atomics.store(this.hugeHead!, hi, 0);
      frames.addRef(pfn, -1);
      t.freeFolio(pfn);
      return;
    }
    // A piece of a split huge page: it stays (stranded) until the whole page is free. Its pages
    // come back one 4K page at a time (allocateLocked()), so a 2M piece of a 1G page is no 2M
    // folio any more: a fault must not map it 2M over pages that are still holes.
    if (order > 0) Atomics.store(this.orderMid!, base >>> HostPage.kOrder2M, 0);
    this.stranded![hi]! += n;
    this.bump(GmemWord.kStranded, n);
    if (this.stranded![hi] === 1 << this.order) {
      // Every piece is punched: restructure the huge page and give it back to its pool.
      const head = this.hugeHead![hi]! - 1;
      this.stranded![hi] = 0;
      Atomics.store(this.hugeHead!, hi, 0);
      this.setHugeOrder(hi, this.order);
      this.bump(GmemWord.kStranded, -(1 << this.order));
      this.bump(GmemWord.kFolioMerges, 1);
      frames.addRef(head, -1);
      t.freeFolio(head);
    }
  }

  /** A THP (frame-table folio of `order` at `head`) becomes 4K folios, so 4K pieces can be freed. */
  private splitPhysical(frames: HostThread['host']['frames'], head: number, order: number): void {
    const meta = frames.meta(head);
    const node = (meta >>> FrameLayout.kMetaNodeShift) & FrameLayout.kMetaNodeMask;
    const dirty = meta & FrameLayout.kMetaDirty;
    // Every piece is still in the file (a THP loses pages only after this split): one reference each.
    for (let i = 0; i < 1 << order; i++) frames.initFolio(head + i, 0, dirty, node, this.owner, 1);
  }

  /**
   * split_folio() of the folio at [base, base + 2^order) to `toOrder` (0, or 9 on a 1G file).
   * Returns the struct pages the kernel would rewrite (for the modeled price).
   */
  splitLocked(base: number, order: number, toOrder: number): number {
    if (toOrder >= order) return 0;
    if (order === this.order) {
      const hi = base >>> this.order;
      if (this.orderMid === null) Atomics.store(this.orderHuge!, hi, 0);
      else {
        this.orderMid.fill(toOrder, hi << 9, (hi + 1) << 9);
        Atomics.store(this.orderHuge!, hi, HostPage.kOrder2M);
      }
    } else {
      Atomics.store(this.orderMid!, base >>> HostPage.kOrder2M, 0);
    }
    this.bump(GmemWord.kFolioSplits, 1);
    return 1 << order;
  }

  /**
   * The folio "restructuring" of the series: the pieces over the 2M (order 9) or whole huge
   * (the file's order) region at `base` become one folio again, if every page of it is in the
   * file (nothing punched or stranded) and of one shareability. Returns the struct pages
   * rewritten, or 0 if it could not merge.
   */
  mergeLocked(base: number, order: number): number {
    if (!this.mergeable(base, order)) return 0;
    if (order === this.order) Atomics.store(this.orderHuge!, base >>> this.order, this.order);
    else Atomics.store(this.orderMid!, base >>> HostPage.kOrder2M, HostPage.kOrder2M);
    this.bump(GmemWord.kFolioMerges, 1);
    return 1 << order;
  }

  /** Whether mergeLocked(base, order) would merge (the caller zaps the region's mappings first). */
  mergeable(base: number, order: number): boolean {
    if (this.order === 0 || this.folioOrder(base) >= order) return false;
    const hi = base >>> this.order;
    if ((hi + 1) << this.order > this.npages) return false;
    if (order === this.order) {
      const pc = this.privCount![hi]!;
      if (pc !== 0 && pc !== 1 << this.order) return false;
    } else if (!bitRangeAll(this.priv, base, base + (1 << order), this.isPrivate(base))) return false;
    return this.wholeRegion(base, order);
  }

  /** Whether the huge region at `base` (the file's order) holds both shareabilities. */
  hugeMixed(base: number): boolean {
    const pc = this.privCount![base >>> this.order]!;
    return pc !== 0 && pc !== 1 << this.order;
  }

  /** Whether the 2M region at `base` holds both shareabilities. */
  midMixed(base: number): boolean {
    return !bitRangeAll(this.priv, base, base + (1 << HostPage.kOrder2M), this.isPrivate(base));
  }

  /** Every page of [base, base + 2^order) is in the file and physically in order. */
  private wholeRegion(base: number, order: number): boolean {
    if (this.hugetlb) {
      const hi = base >>> this.order;
      if (this.stranded![hi] !== 0 || this.hugeHead![hi] === 0) return false;
      return true;
    }
    const e0 = this.map[base]!;
    if (e0 === 0 || (e0 - 1) % (1 << order) !== 0) return false;
    for (let i = 1; i < 1 << order; i++) if (this.map[base + i] !== e0 + i) return false;
    return true;
  }

  /**
   * Set shareability of [off, off + n) (under the lock). Returns the range entries a maple tree
   * holding it as ranges would have stored or replaced: the boundaries inside the range that
   * disappear, plus the ones created at its ends, plus the new entry (mas_store_range()'s work).
   */
  setPrivateLocked(off: number, n: number, priv: boolean): number {
    const end = off + n;
    let inner = 0;
    if (n > 1) {
      // Boundaries inside the range (word at a time: x ^ (x >> 1) marks where neighbours differ).
      for (let p = off + 1; p < end; p++) if (this.isPrivate(p) !== this.isPrivate(p - 1)) inner++;
    }
    if (this.privCount !== null) {
      for (let p = off; p < end; ) {
        const hi = p >>> this.order;
        const e = Math.min(end, (hi + 1) << this.order);
        const before = bitCount(this.priv, p, e);
        this.privCount[hi]! += (priv ? e - p : 0) - before;
        p = e;
      }
    }
    const changed = bitRangeSet(this.priv, off, end, priv);
    this.bump(GmemWord.kPrivatePages, priv ? changed : -changed);
    const edges = (off > 0 && this.isPrivate(off - 1) !== priv ? 1 : 0) + (end < this.npages && this.isPrivate(end) !== priv ? 1 : 0);
    return inner + edges + 1;
  }

  /** The first page of [off, off + n) with a host mapping or a pin, or -1. */
  firstReferenced(off: number, n: number): number {
    if (this.counter(GmemWord.kHostMapped) === 0 && this.counter(GmemWord.kPinned) === 0) return -1;
    for (let p = off; p < off + n; p++) if (this.hostMapped[p] !== 0 || this.pins[p] !== 0) return p;
    return -1;
  }

  /**
   * The host touches page `off` through its mmap of the file (kvm_gmem_fault_user_mapping()):
   * a page past the end of the file or a private page raises SIGBUS (counted; nothing is read), a shared one is allocated if need
   * be and mapped. Returns the pfn, or -1 for SIGBUS, -2 for ENOMEM.
   */
  hostFault(t: HostThread, off: number): number {
    this.lock();
    try {
      if (off >= this.npages || this.isPrivate(off)) {
        this.bump(GmemWord.kSigbus, 1);
        return -1;
      }
      const pfn = this.allocateLocked(t, off);
      if (pfn < 0) return -2;
      if (this.hostMapped[off] === 0) {
        Atomics.store(this.hostMapped, off, 1);
        this.bump(GmemWord.kHostMapped, 1);
      }
      return pfn;
    } finally {
      this.unlock();
    }
  }

  /** munmap / MADV_DONTNEED of the host's mapping over [off, off + n): pages stay in the file. */
  hostUnmap(off: number, n: number): number {
    this.lock();
    try {
      return this.hostUnmapLocked(off, n);
    } finally {
      this.unlock();
    }
  }

  /**
   * hostUnmap() with the file's lock held: also unmap_mapping_pages() of the file's own
   * conversion to private, which tears the host's mappings down before checking refcounts.
   */
  hostUnmapLocked(off: number, n: number): number {
    if (this.counter(GmemWord.kHostMapped) === 0) return 0;
    let dropped = 0;
    for (let p = off; p < off + n; p++) {
      if (this.hostMapped[p] === 0) continue;
      if (this.pins[p] !== 0) continue; // a pinned page stays mapped for its pinner
      Atomics.store(this.hostMapped, p, 0);
      dropped++;
    }
    this.bump(GmemWord.kHostMapped, -dropped);
    return dropped;
  }

  /** pin_user_pages(FOLL_LONGTERM) / unpin of a host-mapped shared page (a vfio or io_uring pin). */
  pin(off: number, delta: 1 | -1): void {
    this.lock();
    try {
      const v = this.pins[off]! + delta;
      if (delta > 0 && this.hostMapped[off] === 0) fail('EFAULT', `guest_memfd ${this.ino}: page ${off} is not mapped by the host, nothing to pin`);
      if (v < 0 || v > 255) fail('EINVAL', `guest_memfd ${this.ino}: page ${off} pin count would be ${v}`);
      Atomics.store(this.pins, off, v);
      this.bump(GmemWord.kPinned, delta);
    } finally {
      this.unlock();
    }
  }

  /** The file's last reference went: every folio is freed, stranded pages too. */
  truncateAll(t: HostThread): void {
    this.lock();
    try {
      for (let p = 0; p < this.npages; p++) {
        if (this.hostMapped[p] !== 0) Atomics.store(this.hostMapped, p, 0);
        if (this.pins[p] !== 0) Atomics.store(this.pins, p, 0);
      }
      Atomics.store(this.w, GmemWord.kHostMapped, 0);
      Atomics.store(this.w, GmemWord.kPinned, 0);
      this.punchHoleLocked(t, 0, this.npages);
    } finally {
      this.unlock();
      t.drain();
    }
  }

  /** Pages of host memory the file holds: in the file, plus stranded pieces. */
  ownedPages(): number {
    return this.counter(GmemWord.kAllocated) + this.counter(GmemWord.kStranded);
  }

  bytes(): number {
    return this.map.byteLength + this.priv.byteLength + this.hostMapped.byteLength + this.pins.byteLength
      + (this.orderHuge?.byteLength ?? 0) + (this.orderMid?.byteLength ?? 0) + (this.privCount?.byteLength ?? 0) + (this.hugeHead?.byteLength ?? 0) * 2;
  }
}
