/**
 * The data held by host frames that need real bytes: the guest's page-table pages (the shadow
 * MMU walks them, as paging_tmpl.h reads guest PTEs through the hva). The frame table carries
 * metadata only; here a sparse store keyed by pfn gives a frame 4 KiB (1024 Int32 words) of
 * content on first use. A frame without content reads as zero, as a freshly allocated page does.
 *
 * Layout of the table SAB (Int32 words):
 *
 *   [0 .. 31]    writers' line: lock, live pages, next fresh page, free-stack depth, limits
 *   [32 .. 63]   readers' line: the drop seqcount, the announced capacity
 *   [64 ..)      hash: 2^bits slots x 2 words (key = pfn + 1, 0 empty; content page index)
 *   [.. )        free stack: maxPages page indices (pages dropped, zeroed, ready for reuse)
 *
 * and the content pages in a growable SAB (reserved for maxPages, grown in place, never moved).
 * The hash is linear-probing at load <= 1/2 with backward-shift delete (no tombstones, so probe
 * lengths never degrade under churn); a shift moves entries under lock-free readers, so drop()
 * runs inside a seqcount and readers retry across it. Inserts only fill empty slots, which a
 * concurrent probe either sees or not, so they need no seqcount.
 */
import { allocGrowableSab, allocSab, growSab } from '../shm/arena.js';
import { spinLock, spinUnlock } from '../shm/spinlock.js';
import { readSeqBegin, readSeqRetry, writeSeqBegin, writeSeqEnd } from '../shm/seqcount.js';
import { fail } from './errno.js';

export const enum PageContentLayout {
  kPcLock = 0,
  /** Live content pages (stored with Atomics under the lock; bytes() reads it from anywhere). */
  kPcLive = 1,
  /** Next never-used page index (under the lock). */
  kPcFresh = 2,
  /** Depth of the free stack (under the lock). */
  kPcFreeTop = 3,
  kPcMaxPages = 4,
  kPcHashBits = 5,
  /** Odd while drop() shifts hash entries; written by drop() only, so readers' line stays clean. */
  kPcSeq = 32,
  /** Content pages the SAB has grown to: the growth announcement (see grow()). */
  kPcCapacity = 33,
  kPcHashBase = 64,
  kPcSlotWords = 2,
  kPcSlotKey = 0,
  kPcSlotPage = 1,
  kPcPageWords = 1024,
  kPcPageBytes = 4096,
}

/** 4 GiB of content at most: V8's limit for a growable SAB's maxByteLength. */
export const kPageContentMaxPages = 2 ** 20;
/** Pages committed at creation; the SAB doubles from there. */
const kInitialPages = 16;

export interface PageContentHandle {
  readonly table: SharedArrayBuffer;
  /** Growable; its length is the committed capacity. */
  readonly content: SharedArrayBuffer;
}

function hashPfn(pfn: number, bits: number): number {
  return Math.imul(pfn, 0x9e3779b1) >>> (32 - bits);
}

export class PageContent {
  readonly table: Int32Array;
  /** This thread's view of the content pages; re-read it after every lookup()/getOrCreate(). */
  words!: Int32Array;
  capacity = 0;
  private readonly bits: number;
  private readonly mask: number;
  private readonly freeBase: number;
  private readonly maxPages: number;

  constructor(readonly handle: PageContentHandle) {
    this.table = new Int32Array(handle.table);
    this.bits = this.table[PageContentLayout.kPcHashBits]!;
    this.mask = (1 << this.bits) - 1;
    this.maxPages = this.table[PageContentLayout.kPcMaxPages]!;
    this.freeBase = PageContentLayout.kPcHashBase + (1 << this.bits) * PageContentLayout.kPcSlotWords;
    this.refresh();
  }

  static attach(handle: PageContentHandle): PageContent {
    return new PageContent(handle);
  }

  /** A store for at most `maxPages` content pages (1 .. 2^20). */
  static createHandle(maxPages: number): PageContentHandle {
    if (!Number.isInteger(maxPages) || maxPages < 1 || maxPages > kPageContentMaxPages) {
      fail('EINVAL', `page content: maxPages must be an integer in 1..${kPageContentMaxPages}, got ${maxPages}`);
    }
    let bits = 1;
    while (1 << bits < 2 * maxPages) bits++;
    const slots = 1 << bits;
    const table = allocSab((PageContentLayout.kPcHashBase + slots * PageContentLayout.kPcSlotWords + maxPages) * 4);
    const t = new Int32Array(table);
    t[PageContentLayout.kPcMaxPages] = maxPages;
    t[PageContentLayout.kPcHashBits] = bits;
    const initial = Math.min(maxPages, kInitialPages);
    const content = allocGrowableSab(initial * PageContentLayout.kPcPageBytes, maxPages * PageContentLayout.kPcPageBytes);
    // Before any other thread attaches: the handle's transfer orders it.
    t[PageContentLayout.kPcCapacity] = initial;
    return { table, content };
  }

  /** Re-create this thread's view at the announced capacity (after another thread grew it). */
  refresh(): void {
    const announced = Atomics.load(this.table, PageContentLayout.kPcCapacity);
    this.capacity = Math.min(announced, this.handle.content.byteLength / PageContentLayout.kPcPageBytes);
    this.words = new Int32Array(this.handle.content, 0, this.capacity * PageContentLayout.kPcPageWords);
  }

  /**
   * Word offset of pfn's content in `words`, or -1 (no content: the frame reads as zero).
   * Lock-free. Observe side of the insert pair: the Atomics.load of the slot's key, after which
   * the page index and the zeroed page (published before the key) are visible. A lookup racing
   * drop() of the same pfn is the caller's race (a frame being freed), as in the kernel.
   */
  lookup(pfn: number): number {
    const t = this.table;
    const key = pfn + 1;
    for (;;) {
      // Pairs with drop()'s writeSeqBegin/End: a probe that overlapped a shift is retried.
      const seq = readSeqBegin(t, PageContentLayout.kPcSeq);
      let i = hashPfn(pfn, this.bits);
      let page = -1;
      for (;;) {
        const s = PageContentLayout.kPcHashBase + i * PageContentLayout.kPcSlotWords;
        const k = Atomics.load(t, s + PageContentLayout.kPcSlotKey);
        if (k === key) {
          page = Atomics.load(t, s + PageContentLayout.kPcSlotPage);
          break;
        }
        if (k === 0) break;
        i = (i + 1) & this.mask;
      }
      if (readSeqRetry(t, PageContentLayout.kPcSeq, seq)) continue;
      if (page < 0) return -1;
      // The page was grown into before its index was published: the SAB covers it already.
      if (page >= this.capacity) this.refresh();
      return page * PageContentLayout.kPcPageWords;
    }
  }

  /** Word offset of pfn's content, creating it (zeroed) on first use. ENOMEM when full. */
  getOrCreate(pfn: number): number {
    if (!Number.isInteger(pfn) || pfn < 0 || pfn >= 0x7fffffff) fail('EINVAL', `page content: bad pfn ${pfn}`);
    const hit = this.lookup(pfn);
    if (hit >= 0) return hit;
    const t = this.table;
    spinLock(t, PageContentLayout.kPcLock);
    // Under the lock the hash slots, the free stack and the counters have no other writer, so
    // plain reads of them are exact; slot stores stay Atomics for the lock-free readers.
    let i = hashPfn(pfn, this.bits);
    for (;;) {
      const s = PageContentLayout.kPcHashBase + i * PageContentLayout.kPcSlotWords;
      const k = t[s + PageContentLayout.kPcSlotKey]!;
      if (k === pfn + 1) {
        // Inserted by another thread between our lookup and the lock.
        const page = t[s + PageContentLayout.kPcSlotPage]!;
        spinUnlock(t, PageContentLayout.kPcLock);
        if (page >= this.capacity) this.refresh();
        return page * PageContentLayout.kPcPageWords;
      }
      if (k === 0) break;
      i = (i + 1) & this.mask;
    }
    const page = this.allocPage();
    if (page < 0) {
      spinUnlock(t, PageContentLayout.kPcLock);
      fail('ENOMEM', `page content: all ${this.maxPages} content pages are in use (pfn ${pfn}); create the store with a larger maxPages`);
    }
    // Publish side of the insert pair (observed by lookup()'s key load): the page is zero (a
    // fresh page of the grown SAB, or one drop() zeroed), then its index, then the key.
    const s = PageContentLayout.kPcHashBase + i * PageContentLayout.kPcSlotWords;
    Atomics.store(t, s + PageContentLayout.kPcSlotPage, page);
    Atomics.store(t, s + PageContentLayout.kPcSlotKey, pfn + 1);
    Atomics.store(t, PageContentLayout.kPcLive, t[PageContentLayout.kPcLive]! + 1);
    spinUnlock(t, PageContentLayout.kPcLock);
    return page * PageContentLayout.kPcPageWords;
  }

  /** Under the lock: a zeroed page from the free stack, else a fresh one (growing), else -1. */
  private allocPage(): number {
    const t = this.table;
    const top = t[PageContentLayout.kPcFreeTop]!;
    if (top > 0) {
      t[PageContentLayout.kPcFreeTop] = top - 1;
      return t[this.freeBase + top - 1]!;
    }
    const fresh = t[PageContentLayout.kPcFresh]!;
    if (fresh >= this.maxPages) return -1;
    if (fresh >= Atomics.load(t, PageContentLayout.kPcCapacity)) this.grow(Math.min(this.maxPages, Math.max(fresh + 1, fresh * 2)));
    else if (fresh >= this.capacity) this.refresh();
    t[PageContentLayout.kPcFresh] = fresh + 1;
    return fresh;
  }

  /**
   * Under the lock: grow the content SAB in place, then announce the capacity. The pair: this
   * Atomics.store of kPcCapacity / refresh()'s load — and every page index past the old
   * capacity is published (key store) after both, so a reader that finds it can refresh.
   */
  private grow(pages: number): void {
    growSab(this.handle.content, pages * PageContentLayout.kPcPageBytes);
    Atomics.store(this.table, PageContentLayout.kPcCapacity, pages);
    this.refresh();
  }

  /**
   * The frame was freed: its content is gone. The page is zeroed and kept for reuse; the hash
   * entry is removed by backward shift (Knuth's algorithm R) inside the seqcount.
   */
  drop(pfn: number): void {
    const t = this.table;
    spinLock(t, PageContentLayout.kPcLock);
    let i = hashPfn(pfn, this.bits);
    for (;;) {
      const k = t[PageContentLayout.kPcHashBase + i * PageContentLayout.kPcSlotWords + PageContentLayout.kPcSlotKey]!;
      if (k === pfn + 1) break;
      if (k === 0) {
        spinUnlock(t, PageContentLayout.kPcLock);
        return; // never had content
      }
      i = (i + 1) & this.mask;
    }
    const page = t[PageContentLayout.kPcHashBase + i * PageContentLayout.kPcSlotWords + PageContentLayout.kPcSlotPage]!;
    writeSeqBegin(t, PageContentLayout.kPcSeq);
    this.shiftOut(i);
    writeSeqEnd(t, PageContentLayout.kPcSeq);
    if (page >= this.capacity) this.refresh();
    this.words.fill(0, page * PageContentLayout.kPcPageWords, (page + 1) * PageContentLayout.kPcPageWords);
    const top = t[PageContentLayout.kPcFreeTop]!;
    t[this.freeBase + top] = page;
    t[PageContentLayout.kPcFreeTop] = top + 1;
    Atomics.store(t, PageContentLayout.kPcLive, t[PageContentLayout.kPcLive]! - 1);
    spinUnlock(t, PageContentLayout.kPcLock);
  }

  /** Empty slot i, moving back every later entry of its cluster whose home is not in (i, j]. */
  private shiftOut(i: number): void {
    const t = this.table;
    const base = PageContentLayout.kPcHashBase;
    const w = PageContentLayout.kPcSlotWords;
    let j = i;
    for (;;) {
      j = (j + 1) & this.mask;
      const k = t[base + j * w + PageContentLayout.kPcSlotKey]!;
      if (k === 0) break;
      const home = hashPfn(k - 1, this.bits);
      // The entry at j may stay if its home lies cyclically in (i, j]: a probe from home reaches j
      // without crossing the hole at i.
      const stays = i <= j ? i < home && home <= j : i < home || home <= j;
      if (stays) continue;
      Atomics.store(t, base + i * w + PageContentLayout.kPcSlotPage, t[base + j * w + PageContentLayout.kPcSlotPage]!);
      Atomics.store(t, base + i * w + PageContentLayout.kPcSlotKey, k);
      i = j;
    }
    Atomics.store(t, base + i * w + PageContentLayout.kPcSlotKey, 0);
    Atomics.store(t, base + i * w + PageContentLayout.kPcSlotPage, 0);
  }

  /** Live content bytes (4 KiB per frame that has content), for memory reports. */
  bytes(): number {
    return Atomics.load(this.table, PageContentLayout.kPcLive) * PageContentLayout.kPcPageBytes;
  }

  /** Committed bytes: the content SAB as grown, plus the hash and free stack. */
  committedBytes(): number {
    return this.handle.content.byteLength + this.handle.table.byteLength;
  }
}
