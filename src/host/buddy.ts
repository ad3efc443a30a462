/**
 * The buddy allocator of one NUMA node's zone, 4 KiB (order 0) to 1 GiB (order 18).
 *
 * Free blocks are tracked per order in a hierarchical bitmap (bit i of order o = the block at
 * zone-relative frame i << o is free), so allocation is "lowest free block of the smallest order
 * that fits" — deterministic for a given sequence of calls, which keeps single-worker runs
 * reproducible — and needs no free-list words in the frame table (the 4K footprint budget).
 * Merging on free checks the buddy's bit, as __free_one_page does.
 *
 * All state is guarded by the zone spinlock (zone->lock). Order-0 traffic goes through per-thread
 * caches (pcp.ts) so faults on two workers do not fight over this lock.
 *
 * Zone words (Int32, padded): kZoneLock, kZoneFree (free frames), then one free-block count per
 * order.
 */
import { allocSab, Arena } from '../shm/arena.js';
import { BitTree, type BitTreeHandle } from '../shm/bittree.js';
import { spinLock, spinUnlock } from '../shm/spinlock.js';

export const enum ZoneLayout {
  kMaxOrder = 18,
  kZoneLock = 0,
  kZoneFree = Arena.kPadWords,
  kZoneOrderCount = ZoneLayout.kZoneFree + 1,
  kZoneWords = ZoneLayout.kZoneOrderCount + ZoneLayout.kMaxOrder + 1,
}

export interface ZoneHandle {
  readonly node: number;
  readonly startPfn: number;
  readonly npages: number;
  readonly words: SharedArrayBuffer;
  readonly orders: BitTreeHandle[];
}

export class Zone {
  readonly node: number;
  readonly startPfn: number;
  readonly npages: number;
  readonly w: Int32Array;
  readonly orders: BitTree[];

  constructor(readonly handle: ZoneHandle) {
    this.node = handle.node;
    this.startPfn = handle.startPfn;
    this.npages = handle.npages;
    this.w = new Int32Array(handle.words);
    this.orders = handle.orders.map((h) => new BitTree(h));
  }

  /** A zone of npages frames starting at startPfn (which must be 1 GiB aligned), all free. */
  static create(node: number, startPfn: number, npages: number): Zone {
    if (startPfn % (1 << ZoneLayout.kMaxOrder) !== 0) throw new RangeError('zone start must be 1 GiB aligned');
    const orders: BitTreeHandle[] = [];
    for (let o = 0; o <= ZoneLayout.kMaxOrder; o++) orders.push(BitTree.create(Math.max(1, npages >>> o)).handle);
    const z = new Zone({ node, startPfn, npages, words: allocSab(ZoneLayout.kZoneWords * 4), orders });
    // Seed with the largest naturally aligned blocks that fit.
    let r = 0;
    while (r < npages) {
      let o = ZoneLayout.kMaxOrder;
      while (o > 0 && ((r & ((1 << o) - 1)) !== 0 || r + (1 << o) > npages)) o--;
      z.orders[o]!.set(r >>> o);
      z.w[ZoneLayout.kZoneOrderCount + o]!++;
      r += 1 << o;
    }
    z.w[ZoneLayout.kZoneFree] = npages;
    return z;
  }

  lock(): number {
    return spinLock(this.w, ZoneLayout.kZoneLock);
  }
  unlock(): void {
    spinUnlock(this.w, ZoneLayout.kZoneLock);
  }

  freePages(): number {
    return Atomics.load(this.w, ZoneLayout.kZoneFree);
  }

  /** Allocate a 2^order block; returns its pfn or -1. Caller holds the zone lock. */
  allocLocked(order: number): number {
    const w = this.w;
    let o = order;
    while (o <= ZoneLayout.kMaxOrder && w[ZoneLayout.kZoneOrderCount + o] === 0) o++;
    if (o > ZoneLayout.kMaxOrder) return -1;
    const idx = this.orders[o]!.findFirst();
    this.orders[o]!.clear(idx);
    w[ZoneLayout.kZoneOrderCount + o]!--;
    const r = idx << o;
    // Split down, handing the upper halves back (expand()).
    while (o > order) {
      o--;
      this.orders[o]!.set((r >>> o) | 1);
      w[ZoneLayout.kZoneOrderCount + o]!++;
    }
    w[ZoneLayout.kZoneFree] = w[ZoneLayout.kZoneFree]! - (1 << order);
    return this.startPfn + r;
  }

  /** Free a 2^order block, merging with free buddies. Caller holds the zone lock. */
  freeLocked(pfn: number, order: number): void {
    const w = this.w;
    let r = pfn - this.startPfn;
    w[ZoneLayout.kZoneFree] = w[ZoneLayout.kZoneFree]! + (1 << order);
    let o = order;
    while (o < ZoneLayout.kMaxOrder) {
      const buddy = r ^ (1 << o);
      if (buddy + (1 << o) > this.npages || !this.orders[o]!.test(buddy >>> o)) break;
      this.orders[o]!.clear(buddy >>> o);
      w[ZoneLayout.kZoneOrderCount + o]!--;
      r &= ~(1 << o);
      o++;
    }
    this.orders[o]!.set(r >>> o);
    w[ZoneLayout.kZoneOrderCount + o]!++;
  }

  alloc(order: number): number {
    this.lock();
    const pfn = this.allocLocked(order);
    this.unlock();
    return pfn;
  }

  free(pfn: number, order: number): void {
    this.lock();
    this.freeLocked(pfn, order);
    this.unlock();
  }

  freeBlocks(order: number): number {
    return Atomics.load(this.w, ZoneLayout.kZoneOrderCount + order);
  }

  bytes(): number {
    let b = this.w.byteLength;
    for (const t of this.orders) b += t.w.byteLength;
    return b;
  }
}
