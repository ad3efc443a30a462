/**
 * The VM's memslot sets: KVM's two struct kvm_memslots (kvm->__memslots[as_id][0..1], swapped by
 * kvm_swap_active_memslots()), kept in shared memory so that a vCPU on any worker finds a slot
 * the VMM created while it ran — no re-attach, no message, nothing stopped.
 *
 *   table        growable SAB, one 16-word record per slot (struct kvm_memory_slot), MsRec below
 *   set 0, set 1 SABs of KVM_USER_MEM_SLOTS + 1 Int32: [0] count, [1..count] the records of
 *                address space 0 sorted by base_gfn (KVM's gfn tree); the active set is
 *                kVmMemslotGen & 1
 *   arena        growable SAB holding every slot's lpage_info and dirty bitmap
 *                (kvm_alloc_memslot_metadata()), carved by the VMM thread
 *
 * Readers (any thread): a vCPU takes the active set when it enters the guest after the epoch
 * moved (Vcpu.enterGuest), so every fault of one entry sees one set — the old or the new, never
 * a mix — and binary-searches it (search_memslots()) when its last-used slot misses. The pair:
 * the VMM's plain writes to the inactive set and records, then its seq-cst add of kVmMemslotGen
 * and the epoch advance of synchronizeSrcu(); the vCPU's seq-cst loads of the epoch and then of
 * kVmMemslotGen, then plain reads of that set and its records.
 *
 * Writer (the VMM thread only, as kvm->slots_lock serialises memslot updates): edit the inactive
 * set, swap (the generation add), synchronize SRCU (no vCPU still uses the old set), edit the old
 * set the same way — kvm_activate_memslot(). A change costs O(log n) to find its place plus one
 * copyWithin of the set's tail (at most 32764 Int32 = 128 KiB, a memmove; KVM's rb-tree edit is
 * O(log n)); the record, the metadata and the VMM's own indexes are O(1) in the other slots, and
 * the SRCU wait is O(vCPUs).
 */
import { allocGrowableSab, allocSab, growSab } from '../shm/arena.js';
import { fail } from '../host/errno.js';
import type { Vma } from '../host/mm.js';
import type { GmemFile } from '../gmem/gmem-file.js';
import { KVM_USER_MEM_SLOTS, KVM_ADDRESS_SPACE_NUM, Memslot, dirtyBitmapWords } from './memslot.js';
import { initLpageInfo, lpageCount } from './mmu/lpage.js';
import { PgLevel } from './mmu/spte.js';

/** A slot's record in the table (Int32 words; userspace_addr needs 47 bits: a Float64). */
export const enum MsRec {
  kFlags = 0,
  /** Bumped each time the record is (re)used, so a thread's cached Memslot notices reuse. */
  kSerial = 1,
  /** as_id << 16 | id */
  kSlot = 2,
  kBaseGfn = 3,
  kNpages = 4,
  kVmaId = 5,
  /** Float64 index rec * kF64Words + kUaddrF64 (Int32 words 6 and 7). */
  kUaddrF64 = 3,
  /** Arena offsets (Int32 words) and lengths of lpage_info 2M, 1G and the dirty bitmap. */
  kLpage2m = 8,
  kLpage2mLen = 9,
  kLpage1g = 10,
  kLpage1gLen = 11,
  kBitmap = 12,
  kBitmapWords = 13,
  /** The bound guest_memfd's index in the VM + 1 (0: none), and guest_memfd_offset in pages. */
  kGmem = 14,
  kGmemPgoff = 15,
  /**
   * slot->arch.rmap: the slot's rmapBase + 1 in the VM's RmapArena (0: no rmaps yet). Written
   * with Atomics.store after the heads exist (memslot_rmap_alloc(), eager or on the first shadow
   * root), read with Atomics.load (Vm.slotRmapBase()).
   */
  kRmap = 16,
  /** Word 17 pads the record to whole Float64s. */
  kWords = 18,
  kF64Words = 9,
  kBytes = 72,
}

/** Records: both address spaces full, plus one for the new slot of a move. */
const kMaxRecords = KVM_USER_MEM_SLOTS * KVM_ADDRESS_SPACE_NUM + 1;
/** Arena reservation: the metadata of 2 x 4 TiB at 4K (bitmaps 2 x 128 MiB, lpage_info 2 x 8 MiB). */
const kArenaMaxBytes = 2 ** 30;
/** Arena growth step (bytes), so carving 32764 small slots grows it a few hundred times, not 32764. */
const kArenaGrowBytes = 1 << 20;

export interface MemslotsHandle {
  readonly table: SharedArrayBuffer;
  readonly sets: readonly SharedArrayBuffer[];
  readonly arena: SharedArrayBuffer;
}

export class Memslots {
  /** This thread's views of the table (re-created when a record beyond them shows up). */
  t!: Int32Array;
  tf!: Float64Array;
  private recCap = 0;
  readonly sets: Int32Array[];
  /** This thread's Memslot per record, valid while its serial matches the record's. */
  private readonly cache: (Memslot | undefined)[] = [];

  constructor(readonly handle: MemslotsHandle, private readonly vmaById: (id: number) => Vma | null, private readonly gmemByIndex: (i: number) => GmemFile | null = () => null) {
    this.sets = handle.sets.map((s) => new Int32Array(s));
    this.refresh();
  }

  static createHandle(): MemslotsHandle {
    return {
      table: allocGrowableSab(64 * MsRec.kBytes, kMaxRecords * MsRec.kBytes),
      sets: [allocSab((KVM_USER_MEM_SLOTS + 1) * 4), allocSab((KVM_USER_MEM_SLOTS + 1) * 4)],
      arena: allocGrowableSab(kArenaGrowBytes, kArenaMaxBytes),
    };
  }

  private refresh(): void {
    const table = this.handle.table;
    this.recCap = Math.floor(table.byteLength / MsRec.kBytes);
    this.t = new Int32Array(table, 0, this.recCap * MsRec.kWords);
    this.tf = new Float64Array(table, 0, this.recCap * MsRec.kF64Words);
  }

  /** search_memslots() in `set` (a set of address space 0). */
  search(set: Int32Array, gfn: number): Memslot | null {
    let lo = 1;
    let hi = set[0]!;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const rec = set[mid]!;
      if (rec >= this.recCap) this.refresh();
      const base = this.t[rec * MsRec.kWords + MsRec.kBaseGfn]!;
      if (gfn < base) hi = mid - 1;
      else if (gfn >= base + this.t[rec * MsRec.kWords + MsRec.kNpages]!) lo = mid + 1;
      else return this.slot(rec);
    }
    return null;
  }

  /** This thread's Memslot for record `rec` (built on first use, or after the record's reuse). */
  slot(rec: number): Memslot {
    if (rec >= this.recCap) this.refresh();
    const serial = this.t[rec * MsRec.kWords + MsRec.kSerial]!;
    const c = this.cache[rec];
    if (c !== undefined && c.serial === serial) return c;
    return this.materialize(rec, serial);
  }

  private materialize(rec: number, serial: number): Memslot {
    const t = this.t;
    const r = rec * MsRec.kWords;
    const arena = this.handle.arena;
    const view = (off: number, len: number) => new Int32Array(arena, off * 4, len);
    const vmaId = t[r + MsRec.kVmaId]!;
    const vma = vmaId < 0 ? null : this.vmaById(vmaId);
    if (vmaId >= 0 && vma === null) {
      fail('ENXIO', `memslot ${t[r + MsRec.kSlot]} is backed by VMA ${vmaId}, which this thread has not attached: a worker learns memory mapped during a phase only through a VMA port (Vm.watchVmas(); the Runner passes one to each task)`);
    }
    const slot = new Memslot(
      rec, serial, new Int32Array(this.handle.table, rec * MsRec.kBytes, MsRec.kWords),
      t[r + MsRec.kSlot]! & 0xffff, t[r + MsRec.kSlot]! >>> 16, t[r + MsRec.kBaseGfn]!, t[r + MsRec.kNpages]!,
      this.tf[rec * MsRec.kF64Words + MsRec.kUaddrF64]!,
      [view(t[r + MsRec.kLpage2m]!, t[r + MsRec.kLpage2mLen]!), view(t[r + MsRec.kLpage1g]!, t[r + MsRec.kLpage1gLen]!)],
      view(t[r + MsRec.kBitmap]!, t[r + MsRec.kBitmapWords]!), vma,
      t[r + MsRec.kGmem]! === 0 ? null : this.gmemOrFail(t[r + MsRec.kGmem]! - 1, t[r + MsRec.kSlot]!), t[r + MsRec.kGmemPgoff]!,
    );
    this.cache[rec] = slot;
    return slot;
  }

  private gmemOrFail(i: number, slot: number): GmemFile {
    const g = this.gmemByIndex(i);
    if (g === null) fail('ENXIO', `memslot ${slot} is bound to guest_memfd ${i}, which this thread has not attached: create guest_memfds before the phase's workers attach`);
    return g;
  }

  /** The slots of `set` (address space 0) over gfns [start, end), in gfn order: O(log n + k), any thread. */
  inSetRange(set: Int32Array, start: number, end: number): Memslot[] {
    const out: Memslot[] = [];
    let i = this.setLowerBound(set, start);
    if (i > 1) {
      const r = set[i - 1]! * MsRec.kWords;
      if (this.t[r + MsRec.kBaseGfn]! + this.t[r + MsRec.kNpages]! > start) i--;
    }
    for (; i <= set[0]!; i++) {
      const rec = set[i]!;
      if (rec >= this.recCap) this.refresh();
      if (this.t[rec * MsRec.kWords + MsRec.kBaseGfn]! >= end) break;
      out.push(this.slot(rec));
    }
    return out;
  }

  /** Every slot of `set` (address space 0). */
  all(set: Int32Array): Memslot[] {
    const out: Memslot[] = [];
    for (let i = 1; i <= set[0]!; i++) out.push(this.slot(set[i]!));
    return out;
  }

  // ---- The VMM thread's side (kvm->slots_lock held: one updater at a time). ----

  /** kvm->__memslots' id hash: (as_id << 16 | id) -> slot. */
  readonly byKey = new Map<number, Memslot>();
  /** Each address space's slots in gfn order (the VMM's own search array). */
  readonly sorted: Memslot[][] = Array.from({ length: KVM_ADDRESS_SPACE_NUM }, () => []);
  private readonly freeRecs: number[] = [];
  private nextRec = 0;
  private arenaTop = 0;
  private readonly arenaFree = new Map<number, number[]>();

  /**
   * A new slot's record and metadata (kvm_prepare_memory_region() + kvm_alloc_memslot_metadata()),
   * not yet in any set. lpage_info is computed afresh (its disallow counts depend on base_gfn);
   * the dirty bitmap is zero, or `keptBitmap` (the old slot's, for a move of a logging slot).
   */
  create(
    id: number, asId: number, flags: number, baseGfn: number, npages: number, userspaceAddr: number, vma: Vma | null,
    keptBitmap: Memslot | null, gmem: { index: number; pgoff: number } | null = null,
  ): Memslot {
    let rec = this.freeRecs.pop();
    if (rec === undefined) {
      rec = this.nextRec++;
      if (rec >= this.recCap) {
        growSab(this.handle.table, Math.min(kMaxRecords, Math.max(rec + 1, this.recCap * 2)) * MsRec.kBytes);
        this.refresh();
      }
    }
    const t = this.t;
    const r = rec * MsRec.kWords;
    const ugfn = Math.floor(userspaceAddr / 4096);
    const n2m = lpageCount(baseGfn, npages, PgLevel.PG_LEVEL_2M);
    const n1g = lpageCount(baseGfn, npages, PgLevel.PG_LEVEL_1G);
    const l2m = this.arenaAlloc(n2m);
    const l1g = this.arenaAlloc(n1g);
    const arena = this.handle.arena;
    initLpageInfo(new Int32Array(arena, l2m * 4, n2m), PgLevel.PG_LEVEL_2M, baseGfn, npages, ugfn, gmem?.pgoff ?? null);
    initLpageInfo(new Int32Array(arena, l1g * 4, n1g), PgLevel.PG_LEVEL_1G, baseGfn, npages, ugfn, gmem?.pgoff ?? null);
    const bmWords = dirtyBitmapWords(npages);
    let bm: number;
    if (keptBitmap !== null) {
      bm = this.t[keptBitmap.rec * MsRec.kWords + MsRec.kBitmap]!;
    } else {
      bm = this.arenaAlloc(bmWords);
      new Int32Array(arena, bm * 4, bmWords).fill(0);
    }
    t[r + MsRec.kFlags] = flags;
    t[r + MsRec.kSerial] = (t[r + MsRec.kSerial]! + 1) | 0;
    t[r + MsRec.kSlot] = (asId << 16) | id;
    t[r + MsRec.kBaseGfn] = baseGfn;
    t[r + MsRec.kNpages] = npages;
    t[r + MsRec.kVmaId] = vma === null ? -1 : vma.id;
    this.tf[rec * MsRec.kF64Words + MsRec.kUaddrF64] = userspaceAddr;
    t[r + MsRec.kLpage2m] = l2m;
    t[r + MsRec.kLpage2mLen] = n2m;
    t[r + MsRec.kLpage1g] = l1g;
    t[r + MsRec.kLpage1gLen] = n1g;
    t[r + MsRec.kBitmap] = bm;
    t[r + MsRec.kBitmapWords] = bmWords;
    t[r + MsRec.kGmem] = gmem === null ? 0 : gmem.index + 1;
    t[r + MsRec.kGmemPgoff] = gmem === null ? 0 : gmem.pgoff;
    // A reused record must not carry the old slot's rmaps (freeSlotRmaps cleared them already).
    Atomics.store(t, r + MsRec.kRmap, 0);
    return this.slot(rec);
  }

  /**
   * Give a slot's record and metadata back once it is in no set and SRCU has passed (no reader
   * can reach it). `keepBitmap`: the bitmap went on with the slot's move.
   */
  release(slot: Memslot, keepBitmap: boolean): void {
    const r = slot.rec * MsRec.kWords;
    const t = this.t;
    this.arenaRelease(t[r + MsRec.kLpage2m]!, t[r + MsRec.kLpage2mLen]!);
    this.arenaRelease(t[r + MsRec.kLpage1g]!, t[r + MsRec.kLpage1gLen]!);
    if (!keepBitmap) this.arenaRelease(t[r + MsRec.kBitmap]!, t[r + MsRec.kBitmapWords]!);
    this.cache[slot.rec] = undefined;
    this.freeRecs.push(slot.rec);
  }

  private arenaAlloc(words: number): number {
    const free = this.arenaFree.get(words);
    if (free !== undefined && free.length > 0) return free.pop()!;
    const off = this.arenaTop;
    this.arenaTop += words;
    const arena = this.handle.arena;
    if (this.arenaTop * 4 > arena.byteLength) {
      if (this.arenaTop * 4 > kArenaMaxBytes) fail('ENOMEM', `memslot metadata (lpage_info, dirty bitmaps) would exceed its ${kArenaMaxBytes / 2 ** 20} MiB reservation`);
      growSab(arena, Math.min(kArenaMaxBytes, Math.ceil((this.arenaTop * 4 + arena.byteLength / 2) / kArenaGrowBytes) * kArenaGrowBytes));
    }
    return off;
  }

  private arenaRelease(off: number, words: number): void {
    let free = this.arenaFree.get(words);
    if (free === undefined) this.arenaFree.set(words, (free = []));
    free.push(off);
  }

  /** Bytes the sets hold now (table, sets, arena as grown). */
  bytes(): number {
    return this.handle.table.byteLength + this.handle.sets.reduce((n, s) => n + s.byteLength, 0) + this.handle.arena.byteLength;
  }

  /** The slot of address space `asId` whose range overlaps [baseGfn, baseGfn + npages), if any. */
  overlap(asId: number, baseGfn: number, npages: number, self: Memslot | null): Memslot | null {
    const a = this.sorted[asId]!;
    for (let i = firstEndingAfter(a, baseGfn); i < a.length && a[i]!.baseGfn < baseGfn + npages; i++) if (a[i] !== self) return a[i]!;
    return null;
  }

  /** The slots of address space `asId` over gfns [start, end), in gfn order: O(log n + k). */
  inGfnRange(asId: number, start: number, end: number): Memslot[] {
    const a = this.sorted[asId]!;
    const out: Memslot[] = [];
    for (let i = firstEndingAfter(a, start); i < a.length && a[i]!.baseGfn < end; i++) out.push(a[i]!);
    return out;
  }

  /**
   * The hva side (kvm_for_each_memslot_in_hva_range(), an interval tree in KVM): per VMA, its
   * slots sorted by first VMA page, and the longest slot it ever had, so the slots over pages
   * [first, last) are found by binary search among those starting after first - longest, however
   * many slots the VMA backs. Slots may alias (two over the same pages).
   */
  private readonly byVma = new Map<Vma, { slots: Memslot[]; longest: number }>();

  /** Slots (both address spaces) whose memory overlaps pages [first, last) of `vma`. */
  onVmaPages(vma: Vma, first: number, last: number): Memslot[] {
    const e = this.byVma.get(vma);
    const out: Memslot[] = [];
    if (e === undefined) return out;
    const a = e.slots;
    for (let i = lowerBoundOffset(a, first - e.longest + 1); i < a.length && a[i]!.vmaOffset < last; i++) {
      if (a[i]!.vmaOffset + a[i]!.npages > first) out.push(a[i]!);
    }
    return out;
  }

  private indexVma(slot: Memslot, add: boolean): void {
    if (slot.vma === null) return;
    let e = this.byVma.get(slot.vma);
    if (e === undefined) this.byVma.set(slot.vma, (e = { slots: [], longest: 0 }));
    const a = e.slots;
    let i = lowerBoundOffset(a, slot.vmaOffset);
    if (add) {
      a.splice(i, 0, slot);
      e.longest = Math.max(e.longest, slot.npages);
      return;
    }
    while (i < a.length && a[i] !== slot) i++;
    if (i === a.length) throw new Error(`BUG: memslot ${slot.slotId} missing from its hva index`);
    a.splice(i, 1);
  }

  /** The VMM's id hash and gfn array gain (`add`) or lose a slot. */
  index(slot: Memslot, add: boolean): void {
    const a = this.sorted[slot.asId]!;
    const i = lowerBound(a, slot.baseGfn);
    if (add) {
      a.splice(i, 0, slot);
      this.byKey.set(slot.slotId, slot);
    } else {
      if (a[i] !== slot) throw new Error(`BUG: memslot ${slot.slotId} missing from its gfn index`);
      a.splice(i, 1);
      this.byKey.delete(slot.slotId);
    }
    this.indexVma(slot, add);
  }

  /**
   * kvm_swap_active_memslots() + kvm_activate_memslot(): apply `edit` to the inactive set,
   * make it the active one (the seq-cst add of kVmMemslotGen, which also is the memslot
   * generation MMIO SPTEs carry), `synchronize` (synchronize_srcu: no vCPU uses the old set any
   * more), then apply `edit` to the old set so both are equal again. Returns the new generation.
   */
  publish(vmw: Int32Array, genWord: number, edit: (set: Int32Array) => void, synchronize: () => void): number {
    const gen = Atomics.load(vmw, genWord);
    edit(this.sets[(gen + 1) & 1]!);
    Atomics.add(vmw, genWord, 1);
    synchronize();
    edit(this.sets[gen & 1]!);
    return gen + 1;
  }

  /** Set edits (address space 0): insert, remove, replace a slot by its record. */
  insertInto(set: Int32Array, slot: Memslot): void {
    const n = set[0]!;
    const i = this.setLowerBound(set, slot.baseGfn);
    set.copyWithin(i + 1, i, n + 1);
    set[i] = slot.rec;
    set[0] = n + 1;
  }

  removeFrom(set: Int32Array, slot: Memslot): void {
    const n = set[0]!;
    const i = this.setLowerBound(set, slot.baseGfn);
    if (i > n || set[i] !== slot.rec) throw new Error(`BUG: memslot ${slot.slotId} missing from a memslot set`);
    set.copyWithin(i, i + 1, n + 1);
    set[0] = n - 1;
  }

  /** First position in 1..count whose slot starts at or after gfn (count + 1 if none). */
  private setLowerBound(set: Int32Array, gfn: number): number {
    let lo = 1;
    let hi = set[0]! + 1;
    const t = this.t;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (t[set[mid]! * MsRec.kWords + MsRec.kBaseGfn]! < gfn) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}

/** The first index whose key is at least `x`, in an array sorted by that key (binary search). */
function firstAtOrAbove(a: Memslot[], key: (s: Memslot) => number, x: number): number {
  let lo = 0;
  let hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (key(a[mid]!) < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

const baseGfnOf = (s: Memslot): number => s.baseGfn;
const endGfnOf = (s: Memslot): number => s.endGfn;
const vmaOffsetOf = (s: Memslot): number => s.vmaOffset;

/** The first slot that ends after `gfn` (ranges in one address space are disjoint, so ends are sorted too). */
function firstEndingAfter(a: Memslot[], gfn: number): number {
  return firstAtOrAbove(a, endGfnOf, gfn + 1);
}

/** The first slot whose first VMA page is at or after `page`. */
function lowerBoundOffset(a: Memslot[], page: number): number {
  return firstAtOrAbove(a, vmaOffsetOf, page);
}

function lowerBound(a: Memslot[], gfn: number): number {
  return firstAtOrAbove(a, baseGfnOf, gfn);
}
