/**
 * userfaultfd(2), the kernel side of fs/userfaultfd.c, in shared memory: a context with the two
 * wait queues of struct userfaultfd_ctx, one wait-queue entry (struct userfaultfd_wait_queue)
 * per thread that can fault, handle_userfault() for the faulting thread, read(2) for the VMM's
 * reader threads and wake_userfault() for the ioctls that resolve a range (mfill.ts). Ranges of
 * a VMA are registered with uffdioRegister() (UFFDIO_REGISTER, MISSING or MINOR).
 *
 * Semantics kept from Linux:
 *  - Every faulting thread queues its own message, as each task queues its own uwq: two vCPUs
 *    that fault on one page while it is missing queue two messages, the reader that handles the
 *    second one finds the page mapped (-EEXIST, which demand_paging_test tolerates).
 *  - read() takes the oldest pending message (find_userfault(): the last entry of
 *    fault_pending_wqh) and moves it to fault_wqh; wake_userfault() wakes every entry of both
 *    queues whose address lies in the range, and the woken entry leaves its queue
 *    (userfaultfd_wake_function()), so a message woken before it was read is never read.
 *  - userfaultfd_must_wait(): after queueing, the faulting thread re-reads the host page table
 *    and does not sleep if the range got mapped meanwhile (mm.ts). With the queue lock between
 *    the resolver's map and its wake, that closes the lost-wakeup window.
 *  - The faulting thread sleeps inside GUP: no KVM exit. Here the vCPU's fault is suspended and
 *    its worker runs other vCPUs (a host CPU scheduling another vCPU thread); the wake rings the
 *    worker's wake-board line.
 *
 * Context layout (Int32 words):
 *   line 0: kUffdLock            ctx->fault_pending_wqh.lock, guards both queues and every entry's
 *                                state and links
 *           kUffdPendingHead/Tail fault_pending_wqh, oldest first
 *           kUffdReadHead         fault_wqh (read, not yet woken)
 *           kUffdPending          messages not yet read
 *           kUffdReaderMask       reader threads (bits of the reader board) that poll this uffd
 *   line 1: kUffdPark             test hook: read() returns EAGAIN while non-zero
 * Entries (kWaiterWords Int32 each, 64 bytes, one per faulting thread = the VM's vCPU index):
 *   state, prev, next, vma id, page index in the VMA, UFFD_PAGEFAULT_FLAG_*, wake-board slot,
 *   then two Float64: when it was queued (wall ms, performance.timeOrigin-based, comparable
 *   across threads) and the modeled ns of the resolution that woke it.
 */
import { allocSab, Arena } from '../shm/arena.js';
import { spinLock, spinUnlock } from '../shm/spinlock.js';
import { fail } from './errno.js';
import type { Vma } from './mm.js';

/** UFFDIO_REGISTER_MODE_* (include/uapi/linux/userfaultfd.h). */
export const enum UffdMode {
  MISSING = 1,
  MINOR = 4,
}

/** uffd_msg.arg.pagefault.flags */
export const enum UffdFlag {
  UFFD_PAGEFAULT_FLAG_WRITE = 1,
  UFFD_PAGEFAULT_FLAG_MINOR = 4,
}

export const enum UffdLayout {
  kUffdLock = 0,
  kUffdPendingHead = 1,
  kUffdPendingTail = 2,
  kUffdReadHead = 3,
  kUffdPending = 4,
  kUffdReaderMask = 5,
  kUffdPark = Arena.kPadWords,
  kUffdWords = 2 * Arena.kPadWords,
}

export const enum WaiterState {
  kIdle = 0,
  /** On fault_pending_wqh: queued, not read yet. */
  kPending = 1,
  /** On fault_wqh: a reader has the message. */
  kRead = 2,
  /** Woken by wake_userfault(): the faulting thread may go on. */
  kWoken = 3,
}

export const enum WaiterLayout {
  kState = 0,
  kPrev = 1,
  kNext = 2,
  kVma = 3,
  kIdx = 4,
  kFlags = 5,
  kCpu = 6,
  /** Float64 index = (entry base + this) / 2 */
  kQueuedAt = 8,
  kResolveNs = 10,
  kWaiterWords = 16,
}

/**
 * A wake board: one padded line per sleeper (a vCPU worker, or a reader thread) with a sequence
 * word the wakers bump and a flag the sleeper raises before it sleeps. Line 0 word 0 is the
 * reader board's stop flag (uffd_stop_demand_paging()'s pipe write).
 */
export const enum BoardLayout {
  kStop = 0,
  /** vCPU workers still running vCPUs (a worker hosting readers serves until it is 0). */
  kLiveWorkers = 1,
  kSeq = 0,
  kSleeping = 1,
}

export function createWakeBoard(slots: number): SharedArrayBuffer {
  return allocSab((1 + slots) * Arena.kPadWords * 4);
}

function boardLine(slot: number): number {
  return (1 + slot) * Arena.kPadWords;
}

/**
 * Wake the sleeper of `slot`. The pair with boardSleep(): the waker's seq-cst store of what the
 * sleeper waits for comes before this add and the load of kSleeping; the sleeper stores
 * kSleeping, then loads the seq and re-checks. In the seq-cst total order either the waker sees
 * the flag (and notifies) or the sleeper's re-check sees the store, and Atomics.wait on the seq
 * value read before the re-check returns at once if the add came in between.
 */
export function boardRing(board: Int32Array, slot: number): void {
  const l = boardLine(slot);
  Atomics.add(board, l + BoardLayout.kSeq, 1);
  if (Atomics.load(board, l + BoardLayout.kSleeping) !== 0) Atomics.notify(board, l + BoardLayout.kSeq);
}

/** Raise the sleeping flag; returns the seq to pass to boardSleep() after the re-check. */
export function boardPrepareSleep(board: Int32Array, slot: number): number {
  const l = boardLine(slot);
  Atomics.store(board, l + BoardLayout.kSleeping, 1);
  return Atomics.load(board, l + BoardLayout.kSeq);
}

/** Sleep until rung (or `timeoutMs`), then lower the flag. Call boardCancelSleep() instead if the re-check found work. */
export function boardSleep(board: Int32Array, slot: number, seq: number, timeoutMs: number): void {
  const l = boardLine(slot);
  Atomics.wait(board, l + BoardLayout.kSeq, seq, timeoutMs);
  Atomics.store(board, l + BoardLayout.kSleeping, 0);
}

export function boardCancelSleep(board: Int32Array, slot: number): void {
  Atomics.store(board, boardLine(slot) + BoardLayout.kSleeping, 0);
}

export interface UserfaultfdHandle {
  readonly id: number;
  readonly ctx: SharedArrayBuffer;
  readonly waiters: SharedArrayBuffer;
  readonly nwaiters: number;
  /** The faulting threads' wake board (one line per vCPU worker). */
  readonly board: SharedArrayBuffer;
  /** The reader threads' board (doorbells and the stop flag). */
  readonly readerBoard: SharedArrayBuffer;
}

export class Userfaultfd {
  readonly id: number;
  readonly w: Int32Array;
  readonly ww: Int32Array;
  readonly wf: Float64Array;
  readonly board: Int32Array;
  readonly readerBoard: Int32Array;
  readonly nwaiters: number;

  constructor(readonly handle: UserfaultfdHandle) {
    this.id = handle.id;
    this.w = new Int32Array(handle.ctx);
    this.ww = new Int32Array(handle.waiters);
    this.wf = new Float64Array(handle.waiters);
    this.board = new Int32Array(handle.board);
    this.readerBoard = new Int32Array(handle.readerBoard);
    this.nwaiters = handle.nwaiters;
  }

  /**
   * userfaultfd(2) + UFFDIO_API: a context for `nwaiters` faulting threads (a VM's vCPUs), whose
   * wakes ring `board` and whose messages ring the reader threads on `readerBoard`.
   */
  static create(id: number, nwaiters: number, board: SharedArrayBuffer, readerBoard: SharedArrayBuffer): Userfaultfd {
    if (!Number.isInteger(nwaiters) || nwaiters < 1) fail('EINVAL', `userfaultfd needs at least one faulting thread, got ${nwaiters}`);
    const u = new Userfaultfd({
      id, ctx: allocSab(UffdLayout.kUffdWords * 4), waiters: allocSab(nwaiters * WaiterLayout.kWaiterWords * 4), nwaiters, board, readerBoard,
    });
    u.w[UffdLayout.kUffdPendingHead] = -1;
    u.w[UffdLayout.kUffdPendingTail] = -1;
    u.w[UffdLayout.kUffdReadHead] = -1;
    for (let i = 0; i < nwaiters; i++) {
      u.ww[i * WaiterLayout.kWaiterWords + WaiterLayout.kPrev] = -1;
      u.ww[i * WaiterLayout.kWaiterWords + WaiterLayout.kNext] = -1;
    }
    return u;
  }

  /** Reader threads (bits of the reader board) that poll this uffd. */
  setReaders(mask: number): void {
    Atomics.store(this.w, UffdLayout.kUffdReaderMask, mask);
  }

  /** Test hook: while parked, read() finds nothing (the readers are "descheduled"). */
  setPark(on: boolean): void {
    Atomics.store(this.w, UffdLayout.kUffdPark, on ? 1 : 0);
    if (!on) this.ringReaders(true);
  }

  pending(): number {
    return Atomics.load(this.w, UffdLayout.kUffdPending);
  }

  /** EPOLLIN: a read() now would find a message (and the test hook does not hold the readers). */
  readable(): boolean {
    return Atomics.load(this.w, UffdLayout.kUffdPending) > 0 && Atomics.load(this.w, UffdLayout.kUffdPark) === 0;
  }

  /** Entries on either queue (pending or read, not yet woken). */
  queued(): number {
    let n = 0;
    for (let i = 0; i < this.nwaiters; i++) {
      const s = Atomics.load(this.ww, i * WaiterLayout.kWaiterWords + WaiterLayout.kState);
      if (s === WaiterState.kPending || s === WaiterState.kRead) n++;
    }
    return n;
  }

  waiterState(waiter: number): number {
    return Atomics.load(this.ww, waiter * WaiterLayout.kWaiterWords + WaiterLayout.kState);
  }

  waiterVma(waiter: number): number {
    return this.ww[waiter * WaiterLayout.kWaiterWords + WaiterLayout.kVma]!;
  }
  waiterIdx(waiter: number): number {
    return this.ww[waiter * WaiterLayout.kWaiterWords + WaiterLayout.kIdx]!;
  }
  waiterFlags(waiter: number): number {
    return this.ww[waiter * WaiterLayout.kWaiterWords + WaiterLayout.kFlags]!;
  }
  /** When the message was queued: wall ms on the performance.timeOrigin scale (0: not sampled). */
  waiterQueuedAt(waiter: number): number {
    return this.wf[(waiter * WaiterLayout.kWaiterWords + WaiterLayout.kQueuedAt) >> 1]!;
  }

  /**
   * EPOLLIN on the uffd: the readers poll with EPOLLEXCLUSIVE, so one sleeping reader is woken
   * per message; every reader's seq still moves, so one about to sleep re-checks (boardRing's pair).
   */
  private ringReaders(all: boolean): void {
    let mask = Atomics.load(this.w, UffdLayout.kUffdReaderMask);
    const rb = this.readerBoard;
    while (mask !== 0) {
      const slot = 31 - Math.clz32(mask);
      mask &= ~(1 << slot);
      const l = boardLine(slot);
      Atomics.add(rb, l + BoardLayout.kSeq, 1);
      if (Atomics.load(rb, l + BoardLayout.kSleeping) !== 0) {
        Atomics.notify(rb, l + BoardLayout.kSeq);
        if (!all) return;
      }
    }
  }

  private unlink(base: number, headWord: number, tailWord: number): void {
    const ww = this.ww;
    const prev = ww[base + WaiterLayout.kPrev]!;
    const next = ww[base + WaiterLayout.kNext]!;
    if (prev >= 0) ww[prev * WaiterLayout.kWaiterWords + WaiterLayout.kNext] = next;
    else this.w[headWord] = next;
    if (next >= 0) ww[next * WaiterLayout.kWaiterWords + WaiterLayout.kPrev] = prev;
    else if (tailWord >= 0) this.w[tailWord] = prev;
    ww[base + WaiterLayout.kPrev] = -1;
    ww[base + WaiterLayout.kNext] = -1;
  }

  /** Remove an entry from whichever queue holds it (the lock is held). */
  private dequeue(base: number): void {
    const s = this.ww[base + WaiterLayout.kState]!;
    if (s === WaiterState.kPending) {
      this.unlink(base, UffdLayout.kUffdPendingHead, UffdLayout.kUffdPendingTail);
      Atomics.sub(this.w, UffdLayout.kUffdPending, 1);
    } else if (s === WaiterState.kRead) {
      this.unlink(base, UffdLayout.kUffdReadHead, -1);
    }
  }

  /**
   * handle_userfault(), up to the point where the thread would schedule(): queue this thread's
   * message on fault_pending_wqh and wake a reader. The caller then re-checks the page table
   * (userfaultfd_must_wait()) and either sleeps or cancels.
   */
  queueFault(waiter: number, cpu: number, vma: number, idx: number, flags: number, stamp: boolean): void {
    const ww = this.ww;
    const base = waiter * WaiterLayout.kWaiterWords;
    spinLock(this.w, UffdLayout.kUffdLock);
    if (ww[base + WaiterLayout.kState] !== WaiterState.kIdle) {
      spinUnlock(this.w, UffdLayout.kUffdLock);
      throw new Error(`BUG: faulting thread ${waiter} queued a second userfault while one is pending`);
    }
    ww[base + WaiterLayout.kVma] = vma;
    ww[base + WaiterLayout.kIdx] = idx;
    ww[base + WaiterLayout.kFlags] = flags;
    ww[base + WaiterLayout.kCpu] = cpu;
    // Wall-clock stamps only for the faults the wall histograms sample (a clock read costs).
    this.wf[(base + WaiterLayout.kQueuedAt) >> 1] = stamp ? performance.timeOrigin + performance.now() : 0;
    const tail = this.w[UffdLayout.kUffdPendingTail]!;
    ww[base + WaiterLayout.kPrev] = tail;
    ww[base + WaiterLayout.kNext] = -1;
    if (tail >= 0) ww[tail * WaiterLayout.kWaiterWords + WaiterLayout.kNext] = waiter;
    else this.w[UffdLayout.kUffdPendingHead] = waiter;
    this.w[UffdLayout.kUffdPendingTail] = waiter;
    // The count is read without the lock (readable(), read()'s early out): Atomics on both sides.
    Atomics.add(this.w, UffdLayout.kUffdPending, 1);
    Atomics.store(ww, base + WaiterLayout.kState, WaiterState.kPending);
    spinUnlock(this.w, UffdLayout.kUffdLock);
    this.ringReaders(false);
  }

  /**
   * The faulting thread does not sleep after all (userfaultfd_must_wait() found the range
   * mapped): its entry leaves the queue, woken or not. Returns the modeled ns of the resolution
   * when a reader had its message (the reader records it before it maps the range, so the mapping
   * the caller saw orders it), else 0: the range was resolved through another thread's message.
   */
  cancelFault(waiter: number): number {
    const base = waiter * WaiterLayout.kWaiterWords;
    spinLock(this.w, UffdLayout.kUffdLock);
    const s = this.ww[base + WaiterLayout.kState]!;
    this.dequeue(base);
    Atomics.store(this.ww, base + WaiterLayout.kState, WaiterState.kIdle);
    spinUnlock(this.w, UffdLayout.kUffdLock);
    return s === WaiterState.kPending ? 0 : this.wf[(base + WaiterLayout.kResolveNs) >> 1]!;
  }

  /**
   * A reader that read `waiter`'s message records what resolving it will cost (modeled ns)
   * before the ioctl maps the range, so a faulting thread that sees the mapping in its
   * userfaultfd_must_wait() re-check (and so does not sleep) is charged the same as one that
   * slept until the wake: modeled time does not depend on that race.
   */
  setResolveNs(waiter: number, ns: number): void {
    this.wf[(waiter * WaiterLayout.kWaiterWords + WaiterLayout.kResolveNs) >> 1] = ns;
  }

  /**
   * The woken thread goes on: its entry is idle again. Returns the modeled ns of the resolution
   * that woke it (the time it slept, in modeled time). Only the owner calls this, after it saw
   * kWoken (the Atomics.load that pairs with wake()'s store, which follows the resolveNs write).
   */
  finishWait(waiter: number): number {
    const base = waiter * WaiterLayout.kWaiterWords;
    const ns = this.wf[(base + WaiterLayout.kResolveNs) >> 1]!;
    Atomics.store(this.ww, base + WaiterLayout.kState, WaiterState.kIdle);
    return ns;
  }

  /**
   * read(2) of one uffd_msg: the oldest pending entry moves to fault_wqh; returns its waiter
   * index, or -1 (EAGAIN: nothing pending, or another reader took it first).
   */
  read(): number {
    if (Atomics.load(this.w, UffdLayout.kUffdPending) === 0 || Atomics.load(this.w, UffdLayout.kUffdPark) !== 0) return -1;
    const ww = this.ww;
    spinLock(this.w, UffdLayout.kUffdLock);
    const head = this.w[UffdLayout.kUffdPendingHead]!;
    if (head < 0) {
      spinUnlock(this.w, UffdLayout.kUffdLock);
      return -1;
    }
    const base = head * WaiterLayout.kWaiterWords;
    this.unlink(base, UffdLayout.kUffdPendingHead, UffdLayout.kUffdPendingTail);
    Atomics.sub(this.w, UffdLayout.kUffdPending, 1);
    const rh = this.w[UffdLayout.kUffdReadHead]!;
    ww[base + WaiterLayout.kNext] = rh;
    if (rh >= 0) ww[rh * WaiterLayout.kWaiterWords + WaiterLayout.kPrev] = head;
    this.w[UffdLayout.kUffdReadHead] = head;
    Atomics.store(ww, base + WaiterLayout.kState, WaiterState.kRead);
    spinUnlock(this.w, UffdLayout.kUffdLock);
    return head;
  }

  /** Entries __wake_up_locked_key() examined in the last wake() (for the op count). */
  lastScanned = 0;

  /**
   * wake_userfault() / __wake_userfault(): wake every entry of both queues whose page of VMA
   * `vma` lies in [start, end), recording `resolveNs` (the modeled ns of the resolution) for
   * each; returns the number woken. The entries' wake-board lines are rung after the state
   * store (boardRing()'s pair).
   */
  wake(vma: number, start: number, end: number, resolveNs: number): number {
    this.lastScanned = 0;
    spinLock(this.w, UffdLayout.kUffdLock);
    const woken = this.wakeQueue(UffdLayout.kUffdPendingHead, vma, start, end, resolveNs) + this.wakeQueue(UffdLayout.kUffdReadHead, vma, start, end, resolveNs);
    spinUnlock(this.w, UffdLayout.kUffdLock);
    return woken;
  }

  /** One queue of wake(), with the lock held. */
  private wakeQueue(headWord: number, vma: number, start: number, end: number, resolveNs: number): number {
    const ww = this.ww;
    let woken = 0;
    let i = this.w[headWord]!;
    while (i >= 0) {
      const base = i * WaiterLayout.kWaiterWords;
      const next = ww[base + WaiterLayout.kNext]!;
      this.lastScanned++;
      const idx = ww[base + WaiterLayout.kIdx]!;
      if (ww[base + WaiterLayout.kVma] === vma && idx >= start && idx < end) {
        this.dequeue(base);
        this.wf[(base + WaiterLayout.kResolveNs) >> 1] = resolveNs;
        Atomics.store(ww, base + WaiterLayout.kState, WaiterState.kWoken);
        boardRing(this.board, ww[base + WaiterLayout.kCpu]!);
        woken++;
      }
      i = next;
    }
    return woken;
  }
}

/** A registered range [start, end) of a VMA's pages (UFFDIO_REGISTER splits the VMA in Linux). */
export interface UffdRangeHandle {
  readonly uffd: UserfaultfdHandle;
  readonly start: number;
  readonly end: number;
  readonly mode: UffdMode;
}

export interface UffdRange {
  readonly uffd: Userfaultfd;
  readonly start: number;
  readonly end: number;
  readonly mode: UffdMode;
}

/**
 * UFFDIO_REGISTER of VMA pages [start, start + n) with `mode`. MINOR needs a page cache behind
 * the mapping (shmem, or hugetlb mapped MAP_SHARED): vma_can_userfault() refuses it elsewhere.
 * Ranges of one VMA may not overlap (a registered VMA part belongs to one uffd). Register
 * before the VMA reaches the workers (before the run's first phase): workers read the ranges
 * from the VMA handle when they attach.
 */
export function uffdioRegister(vma: Vma, uffd: Userfaultfd, start: number, n: number, mode: UffdMode): void {
  if (mode !== UffdMode.MISSING && mode !== UffdMode.MINOR) fail('EINVAL', `UFFDIO_REGISTER: mode must be MISSING (1) or MINOR (4), got ${String(mode)}`);
  if (!Number.isInteger(start) || !Number.isInteger(n) || n <= 0 || start < 0 || start + n > vma.npages) {
    fail('EINVAL', `UFFDIO_REGISTER: pages [${start}, ${start + n}) are not inside the ${vma.npages}-page mapping`);
  }
  const g = 2 ** vma.granuleOrder;
  if (start % g !== 0 || n % g !== 0) fail('EINVAL', `UFFDIO_REGISTER: a ${vma.backing} range must be aligned to its ${4 * g} KiB pages`);
  if (mode === UffdMode.MINOR && vma.cache === null) {
    fail('EINVAL', `UFFDIO_REGISTER: MINOR mode needs a page cache behind the mapping (shmem or shared_hugetlb), not ${vma.backing}`);
  }
  const ranges = vma.handle.uffd;
  for (const r of ranges) {
    if (start < r.end && r.start < start + n) fail('EBUSY', `UFFDIO_REGISTER: pages [${start}, ${start + n}) overlap a range registered with uffd ${r.uffd.id}`);
  }
  ranges.push({ uffd: uffd.handle, start, end: start + n, mode });
  ranges.sort((a, b) => a.start - b.start);
  vma.attachUffd();
}

/** The registered range that covers VMA page `idx`, or null (binary search: ranges are sorted and disjoint). */
export function uffdRangeOf(ranges: readonly UffdRange[], idx: number): UffdRange | null {
  let lo = 0;
  let hi = ranges.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const r = ranges[mid]!;
    if (idx < r.start) hi = mid - 1;
    else if (idx >= r.end) lo = mid + 1;
    else return r;
  }
  return null;
}
