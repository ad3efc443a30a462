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
import { allocSab } from '../../../shm/arena.js';
import { spinLock, spinUnlock } from '../../../shm/spinlock.js';
import type { EpochDomain } from '../../../shm/epoch.js';
import { PtLayout } from '../spte.js';
import { VmLayout } from '../../vm-layout.js';

export const enum PtInfo {
  kPtInfoLevel = 0,
  kPtInfoGfn = 1,
  kPtInfoWords = 2,
}

export interface PtPoolHandle {
  readonly capacity: number;
  readonly pt: SharedArrayBuffer;
  readonly info: SharedArrayBuffer;
  readonly freeStack: SharedArrayBuffer;
  /** Ring of (page, epoch) pairs. */
  readonly retire: SharedArrayBuffer;
}

export class PtPool {
  readonly capacity: number;
  readonly pt: Int32Array;
  readonly info: Int32Array;
  readonly freeStack: Int32Array;
  readonly retireRing: Int32Array;

  constructor(readonly handle: PtPoolHandle, readonly vmw: Int32Array, readonly epoch: EpochDomain) {
    this.capacity = handle.capacity;
    this.pt = new Int32Array(handle.pt);
    this.info = new Int32Array(handle.info);
    this.freeStack = new Int32Array(handle.freeStack);
    this.retireRing = new Int32Array(handle.retire);
  }

  /** A pool of `capacity` pages; page 0 is never handed out (0 means "no page"). */
  static createHandle(capacity: number): PtPoolHandle {
    return {
      capacity,
      pt: allocSab(capacity * PtLayout.kPtPageWords * 4),
      info: allocSab(capacity * PtInfo.kPtInfoWords * 4),
      freeStack: allocSab(capacity * 4),
      retire: allocSab(capacity * 2 * 4),
    };
  }

  /** Fill the free stack of a fresh pool (main thread, before anyone attaches). */
  initFree(): void {
    const w = this.vmw;
    let top = 0;
    for (let p = this.capacity - 1; p >= 1; p--) this.freeStack[top++] = p;
    w[VmLayout.kVmPtFreeTop] = top;
    w[VmLayout.kVmPtInUse] = 0;
    w[VmLayout.kVmPtCapacity] = this.capacity;
  }

  /** Copy another pool's pages into this larger one (memslot growth, no vCPU running). */
  static grow(old: PtPool, capacity: number): PtPoolHandle {
    const h = PtPool.createHandle(capacity);
    new Int32Array(h.pt).set(old.pt);
    new Int32Array(h.info).set(old.info);
    const fs = new Int32Array(h.freeStack);
    const w = old.vmw;
    let top = w[VmLayout.kVmPtFreeTop]!;
    fs.set(old.freeStack.subarray(0, top));
    for (let p = capacity - 1; p >= old.capacity; p--) fs[top++] = p;
    w[VmLayout.kVmPtFreeTop] = top;
    w[VmLayout.kVmPtCapacity] = capacity;
    // Retired pages keep their slots; the ring moves with them.
    new Int32Array(h.retire).set(old.retireRing.subarray(0, Math.min(old.retireRing.length, capacity * 2)));
    return h;
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

  /** Retire an unlinked page: freed once no participant can still be walking it. */
  retire(page: number): void {
    const w = this.vmw;
    const e = this.epoch.advance();
    spinLock(w, VmLayout.kVmPtLock);
    const tail = w[VmLayout.kVmPtRetireTail]!;
    const slot = (tail % this.capacity) * 2;
    this.retireRing[slot] = page;
    this.retireRing[slot + 1] = e;
    // Publish (pairs with the tail load at the top of reclaim()): a reclaim that sees this entry
    // also sees the epoch advance above, so its participant scan comes after it.
    Atomics.store(w, VmLayout.kVmPtRetireTail, tail + 1);
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
    // head may have passed the snapshot (a concurrent reclaim): then there is nothing to do.
    while (head < tail) {
      const slot = (head % this.capacity) * 2;
      // Retired in epoch e: reachable while a participant is still in e (or earlier).
      if (this.retireRing[slot + 1]! >= oldest) break;
      const page = this.retireRing[slot]!;
      this.pt.fill(0, page * PtLayout.kPtPageWords, (page + 1) * PtLayout.kPtPageWords);
      this.info[page * PtInfo.kPtInfoWords + PtInfo.kPtInfoLevel] = 0;
      this.freeStack[top++] = page;
      head++;
      freed++;
    }
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
    return this.pt.byteLength + this.info.byteLength + this.freeStack.byteLength + this.retireRing.byteLength;
  }
}
