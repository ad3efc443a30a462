/**
 * HugeTLB pools: 2 MiB and 1 GiB pages reserved from the buddy allocator when the host is
 * created (as hugepages= on the kernel command line), one pool per size per NUMA node.
 * A pool is a stack of free huge pfns in shared memory behind a spinlock (hugetlb_lock).
 * Exhaustion is ENOMEM to the caller (SIGBUS for a user fault, EFAULT out of KVM_RUN).
 *
 * Words: kPoolLock, kPoolTotal, kPoolFree, then the stack of free pfns.
 */
import { allocSab, Arena } from '../shm/arena.js';
import { spinLock, spinUnlock } from '../shm/spinlock.js';

export const enum PoolLayout {
  kPoolLock = 0,
  kPoolTotal = Arena.kPadWords,
  kPoolFree = PoolLayout.kPoolTotal + 1,
  kPoolStack = Arena.kPadWords * 2,
}

export interface HugetlbPoolHandle {
  readonly order: number;
  readonly node: number;
  readonly sab: SharedArrayBuffer;
}

export class HugetlbPool {
  readonly w: Int32Array;
  readonly order: number;
  readonly node: number;
  constructor(readonly handle: HugetlbPoolHandle) {
    this.w = new Int32Array(handle.sab);
    this.order = handle.order;
    this.node = handle.node;
  }
  static create(order: number, node: number, capacity: number): HugetlbPool {
    return new HugetlbPool({ order, node, sab: allocSab((PoolLayout.kPoolStack + capacity) * 4) });
  }
  /** Add a reserved page (host creation only). */
  add(pfn: number): void {
    const w = this.w;
    w[PoolLayout.kPoolStack + w[PoolLayout.kPoolFree]!] = pfn;
    w[PoolLayout.kPoolFree]!++;
    w[PoolLayout.kPoolTotal]!++;
  }
  alloc(): number {
    const w = this.w;
    spinLock(w, PoolLayout.kPoolLock);
    const free = w[PoolLayout.kPoolFree]!;
    let pfn = -1;
    if (free > 0) {
      // LIFO; the host pushes reserved pages highest first, so a fresh pool hands out
      // ascending pfns and a single-worker run is reproducible.
      pfn = w[PoolLayout.kPoolStack + free - 1]!;
      w[PoolLayout.kPoolFree] = free - 1;
    }
    spinUnlock(w, PoolLayout.kPoolLock);
    return pfn;
  }
  free(pfn: number): void {
    const w = this.w;
    spinLock(w, PoolLayout.kPoolLock);
    w[PoolLayout.kPoolStack + w[PoolLayout.kPoolFree]!] = pfn;
    w[PoolLayout.kPoolFree]!++;
    spinUnlock(w, PoolLayout.kPoolLock);
  }
  total(): number {
    return Atomics.load(this.w, PoolLayout.kPoolTotal);
  }
  freeCount(): number {
    return Atomics.load(this.w, PoolLayout.kPoolFree);
  }
}
