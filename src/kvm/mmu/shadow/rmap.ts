/**
 * The shadow MMU's reverse maps (mmu.c / rmap.c): per memslot and per level (4K, 2M, 1G), one
 * `struct kvm_rmap_head` per gfn (per huge page at 2M and 1G) listing every SPTE that maps it,
 * so write-protection, dirty clearing, aging and zapping can go from a gfn to its SPTEs.
 *
 * Concurrency contract.
 *   - Every rmap operation (add, remove, count, destroy, iteration) runs with mmu_lock held for
 *     write: KVM's shadow MMU touches rmaps only under the write lock. That lock is Atomics-based
 *     (rwlock.ts), and its acquire/release order the plain accesses made here between threads, so
 *     heads and descriptors are plain Int32 words.
 *   - allocSlot()/freeSlot() run under the caller's slots_lock (kvm_alloc_memslot_metadata and
 *     kvm_arch_free_memslot), possibly while another thread holds mmu_lock. The two sides share
 *     no word: the slot side owns the head free list, head bump and slot records; the mmu_lock
 *     side owns the descriptors. The heads of a slot being allocated or freed are unreachable by
 *     rmap operations (not published yet / unpublished and SRCU-synchronised by the caller).
 *   - Growth is the only cross-thread publish that is not under a common lock: a SAB is grown in
 *     place (nothing moves, old views stay valid for old indices), its capacity announced with
 *     Atomics.store and the generation bumped with Atomics.add; every operation starts with an
 *     Atomics.load of the generation and re-creates this thread's views when it changed (the pair:
 *     grow*()'s generation bump / syncViews()'s load). Fixed-length views, as the page-table pool
 *     (tdp/pt-pages.ts): a length-tracking view costs ~4x per access in Node 20.
 *
 * Encoding (KVM's, with a 64-bit val split in two Int32 words):
 *   head:  [tag, ptr]   empty: [0, 0]; one SPTE: [0, sptep]; a chain: [KVM_RMAP_MANY, desc]
 *   desc:  [more, spte_count, tail_count, pad, sptes[14], unused x14]  (128 bytes, KVM's sizeof)
 * An sptep is the page-table pool's global SPTE index (page * 512 + entry, > 0); desc 0, head 0
 * and slot record 0 are never handed out, so 0 means "none" everywhere.
 */
import { fail } from '../../../host/errno.js';
import { allocGrowableSab, growSab } from '../../../shm/arena.js';
import { gfnToIndex, lpageCount } from '../lpage.js';
import { PgLevel } from '../spte.js';

/** PTE_LIST_EXT: SPTEs per pte_list_desc since Peter Xu's "15 -> 14 + spte_count" change. */
export const kPteListExt = 14;
/** sizeof(struct pte_list_desc) on x86-64: more (8) + spte_count (4) + tail_count (4) + 14 x 8. */
export const kPteListDescBytes = 128;
/** sizeof(struct kvm_rmap_head). */
export const kRmapHeadBytes = 8;
/** sizeof(*slot->arch.gfn_write_track): a u16 count per gfn. */
export const kWriteTrackBytes = 2;

/** struct kvm_rmap_head: two Int32 words per head. */
export const enum RmapHead {
  kRmapHeadWords = 2,
  /** Tag bits of val. */
  kRmapHeadTag = 0,
  /** The pointer: an sptep (tag 0) or a descriptor index (KVM_RMAP_MANY). */
  kRmapHeadPtr = 1,
  KVM_RMAP_MANY = 1,
  /** Reserved (6.13's lockless rmap walks); unused: every mutation here holds mmu_lock for write. */
  KVM_RMAP_LOCKED = 2,
  /** A free range of heads keeps [length, next free range] in its first head (slot side only). */
  kFreeRangeLen = 0,
  kFreeRangeNext = 1,
}

/** struct pte_list_desc, one per 128 bytes (32 words) so resident memory equals KVM's figure. */
export const enum PteListDesc {
  kDescWords = 32,
  /** The next (older, full) descriptor; on the free list, the next free descriptor. */
  kDescMore = 0,
  /** Entries in this descriptor: only the head descriptor may hold fewer than PTE_LIST_EXT. */
  kDescSpteCount = 1,
  /** Entries in all descriptors after this one (stable: tails are always full). */
  kDescTailCount = 2,
  kDescSptes = 4,
  PTE_LIST_EXT = 14,
}

/** Per-slot record: where the slot's head arrays start (slot->arch.rmap[level - 1]). */
export const enum RmapSlot {
  kSlotWords = 4,
  kSlotRmap4k = 0,
  kSlotRmap2m = 1,
  kSlotRmap1g = 2,
  /** Heads owned (> 0 while live); a free record has 0 here and its next free in kSlotRmap4k. */
  kSlotHeads = 3,
}

/** The control SAB: capacities (Atomics), then allocator state (plain, under its lock). */
export const enum RmapCtl {
  kRmapCtlHeadCapacity = 0,
  kRmapCtlDescCapacity = 1,
  kRmapCtlSlotCapacity = 2,
  /** Bumped after any capacity store: the one word every operation loads. */
  kRmapCtlGeneration = 3,
  /** Slot side (slots_lock): head bump, first free head range (sorted), live heads, slot records. */
  kRmapCtlHeadBump = 4,
  kRmapCtlHeadFree = 5,
  kRmapCtlHeadsLive = 6,
  kRmapCtlSlotBump = 7,
  kRmapCtlSlotFree = 8,
  /** mmu_lock side: descriptor bump, free stack, live descriptors. */
  kRmapCtlDescBump = 9,
  kRmapCtlDescFree = 10,
  kRmapCtlDescsLive = 11,
  kRmapCtlWords = 12,
}

/** 4 GiB of address space per growable SAB (V8's maxByteLength limit in Node 20). */
const kRmapSabMaxBytes = 2 ** 32;
export const kRmapMaxHeads = kRmapSabMaxBytes / kRmapHeadBytes;
export const kRmapMaxDescs = kRmapSabMaxBytes / kPteListDescBytes;
/** KVM_MEM_SLOTS_NUM (32768) x KVM_MAX_NR_ADDRESS_SPACES (2) on x86, plus record 0. */
export const kRmapMaxSlots = 2 ** 16 + 1;

export interface RmapArenaHandle {
  readonly ctl: SharedArrayBuffer;
  readonly heads: SharedArrayBuffer;
  /** slot->arch.gfn_write_track: one u16 per head, sized and grown with `heads`. */
  readonly track: SharedArrayBuffer;
  readonly descs: SharedArrayBuffer;
  readonly slots: SharedArrayBuffer;
}

/** Initial capacities (tests start tiny so growth happens several times). */
export interface RmapArenaOptions {
  heads?: number;
  descs?: number;
  slots?: number;
}

/**
 * Head bytes KVM allocates for a slot (memslot_rmap_alloc): 8 per 4K gfn plus the 2M and 1G
 * arrays, sized by gfn_to_index so an unaligned slot gets an entry for each partial huge page.
 */
export function slotHeadBytes(npages: number, baseGfn: number): number {
  return slotHeads(baseGfn, npages) * kRmapHeadBytes;
}

function slotHeads(baseGfn: number, npages: number): number {
  let n = 0;
  for (let level = PgLevel.PG_LEVEL_4K; level <= PgLevel.PG_LEVEL_1G; level++) n += lpageCount(baseGfn, npages, level);
  return n;
}

function growTo(cap: number, need: number, max: number): number {
  return Math.min(max, Math.max(need, cap * 2));
}

/** One thread's attachment to a VM's rmaps. */
export class RmapArena {
  readonly ctl: Int32Array;
  heads!: Int32Array;
  /**
   * gfn_write_track (page_track.c): how many shadow pages write-track each gfn, indexed by the
   * gfn's 4K head (the 2M and 1G heads' entries stay 0). KVM allocates it beside the rmaps, in
   * kvm_alloc_memslot_metadata() or mmu_first_shadow_root_alloc(), which is what sharing the
   * head index gives: it exists exactly when the slot's rmaps do. Written and read with
   * mmu_lock held for write, like the heads.
   */
  track!: Uint16Array;
  descs!: Int32Array;
  slots!: Int32Array;
  private headCap = 0;
  private descCap = 0;
  private slotCap = 0;
  private generation = -1;

  constructor(readonly handle: RmapArenaHandle) {
    this.ctl = new Int32Array(handle.ctl);
    this.syncViews();
  }

  /** A fresh arena's SABs (main thread, before any other thread attaches). */
  static createHandle(opts: RmapArenaOptions = {}): RmapArenaHandle {
    // Index 0 of each array is reserved ("none"), so capacities are at least 2.
    const heads = Math.max(2, opts.heads ?? 4096);
    const descs = Math.max(2, opts.descs ?? 256);
    const slots = Math.max(2, opts.slots ?? 16);
    const h: RmapArenaHandle = {
      ctl: new SharedArrayBuffer(RmapCtl.kRmapCtlWords * 4),
      heads: allocGrowableSab(heads * kRmapHeadBytes, kRmapSabMaxBytes),
      track: allocGrowableSab(heads * kWriteTrackBytes, kRmapMaxHeads * kWriteTrackBytes),
      descs: allocGrowableSab(descs * kPteListDescBytes, kRmapSabMaxBytes),
      slots: allocGrowableSab(slots * RmapSlot.kSlotWords * 4, kRmapMaxSlots * RmapSlot.kSlotWords * 4),
    };
    const c = new Int32Array(h.ctl);
    c[RmapCtl.kRmapCtlHeadBump] = 1;
    c[RmapCtl.kRmapCtlDescBump] = 1;
    c[RmapCtl.kRmapCtlSlotBump] = 1;
    Atomics.store(c, RmapCtl.kRmapCtlHeadCapacity, heads);
    Atomics.store(c, RmapCtl.kRmapCtlDescCapacity, descs);
    Atomics.store(c, RmapCtl.kRmapCtlSlotCapacity, slots);
    return h;
  }

  static create(opts: RmapArenaOptions = {}): RmapArena {
    return new RmapArena(RmapArena.createHandle(opts));
  }

  /**
   * Re-create this thread's views if any SAB grew since it last looked. Observe half of the
   * growth publish: this Atomics.load of the generation pairs with the Atomics.add in grow*(),
   * which follows the SAB's grow() and the capacity store, so the capacities read here are
   * covered by the SABs' lengths.
   */
  syncViews(): void {
    const c = this.ctl;
    const gen = Atomics.load(c, RmapCtl.kRmapCtlGeneration);
    if (gen === this.generation) return;
    this.generation = gen;
    const h = this.handle;
    const hc = Atomics.load(c, RmapCtl.kRmapCtlHeadCapacity);
    if (hc !== this.headCap) {
      this.headCap = hc;
      this.heads = new Int32Array(h.heads, 0, hc * RmapHead.kRmapHeadWords);
      this.track = new Uint16Array(h.track, 0, hc);
    }
    const dc = Atomics.load(c, RmapCtl.kRmapCtlDescCapacity);
    if (dc !== this.descCap) {
      this.descCap = dc;
      this.descs = new Int32Array(h.descs, 0, dc * PteListDesc.kDescWords);
    }
    const sc = Atomics.load(c, RmapCtl.kRmapCtlSlotCapacity);
    if (sc !== this.slotCap) {
      this.slotCap = sc;
      this.slots = new Int32Array(h.slots, 0, sc * RmapSlot.kSlotWords);
    }
  }

  // ---- Per-memslot head arrays (kvm_alloc_memslot_metadata / memslot_rmap_alloc) ----

  /**
   * Allocate a slot's zeroed heads for 4K, 2M and 1G (lpages = gfn_to_index(base + npages - 1,
   * base, level) + 1 each). Returns rmapBase (> 0), the small integer the memslot keeps.
   */
  allocSlot(baseGfn: number, npages: number): number {
    if (!Number.isInteger(baseGfn) || baseGfn < 0 || !Number.isInteger(npages) || npages < 1 || baseGfn + npages > 2 ** 32) {
      fail('EINVAL', `rmap: memslot base_gfn ${baseGfn} npages ${npages} is not a range of gfns below 2^32`);
    }
    this.syncViews();
    const n = slotHeads(baseGfn, npages);
    const rec = this.allocSlotRecord();
    const start = this.allocHeads(n);
    const s = this.slots;
    const r = rec * RmapSlot.kSlotWords;
    const n4k = lpageCount(baseGfn, npages, PgLevel.PG_LEVEL_4K);
    s[r + RmapSlot.kSlotRmap4k] = start;
    s[r + RmapSlot.kSlotRmap2m] = start + n4k;
    s[r + RmapSlot.kSlotRmap1g] = start + n4k + lpageCount(baseGfn, npages, PgLevel.PG_LEVEL_2M);
    s[r + RmapSlot.kSlotHeads] = n;
    this.ctl[RmapCtl.kRmapCtlHeadsLive] = this.ctl[RmapCtl.kRmapCtlHeadsLive]! + n;
    return rec;
  }

  /**
   * Give a slot's heads back (memslot_rmap_free). Every head must be empty: KVM zaps a slot's
   * SPTEs before freeing its metadata, and a live chain here would leak its descriptors.
   */
  freeSlot(rmapBase: number, baseGfn: number, npages: number): void {
    this.syncViews();
    const s = this.slots;
    const r = rmapBase * RmapSlot.kSlotWords;
    const n = slotHeads(baseGfn, npages);
    if (!(rmapBase > 0 && rmapBase < this.slotCap) || s[r + RmapSlot.kSlotHeads] !== n) {
      fail('EINVAL', `rmap: rmapBase ${rmapBase} is not a live slot of base_gfn ${baseGfn} npages ${npages}`);
    }
    const start = s[r + RmapSlot.kSlotRmap4k]!;
    const hw = this.heads;
    for (let i = start * RmapHead.kRmapHeadWords, e = (start + n) * RmapHead.kRmapHeadWords; i < e; i++) {
      if (hw[i] !== 0) {
        throw new Error(`rmap: freeing slot ${rmapBase} (base_gfn ${baseGfn}) with a non-empty rmap head ${i >> 1}`);
      }
    }
    // kvm_page_track_free_memslot(): the counts go with the slot (a root still in use may keep
    // its gfn accounted; the next slot on these heads starts from zero, as kvcalloc's would).
    this.track.fill(0, start, start + n);
    this.freeHeads(start, n);
    s[r + RmapSlot.kSlotHeads] = 0;
    s[r + RmapSlot.kSlotRmap4k] = this.ctl[RmapCtl.kRmapCtlSlotFree]!;
    this.ctl[RmapCtl.kRmapCtlSlotFree] = rmapBase;
    this.ctl[RmapCtl.kRmapCtlHeadsLive] = this.ctl[RmapCtl.kRmapCtlHeadsLive]! - n;
  }

  /** gfn_to_rmap(): the head of `gfn` at `level` in the slot. */
  headIndex(rmapBase: number, baseGfn: number, level: number, gfn: number): number {
    this.syncViews();
    return this.slots[rmapBase * RmapSlot.kSlotWords + level - 1]! + gfnToIndex(gfn, baseGfn, level);
  }

  private allocSlotRecord(): number {
    const c = this.ctl;
    let rec = c[RmapCtl.kRmapCtlSlotFree]!;
    if (rec !== 0) {
      c[RmapCtl.kRmapCtlSlotFree] = this.slots[rec * RmapSlot.kSlotWords + RmapSlot.kSlotRmap4k]!;
      return rec;
    }
    rec = c[RmapCtl.kRmapCtlSlotBump]!;
    if (rec >= this.slotCap) {
      if (rec >= kRmapMaxSlots) fail('ENOMEM', `rmap: more than ${kRmapMaxSlots - 1} memslots with rmaps`);
      const cap = growTo(this.slotCap, rec + 1, kRmapMaxSlots);
      growSab(this.handle.slots, cap * RmapSlot.kSlotWords * 4);
      this.announce(RmapCtl.kRmapCtlSlotCapacity, cap);
    }
    c[RmapCtl.kRmapCtlSlotBump] = rec + 1;
    return rec;
  }

  /** First fit over the address-sorted free ranges, else the bump pointer. */
  private allocHeads(n: number): number {
    const c = this.ctl;
    const hw = this.heads;
    let prev = 0;
    for (let r = c[RmapCtl.kRmapCtlHeadFree]!; r !== 0; ) {
      const len = hw[r * 2 + RmapHead.kFreeRangeLen]!;
      const next = hw[r * 2 + RmapHead.kFreeRangeNext]!;
      if (len >= n) {
        let rest = next;
        if (len > n) {
          rest = r + n;
          hw[rest * 2 + RmapHead.kFreeRangeLen] = len - n;
          hw[rest * 2 + RmapHead.kFreeRangeNext] = next;
        }
        this.linkFreeRange(prev, rest);
        // The rest of a free range is zero (freeSlot checked every head was empty).
        hw[r * 2 + RmapHead.kFreeRangeLen] = 0;
        hw[r * 2 + RmapHead.kFreeRangeNext] = 0;
        return r;
      }
      prev = r;
      r = next;
    }
    const start = c[RmapCtl.kRmapCtlHeadBump]!;
    if (start + n > this.headCap) {
      if (start + n > kRmapMaxHeads) fail('ENOMEM', `rmap: ${n} more heads exceed the ${kRmapMaxHeads}-head reserve`);
      const cap = growTo(this.headCap, start + n, kRmapMaxHeads);
      growSab(this.handle.heads, cap * kRmapHeadBytes);
      growSab(this.handle.track, cap * kWriteTrackBytes);
      this.announce(RmapCtl.kRmapCtlHeadCapacity, cap);
    }
    c[RmapCtl.kRmapCtlHeadBump] = start + n;
    return start;
  }

  /** Insert [start, start + n) into the sorted free list, coalescing; a range ending at the bump lowers it. */
  private freeHeads(start: number, n: number): void {
    const c = this.ctl;
    const hw = this.heads;
    let before = 0;
    let prev = 0;
    let r = c[RmapCtl.kRmapCtlHeadFree]!;
    while (r !== 0 && r < start) {
      before = prev;
      prev = r;
      r = hw[r * 2 + RmapHead.kFreeRangeNext]!;
    }
    let len = n;
    let next = r;
    if (r !== 0 && start + n === r) {
      len += hw[r * 2 + RmapHead.kFreeRangeLen]!;
      next = hw[r * 2 + RmapHead.kFreeRangeNext]!;
      hw[r * 2 + RmapHead.kFreeRangeLen] = 0;
      hw[r * 2 + RmapHead.kFreeRangeNext] = 0;
    }
    if (prev !== 0 && prev + hw[prev * 2 + RmapHead.kFreeRangeLen]! === start) {
      len += hw[prev * 2 + RmapHead.kFreeRangeLen]!;
      start = prev;
      hw[prev * 2 + RmapHead.kFreeRangeLen] = 0;
      hw[prev * 2 + RmapHead.kFreeRangeNext] = 0;
    } else {
      before = prev;
    }
    if (next === 0 && start + len === c[RmapCtl.kRmapCtlHeadBump]) {
      // The topmost range goes back to the bump, so alloc/free cycles do not creep upwards.
      c[RmapCtl.kRmapCtlHeadBump] = start;
      this.linkFreeRange(before, 0);
      return;
    }
    hw[start * 2 + RmapHead.kFreeRangeLen] = len;
    hw[start * 2 + RmapHead.kFreeRangeNext] = next;
    this.linkFreeRange(before, start);
  }

  private linkFreeRange(prev: number, r: number): void {
    if (prev === 0) this.ctl[RmapCtl.kRmapCtlHeadFree] = r;
    else this.heads[prev * 2 + RmapHead.kFreeRangeNext] = r;
  }

  /** Grow-side publish: the SAB has grown; store its capacity, then bump the generation. */
  private announce(capWord: number, cap: number): void {
    Atomics.store(this.ctl, capWord, cap);
    Atomics.add(this.ctl, RmapCtl.kRmapCtlGeneration, 1);
    this.syncViews();
  }

  // ---- pte_list_desc allocation (mmu_alloc_pte_list_desc / mmu_free_pte_list_desc) ----

  private allocDesc(): number {
    const c = this.ctl;
    let d = c[RmapCtl.kRmapCtlDescFree]!;
    if (d !== 0) {
      c[RmapCtl.kRmapCtlDescFree] = this.descs[d * PteListDesc.kDescWords + PteListDesc.kDescMore]!;
    } else {
      d = c[RmapCtl.kRmapCtlDescBump]!;
      if (d >= this.descCap) {
        // KVM allocates from a per-vCPU cache topped up before mmu_lock; growing in place under
        // the write lock is the stand-in (nothing moves, other threads re-view on next use).
        if (d >= kRmapMaxDescs) fail('ENOMEM', `rmap: more than ${kRmapMaxDescs - 1} pte_list_descs`);
        const cap = growTo(this.descCap, d + 1, kRmapMaxDescs);
        growSab(this.handle.descs, cap * kPteListDescBytes);
        this.announce(RmapCtl.kRmapCtlDescCapacity, cap);
      }
      c[RmapCtl.kRmapCtlDescBump] = d + 1;
    }
    c[RmapCtl.kRmapCtlDescsLive] = c[RmapCtl.kRmapCtlDescsLive]! + 1;
    return d;
  }

  private freeDesc(d: number): void {
    const c = this.ctl;
    this.descs[d * PteListDesc.kDescWords + PteListDesc.kDescMore] = c[RmapCtl.kRmapCtlDescFree]!;
    c[RmapCtl.kRmapCtlDescFree] = d;
    c[RmapCtl.kRmapCtlDescsLive] = c[RmapCtl.kRmapCtlDescsLive]! - 1;
  }

  // ---- pte_list operations (mmu_lock held for write) ----

  /**
   * pte_list_add(): add sptep to the rmap; returns the number of entries before the add, which
   * the caller feeds to max_mmu_rmap_size and compares with RMAP_RECYCLE_THRESHOLD (1000).
   */
  add(head: number, sptep: number): number {
    this.syncViews();
    if (!(sptep > 0 && (sptep | 0) === sptep)) fail('EINVAL', `rmap: sptep ${sptep} is not a positive SPTE index`);
    const hw = this.heads;
    const h = this.headWord(head);
    const ptr = hw[h + RmapHead.kRmapHeadPtr]!;
    if (ptr === 0) {
      hw[h + RmapHead.kRmapHeadPtr] = sptep;
      return 0;
    }
    if ((hw[h + RmapHead.kRmapHeadTag]! & RmapHead.KVM_RMAP_MANY) === 0) {
      // 1 -> many: both SPTEs move into a fresh descriptor.
      const d = this.allocDesc();
      const dw = this.descs;
      const b = d * PteListDesc.kDescWords;
      dw[b + PteListDesc.kDescMore] = 0;
      dw[b + PteListDesc.kDescSpteCount] = 2;
      dw[b + PteListDesc.kDescTailCount] = 0;
      dw[b + PteListDesc.kDescSptes] = ptr;
      dw[b + PteListDesc.kDescSptes + 1] = sptep;
      hw[h + RmapHead.kRmapHeadTag] = RmapHead.KVM_RMAP_MANY;
      hw[h + RmapHead.kRmapHeadPtr] = d;
      return 1;
    }
    let d = ptr;
    let dw = this.descs;
    let b = d * PteListDesc.kDescWords;
    let n = dw[b + PteListDesc.kDescSpteCount]!;
    const count = dw[b + PteListDesc.kDescTailCount]! + n;
    if (n === PteListDesc.PTE_LIST_EXT) {
      // Tails are always full: a full head gets a new head descriptor in front of it.
      d = this.allocDesc();
      dw = this.descs;
      b = d * PteListDesc.kDescWords;
      dw[b + PteListDesc.kDescMore] = ptr;
      dw[b + PteListDesc.kDescSpteCount] = 0;
      dw[b + PteListDesc.kDescTailCount] = count;
      hw[h + RmapHead.kRmapHeadPtr] = d;
      n = 0;
    }
    dw[b + PteListDesc.kDescSptes + n] = sptep;
    dw[b + PteListDesc.kDescSpteCount] = n + 1;
    return count;
  }

  /** pte_list_remove(): an sptep that is not in the rmap is KVM_BUG_ON_DATA_CORRUPTION. */
  remove(head: number, sptep: number): void {
    this.syncViews();
    const hw = this.heads;
    const h = this.headWord(head);
    const ptr = hw[h + RmapHead.kRmapHeadPtr]!;
    if (ptr !== 0 && (hw[h + RmapHead.kRmapHeadTag]! & RmapHead.KVM_RMAP_MANY) === 0) {
      if (ptr === sptep) {
        hw[h + RmapHead.kRmapHeadPtr] = 0;
        return;
      }
    } else if (ptr !== 0) {
      const dw = this.descs;
      for (let d = ptr; d !== 0; d = dw[d * PteListDesc.kDescWords + PteListDesc.kDescMore]!) {
        const b = d * PteListDesc.kDescWords;
        for (let i = 0, n = dw[b + PteListDesc.kDescSpteCount]!; i < n; i++) {
          if (dw[b + PteListDesc.kDescSptes + i] === sptep) {
            this.descRemoveEntry(h, b + PteListDesc.kDescSptes + i);
            return;
          }
        }
      }
    }
    throw new Error(`rmap: pte_list_remove of sptep ${sptep} not in rmap head ${head} (KVM_BUG_ON_DATA_CORRUPTION)`);
  }

  /**
   * pte_list_desc_remove_entry(): the head descriptor's last entry fills the hole, so tails stay
   * full and their tail_count stays valid; an emptied head descriptor is freed and the next one
   * becomes the head. A chain left with one entry keeps its descriptor, as KVM's does.
   */
  private descRemoveEntry(h: number, hole: number): void {
    const hw = this.heads;
    const dw = this.descs;
    const hd = hw[h + RmapHead.kRmapHeadPtr]!;
    const hb = hd * PteListDesc.kDescWords;
    const j = dw[hb + PteListDesc.kDescSpteCount]! - 1;
    dw[hole] = dw[hb + PteListDesc.kDescSptes + j]!;
    dw[hb + PteListDesc.kDescSptes + j] = 0;
    dw[hb + PteListDesc.kDescSpteCount] = j;
    if (j !== 0) return;
    const more = dw[hb + PteListDesc.kDescMore]!;
    if (more === 0) {
      hw[h + RmapHead.kRmapHeadTag] = 0;
      hw[h + RmapHead.kRmapHeadPtr] = 0;
    } else {
      hw[h + RmapHead.kRmapHeadPtr] = more;
    }
    this.freeDesc(hd);
  }

  /** pte_list_count(): O(1) through the head descriptor's tail_count. */
  count(head: number): number {
    this.syncViews();
    const hw = this.heads;
    const h = this.headWord(head);
    const ptr = hw[h + RmapHead.kRmapHeadPtr]!;
    if (ptr === 0) return 0;
    if ((hw[h + RmapHead.kRmapHeadTag]! & RmapHead.KVM_RMAP_MANY) === 0) return 1;
    const b = ptr * PteListDesc.kDescWords;
    return this.descs[b + PteListDesc.kDescTailCount]! + this.descs[b + PteListDesc.kDescSpteCount]!;
  }

  /**
   * The list half of kvm_zap_all_rmap_sptes(): drop every entry, free the descriptors, reset the
   * head; returns how many entries were dropped. A zap clears the SPTEs first, iterating with an
   * RmapIterator (which this does not disturb), then calls destroy().
   */
  destroy(head: number): number {
    this.syncViews();
    const hw = this.heads;
    const h = this.headWord(head);
    const ptr = hw[h + RmapHead.kRmapHeadPtr]!;
    if (ptr === 0) return 0;
    let dropped = 1;
    if ((hw[h + RmapHead.kRmapHeadTag]! & RmapHead.KVM_RMAP_MANY) !== 0) {
      const dw = this.descs;
      dropped = dw[ptr * PteListDesc.kDescWords + PteListDesc.kDescTailCount]! + dw[ptr * PteListDesc.kDescWords + PteListDesc.kDescSpteCount]!;
      for (let d = ptr; d !== 0; ) {
        const next = dw[d * PteListDesc.kDescWords + PteListDesc.kDescMore]!;
        this.freeDesc(d);
        d = next;
      }
    }
    hw[h + RmapHead.kRmapHeadTag] = 0;
    hw[h + RmapHead.kRmapHeadPtr] = 0;
    return dropped;
  }

  /** kvm_gfn_is_write_tracked(): a gfn's count, by its 4K head (gfnToRmap(..., PG_LEVEL_4K)). */
  writeTrackCount(head4k: number): number {
    this.syncViews();
    return this.track[head4k]!;
  }

  /**
   * update_gfn_write_track(): KVM WARNs and refuses a count that would leave [0, USHRT_MAX];
   * here that is a bug in the model (an unaccount without its account), so it throws.
   */
  updateWriteTrack(head4k: number, delta: number): void {
    this.syncViews();
    const v = this.track[head4k]! + delta;
    if (!(head4k > 0 && head4k < this.headCap) || v < 0 || v > 0xffff) throw new Error(`BUG: gfn_write_track of head ${head4k} would become ${v}`);
    this.track[head4k] = v;
  }

  /** Live memory: 8 bytes per allocated head, 128 per live pte_list_desc, 2 per gfn_write_track (KVM's sizes). */
  bytes(): { heads: number; descs: number; track: number } {
    return {
      heads: this.ctl[RmapCtl.kRmapCtlHeadsLive]! * kRmapHeadBytes,
      track: this.ctl[RmapCtl.kRmapCtlHeadsLive]! * kWriteTrackBytes,
      descs: this.ctl[RmapCtl.kRmapCtlDescsLive]! * kPteListDescBytes,
    };
  }

  /** Word index of a head; an index outside the heads would read undefined and corrupt silently. */
  private headWord(head: number): number {
    if (!(head > 0 && head < this.headCap)) fail('EINVAL', `rmap: head ${head} is outside the ${this.headCap}-head arena`);
    return head * RmapHead.kRmapHeadWords;
  }
}

/**
 * struct rmap_iterator with rmap_get_first()/rmap_get_next(), reused across walks (allocate one
 * per thread). Like for_each_rmap_spte it is not safe against mutation of the walked head: KVM's
 * loops either only modify the SPTEs (rmap_write_protect, __rmap_clear_dirty, kvm_age_rmap), or
 * clear them all and destroy() the list (kvm_zap_all_rmap_sptes), or remove one entry and begin()
 * again (kvm_set_pte_rmap's "goto restart" after kvm_zap_one_rmap_spte). Entries come head
 * descriptor first; begin() after a remove() finds the survivors, each exactly once.
 */
export class RmapIterator {
  private desc = 0;
  private pos = 0;
  private dw: Int32Array;

  constructor(readonly arena: RmapArena) {
    this.dw = arena.descs;
  }

  /** rmap_get_first(): the first sptep of the head, or 0 if the rmap is empty. */
  begin(head: number): number {
    const a = this.arena;
    a.syncViews();
    if (!(head > 0 && head < a.heads.length / RmapHead.kRmapHeadWords)) fail('EINVAL', `rmap: head ${head} is outside the arena`);
    const h = head * RmapHead.kRmapHeadWords;
    const ptr = a.heads[h + RmapHead.kRmapHeadPtr]!;
    if (ptr === 0 || (a.heads[h + RmapHead.kRmapHeadTag]! & RmapHead.KVM_RMAP_MANY) === 0) {
      this.desc = 0;
      return ptr;
    }
    this.dw = a.descs;
    this.desc = ptr;
    this.pos = 0;
    return this.dw[ptr * PteListDesc.kDescWords + PteListDesc.kDescSptes]!;
  }

  /** rmap_get_next(): the next sptep, or 0 at the end. */
  next(): number {
    let d = this.desc;
    if (d === 0) return 0;
    const dw = this.dw;
    const b = d * PteListDesc.kDescWords;
    if (++this.pos < dw[b + PteListDesc.kDescSpteCount]!) return dw[b + PteListDesc.kDescSptes + this.pos]!;
    d = dw[b + PteListDesc.kDescMore]!;
    this.desc = d;
    if (d === 0) return 0;
    this.pos = 0;
    // A tail descriptor is full, so sptes[0] is never 0.
    return dw[d * PteListDesc.kDescWords + PteListDesc.kDescSptes]!;
  }
}
