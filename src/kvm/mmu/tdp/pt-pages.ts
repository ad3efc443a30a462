/**
 * The VM's pool of page-table pages (kvm_mmu_page for the TDP MMU): 512 SPTEs x 2 Int32 words
 * per page in one SAB, plus per-page info (level, base gfn) for the audit.
 *
 * Allocation: a free stack behind the pool lock; vCPUs top up a small per-vCPU cache before
 * taking mmu_lock (mmu_topup_memory_caches) so the fault path allocates without the pool lock.
 * Removal: a page unlinked under mmu_lock held for read may still be walked by other threads,
 * so it is retired with the current epoch (the RCU stand-in) and zeroed + freed once every
 * participant has moved on; pages removed under the write lock after a completed remote TLB
 * flush take the same path (cheap, and one rule is easier to audit than two).
 */
import { allocGrowableSab, growSab, populateSab } from '../../../shm/arena.js';
import { spinLock, spinUnlock } from '../../../shm/spinlock.js';
import type { EpochDomain } from '../../../shm/epoch.js';
import { PtLayout } from '../spte.js';
import { VmLayout } from '../../vm-layout.js';

export const enum PtInfo {
  kPtInfoLevel = 0,
  kPtInfoGfn = 1,
  /** While retired: the epoch it was retired in, and the next retired page (0: none). */
  kPtInfoRetireEpoch = 2,
  kPtInfoRetireNext = 3,
  kPtInfoWords = 4,
}

/**
 * Address space reserved per pool: growable SABs of at most 4 GiB (V8's limit for a growable
 * SAB's maxByteLength in Node 20), i.e. 1M - 1 page-table pages, enough for 2 TiB of guest memory
 * mapped at 4K. Only what the pool grew to is committed, and only what it touched is resident.
 */
export const kPtPoolMaxPages = 2 ** 20 - 1;

export interface PtPoolHandle {
  /** Growable SABs (maxByteLength for kPtPoolMaxPages); their length is the capacity. */
  readonly pt: SharedArrayBuffer;
  readonly info: SharedArrayBuffer;
  readonly freeStack: SharedArrayBuffer;
}

/**
 * Growth never copies and never moves a page (KVM never moves page tables either): the SABs are
 * reserved at their maximum and grown in place. Views stay fixed-length over them — a
 * length-tracking Int32Array is ~4x slower per element in Node 20's V8 (measured: 1.2 s against
 * 0.3 s for 3e7 dependent loads from a 256 KiB array), which the walker cannot afford — so each
 * thread re-creates its views when the pool grew (refresh()). The growth protocol (Vm's
 * ensurePoolCapacity) makes that safe: grow, announce the capacity (kVmPtCapacity), wait for SRCU
 * (every vCPU in KVM_RUN re-enters the guest and refreshes its views there, Vcpu.enterGuest),
 * and only then put the new pages on the free stack, so no thread ever reaches a page its views
 * do not cover.
 */
export class PtPool {
  capacity = 0;
  pt!: Int32Array;
  info!: Int32Array;
  freeStack!: Int32Array;

  constructor(readonly handle: PtPoolHandle, readonly vmw: Int32Array, readonly epoch: EpochDomain) {
    this.refresh();
  }

  /** Re-create this thread's views at the SABs' current length (after a growth). */
  refresh(): void {
    const h = this.handle;
    // The free stack is grown last (and rounded up to 8 bytes): the page table decides.
    this.capacity = Math.min(h.pt.byteLength / (PtLayout.kPtPageWords * 4), Math.floor(h.freeStack.byteLength / 4));
    this.pt = new Int32Array(h.pt, 0, this.capacity * PtLayout.kPtPageWords);
    this.info = new Int32Array(h.info, 0, this.capacity * PtInfo.kPtInfoWords);
    this.freeStack = new Int32Array(h.freeStack, 0, this.capacity);
  }

  /** Whether another thread grew the pool past this thread's views (kVmPtCapacity announces it). */
  stale(): boolean {
    return Atomics.load(this.vmw, VmLayout.kVmPtCapacity) > this.capacity;
  }

  /** A pool of `capacity` pages; page 0 is never handed out (0 means "no page"). */
  static createHandle(capacity: number): PtPoolHandle {
    const max = kPtPoolMaxPages;
    return {
      pt: allocGrowableSab(capacity * PtLayout.kPtPageWords * 4, max * PtLayout.kPtPageWords * 4),
      info: allocGrowableSab(capacity * PtInfo.kPtInfoWords * 4, max * PtInfo.kPtInfoWords * 4),
      freeStack: allocGrowableSab(capacity * 4, max * 4),
    };
  }

  /** Fill the free stack of a fresh pool (main thread, before anyone attaches). */
  initFree(): void {
    const w = this.vmw;
    let top = 0;
    for (let p = this.capacity - 1; p >= 1; p--) this.freeStack[top++] = p;
    w[VmLayout.kVmPtFreeTop] = top;
    w[VmLayout.kVmPtInUse] = 0;
    Atomics.store(w, VmLayout.kVmPtCapacity, this.capacity);
  }

  /**
   * First half of a growth (VMM thread): grow the SABs in place to `capacity` pages, refresh this
   * thread's views and announce the capacity. The new pages are not allocatable yet: pushFree()
   * after the SRCU wait. The pair: this seq-cst store of kVmPtCapacity / stale()'s load.
   */
  grow(capacity: number, populate: number): void {
    const h = this.handle;
    const from = this.capacity;
    growSab(h.pt, capacity * PtLayout.kPtPageWords * 4);
    growSab(h.info, capacity * PtInfo.kPtInfoWords * 4);
    // The first `populate` new pages are backed now, on the VMM thread: page-table pages come
    // from memory the kernel already has, and a vCPU's topup should not take a host page fault
    // per new page, as a first SAB touch would. pushFree() puts the new pages on top of the free
    // stack lowest first, so these are the ones handed out next. Plain stores: no other thread
    // reaches these pages before its views cover them, after the kVmPtCapacity store below.
    const to = Math.min(capacity, from + Math.max(0, populate));
    populateSab(h.pt, from * PtLayout.kPtPageWords * 4, to * PtLayout.kPtPageWords * 4);
    populateSab(h.info, from * PtInfo.kPtInfoWords * 4, to * PtInfo.kPtInfoWords * 4);
    growSab(h.freeStack, capacity * 4);
    this.refresh();
    Atomics.store(this.vmw, VmLayout.kVmPtCapacity, capacity);
  }

  /** Second half: pages [from, to) join the free stack (every running thread sees them now). */
  pushFree(from: number, to: number): void {
    const w = this.vmw;
    spinLock(w, VmLayout.kVmPtLock);
    let top = w[VmLayout.kVmPtFreeTop]!;
    for (let p = to - 1; p >= from; p--) this.freeStack[top++] = p;
    w[VmLayout.kVmPtFreeTop] = top;
    spinUnlock(w, VmLayout.kVmPtLock);
  }

  /** Take up to n pages into `out` starting at `at`; returns how many were taken. */
  allocBatch(out: Int32Array, at: number, n: number): number {
    const w = this.vmw;
    spinLock(w, VmLayout.kVmPtLock);
    let top = w[VmLayout.kVmPtFreeTop]!;
    if (top < n) {
      spinUnlock(w, VmLayout.kVmPtLock);
      this.reclaim();
      spinLock(w, VmLayout.kVmPtLock);
      top = w[VmLayout.kVmPtFreeTop]!;
    }
    const k = Math.min(n, top);
    for (let i = 0; i < k; i++) out[at + i] = this.freeStack[--top]!;
    w[VmLayout.kVmPtFreeTop] = top;
    w[VmLayout.kVmPtInUse] = w[VmLayout.kVmPtInUse]! + k;
    spinUnlock(w, VmLayout.kVmPtLock);
    return k;
  }

  /** Return never-linked pages (still zero) straight to the free stack. */
  freeUnused(pages: Int32Array, at: number, n: number): void {
    const w = this.vmw;
    spinLock(w, VmLayout.kVmPtLock);
    let top = w[VmLayout.kVmPtFreeTop]!;
    for (let i = 0; i < n; i++) this.freeStack[top++] = pages[at + i]!;
    w[VmLayout.kVmPtFreeTop] = top;
    w[VmLayout.kVmPtInUse] = w[VmLayout.kVmPtInUse]! - n;
    spinUnlock(w, VmLayout.kVmPtLock);
  }

  /**
   * Retire an unlinked page: freed once no participant can still be walking it. The retired
   * pages form a FIFO list through their info words (epoch, next), so it needs no ring sized by
   * the capacity and grows with the pool.
   */
  retire(page: number): void {
    const w = this.vmw;
    const e = this.epoch.advance();
    spinLock(w, VmLayout.kVmPtLock);
    const info = this.info;
    info[page * PtInfo.kPtInfoWords + PtInfo.kPtInfoRetireEpoch] = e;
    info[page * PtInfo.kPtInfoWords + PtInfo.kPtInfoRetireNext] = 0;
    const last = w[VmLayout.kVmPtRetireLast]!;
    if (last === 0) w[VmLayout.kVmPtRetireFirst] = page;
    else info[last * PtInfo.kPtInfoWords + PtInfo.kPtInfoRetireNext] = page;
    w[VmLayout.kVmPtRetireLast] = page;
    // Publish (pairs with the tail load at the top of reclaim()): a reclaim that sees this entry
    // also sees the epoch advance above, so its participant scan comes after it.
    Atomics.store(w, VmLayout.kVmPtRetireTail, w[VmLayout.kVmPtRetireTail]! + 1);
    spinUnlock(w, VmLayout.kVmPtLock);
  }

  retiredCount(): number {
    return Atomics.load(this.vmw, VmLayout.kVmPtRetireTail) - Atomics.load(this.vmw, VmLayout.kVmPtRetireHead);
  }

  /**
   * Test hook: called by reclaim() between its read of the retire tail and its scan of the
   * participants' epochs, so a test can retire a page and enter a walker in that window.
   */
  reclaimHook: (() => void) | null = null;

  /**
   * Free every retired page whose epoch no participant can still be in. Returns pages freed.
   *
   * Order matters (the RCU grace-period rule: a grace period vouches only for removals that
   * happened before it started). The tail is read first, then the participants: every entry
   * below that tail was retired — its epoch e taken by advance() — before the scan, so a
   * walker that could still reach the page is in the scan with an epoch <= e, and one that
   * enters later reads a global epoch > e and cannot reach the unlinked page. An entry retired
   * after the tail was read may have a walker that entered after the scan; it waits for the next
   * reclaim. (Scanning first and reading the tail after let such an entry be freed under a walker.)
   */
  reclaim(): number {
    const w = this.vmw;
    // Observe (pairs with the tail publish in retire()).
    const tail = Atomics.load(w, VmLayout.kVmPtRetireTail);
    if (this.reclaimHook !== null) this.reclaimHook();
    const oldest = this.epoch.oldestActive();
    spinLock(w, VmLayout.kVmPtLock);
    let head = w[VmLayout.kVmPtRetireHead]!;
    let top = w[VmLayout.kVmPtFreeTop]!;
    let freed = 0;
    let page = w[VmLayout.kVmPtRetireFirst]!;
    const info = this.info;
    // head may have passed the snapshot (a concurrent reclaim): then there is nothing to do.
    while (head < tail) {
      // Retired in epoch e: reachable while a participant is still in e (or earlier).
      if (info[page * PtInfo.kPtInfoWords + PtInfo.kPtInfoRetireEpoch]! >= oldest) break;
      const next = info[page * PtInfo.kPtInfoWords + PtInfo.kPtInfoRetireNext]!;
      this.pt.fill(0, page * PtLayout.kPtPageWords, (page + 1) * PtLayout.kPtPageWords);
      info[page * PtInfo.kPtInfoWords + PtInfo.kPtInfoLevel] = 0;
      this.freeStack[top++] = page;
      page = next;
      head++;
      freed++;
    }
    w[VmLayout.kVmPtRetireFirst] = page;
    if (page === 0) w[VmLayout.kVmPtRetireLast] = 0;
    w[VmLayout.kVmPtRetireHead] = head;
    w[VmLayout.kVmPtFreeTop] = top;
    w[VmLayout.kVmPtInUse] = w[VmLayout.kVmPtInUse]! - freed;
    spinUnlock(w, VmLayout.kVmPtLock);
    return freed;
  }

  setInfo(page: number, level: number, gfn: number): void {
    this.info[page * PtInfo.kPtInfoWords + PtInfo.kPtInfoLevel] = level;
    this.info[page * PtInfo.kPtInfoWords + PtInfo.kPtInfoGfn] = gfn;
  }
  level(page: number): number {
    return this.info[page * PtInfo.kPtInfoWords + PtInfo.kPtInfoLevel]!;
  }
  gfn(page: number): number {
    return this.info[page * PtInfo.kPtInfoWords + PtInfo.kPtInfoGfn]!;
  }
  inUse(): number {
    return Atomics.load(this.vmw, VmLayout.kVmPtInUse);
  }
  freeCount(): number {
    return Atomics.load(this.vmw, VmLayout.kVmPtFreeTop);
  }
  bytes(): number {
    return this.pt.byteLength + this.info.byteLength + this.freeStack.byteLength;
  }
}
