/**
 * The shadow MMU's struct kvm_mmu_page: per page-table page of the VM's pool, the role and gfn of
 * the guest table it shadows (or, for a direct page, the gfn range it maps), its link in
 * kvm->arch.mmu_page_hash (4096 buckets, KVM_MMU_HASH_SHIFT 12) and on active_mmu_pages, its
 * parent SPTE, root count and write_flooding_count; plus sp->shadowed_translation, the gfn each
 * leaf SPTE maps (needed to find the rmap when the guest PTE it came from has changed since).
 *
 * Every word here is written with mmu_lock held for write (the shadow MMU never runs under the
 * read lock), so plain accesses suffice: the lock's Atomics order them between threads. The
 * views grow with the pool (refresh(), called from Vm.refreshPool()).
 */
import { allocGrowableSab, allocSab, growSab } from '../../../shm/arena.js';
import { kPtPoolMaxPages } from '../tdp/pt-pages.js';
import { PtLayout } from '../spte.js';

/** union kvm_mmu_page_role, the bits this model uses. */
export const enum SpRole {
  kLevelMask = 0xf,
  /** role.direct: maps a gfn range itself (a guest huge page mapped small), shadows no guest table. */
  kDirect = 1 << 4,
  /** role.guest_mode: a page of an L2 (nested) root. */
  kGuestMode = 1 << 5,
  /** role.invalid: zapped while still a vCPU's root. */
  kInvalid = 1 << 6,
}

export const enum SpInfo {
  kRole = 0,
  kGfn = 1,
  kHashNext = 2,
  kListPrev = 3,
  kListNext = 4,
  /** The one parent SPTE (sptep), 0 for a root or an unlinked page (KVM keeps a pte_list; see kParents). */
  kParent = 5,
  /** Parent SPTEs beyond the first (guest tables referenced twice), kept in kParentsOverflow. */
  kParents = 6,
  kFlood = 7,
  kRootCount = 8,
  /** 1 while on active_mmu_pages (0 once zapped). */
  kActive = 9,
  kWords = 10,
}

/** KVM_NUM_MMU_PAGES: 1 << KVM_MMU_HASH_SHIFT */
export const kMmuHashBuckets = 4096;

export const enum ShadowCtl {
  kHashBase = 0,
  kListHead = kMmuHashBuckets,
  kListTail = kMmuHashBuckets + 1,
  /** kvm->arch.n_used_mmu_pages */
  kUsedPages = kMmuHashBuckets + 2,
  /** kvm->arch.indirect_shadow_pages */
  kIndirectPages = kMmuHashBuckets + 3,
  /** VM stats the shadow MMU drives (u32 here; read with Atomics by readers outside the lock). */
  kStatShadowZapped = kMmuHashBuckets + 4,
  kStatPteWrite = kMmuHashBuckets + 5,
  kStatPdeZapped = kMmuHashBuckets + 6,
  kStatFlooded = kMmuHashBuckets + 7,
  kStatRecycled = kMmuHashBuckets + 8,
  kStatCacheMiss = kMmuHashBuckets + 9,
  kStatUnsync = kMmuHashBuckets + 10,
  kStatMaxRmapSize = kMmuHashBuckets + 11,
  kStatMaxHashCollisions = kMmuHashBuckets + 12,
  /**
   * kvm->arch.shadow_root_allocated: 0 until the first shadow root exists; with lazy rmaps the
   * rmaps are allocated first and this is published after (smp_store_release in
   * mmu_first_shadow_root_alloc(), paired with kvm_shadow_root_allocated()'s smp_load_acquire).
   */
  kShadowRootAllocated = kMmuHashBuckets + 13,
  /** kvm_memslots_have_rmaps(): 1 once every memslot has rmaps (eager: at creation). */
  kMemslotsHaveRmaps = kMmuHashBuckets + 14,
  /** Extra parent SPTEs: count, then (sp, sptep) pairs (rare: a guest table linked twice). */
  kParentsOverflowCount = kMmuHashBuckets + 15,
  /** The lazy rmap allocation's spike (mmu_first_shadow_root_alloc): modeled and wall µs, KiB allocated. */
  kRmapAllocModeledUs = kMmuHashBuckets + 16,
  kRmapAllocWallUs = kMmuHashBuckets + 17,
  kRmapAllocKiB = kMmuHashBuckets + 18,
  /**
   * Pool pages sp->shadowed_translation covers: 0 until the first shadow page (KVM allocates it
   * per indirect shadow page; a TDP VM without a nested guest has none), then grown by link()
   * under mmu_lock for write. The pair: growXlat()'s Atomics.store after the SAB grew /
   * syncXlat()'s Atomics.load before a view covering it is made.
   */
  kXlatPages = kMmuHashBuckets + 19,
  kParentsOverflow = kMmuHashBuckets + 24,
  kParentsOverflowMax = 1024,
  /** Pages per mmu_page_hash bucket: the length of the walk mmu_try_to_unsync_pages() prices. */
  kHashLenBase = kMmuHashBuckets + 24 + 2 * 1024,
  kWords = 2 * kMmuHashBuckets + 24 + 2 * 1024,
}

export interface ShadowMmuHandle {
  readonly info: SharedArrayBuffer;
  readonly xlat: SharedArrayBuffer;
  readonly ctl: SharedArrayBuffer;
}

/** One thread's view of a VM's shadow-MMU page metadata. */
export class ShadowPages {
  info!: Int32Array;
  /**
   * shadowed_translation: the gfn of every SPTE of a shadow page (pool SPTE number page * 512 +
   * index); read and written through xlatGfn()/setXlat(), which re-view it when it grew.
   */
  xlat: Int32Array = new Int32Array(0);
  readonly ctl: Int32Array;
  capacity = 0;

  constructor(readonly handle: ShadowMmuHandle) {
    this.ctl = new Int32Array(handle.ctl);
    this.refresh();
  }

  static createHandle(poolPages: number): ShadowMmuHandle {
    const max = kPtPoolMaxPages;
    return {
      info: allocGrowableSab(poolPages * SpInfo.kWords * 4, max * SpInfo.kWords * 4),
      xlat: allocGrowableSab(0, max * PtLayout.SPTE_ENT_PER_PAGE * 4),
      ctl: allocSab(ShadowCtl.kWords * 4),
    };
  }

  /**
   * Grow with the pool (the VMM thread, inside the pool's growth protocol, before pages are
   * handed out): the per-page words only. shadowed_translation (2 KiB per pool page, ~4 B per
   * guest page mapped at 4K) waits for the first shadow page: link() grows it.
   */
  grow(poolPages: number): void {
    if (this.handle.info.byteLength < poolPages * SpInfo.kWords * 4) growSab(this.handle.info, poolPages * SpInfo.kWords * 4);
    this.refresh();
  }

  refresh(): void {
    const h = this.handle;
    this.capacity = h.info.byteLength / (SpInfo.kWords * 4);
    this.info = new Int32Array(h.info, 0, this.capacity * SpInfo.kWords);
    this.syncXlat();
  }

  /** Re-view shadowed_translation if another thread grew it (the observe half of kXlatPages). */
  syncXlat(): void {
    const pages = Atomics.load(this.ctl, ShadowCtl.kXlatPages);
    if (pages * PtLayout.SPTE_ENT_PER_PAGE !== this.xlat.length) this.xlat = new Int32Array(this.handle.xlat, 0, pages * PtLayout.SPTE_ENT_PER_PAGE);
  }

  /** Cover pool pages [0, need) (mmu_lock held for write: the only grower), with the pool's capacity as headroom. */
  private growXlat(need: number): void {
    this.syncXlat();
    if (need * PtLayout.SPTE_ENT_PER_PAGE <= this.xlat.length) return;
    const to = Math.max(need, this.capacity);
    growSab(this.handle.xlat, to * PtLayout.SPTE_ENT_PER_PAGE * 4);
    Atomics.store(this.ctl, ShadowCtl.kXlatPages, to);
    this.syncXlat();
  }

  /** sp->shadowed_translation[index] of the SPTE `sptep` (a leaf of a linked shadow page). */
  xlatGfn(sptep: number): number {
    if (sptep >= this.xlat.length) this.syncXlat();
    return this.xlat[sptep]!;
  }
  setXlat(sptep: number, gfn: number): void {
    if (sptep >= this.xlat.length) this.syncXlat();
    this.xlat[sptep] = gfn;
  }

  role(sp: number): number {
    return this.info[sp * SpInfo.kWords + SpInfo.kRole]!;
  }
  level(sp: number): number {
    return this.info[sp * SpInfo.kWords + SpInfo.kRole]! & SpRole.kLevelMask;
  }
  gfn(sp: number): number {
    return this.info[sp * SpInfo.kWords + SpInfo.kGfn]!;
  }
  get(sp: number, word: number): number {
    return this.info[sp * SpInfo.kWords + word]!;
  }
  set(sp: number, word: number, v: number): void {
    this.info[sp * SpInfo.kWords + word] = v;
  }

  /** kvm_page_table_hashfn() */
  static bucket(gfn: number): number {
    // hash_64(gfn, KVM_MMU_HASH_SHIFT): a multiplicative hash; Math.imul keeps it in 32 bits.
    return Math.imul(gfn, 0x9e3779b1) >>> (32 - 12);
  }

  /** Link a new page into its gfn's hash bucket and at the head of active_mmu_pages. */
  link(sp: number, gfn: number, role: number): void {
    if ((sp + 1) * PtLayout.SPTE_ENT_PER_PAGE > this.xlat.length) this.growXlat(sp + 1);
    const c = this.ctl;
    const b = ShadowCtl.kHashBase + ShadowPages.bucket(gfn);
    const base = sp * SpInfo.kWords;
    const info = this.info;
    info[base + SpInfo.kRole] = role;
    info[base + SpInfo.kGfn] = gfn;
    info[base + SpInfo.kHashNext] = c[b]!;
    c[b] = sp;
    c[b - ShadowCtl.kHashBase + ShadowCtl.kHashLenBase]!++;
    const head = c[ShadowCtl.kListHead]!;
    info[base + SpInfo.kListPrev] = 0;
    info[base + SpInfo.kListNext] = head;
    if (head !== 0) info[head * SpInfo.kWords + SpInfo.kListPrev] = sp;
    else c[ShadowCtl.kListTail] = sp;
    c[ShadowCtl.kListHead] = sp;
    info[base + SpInfo.kParent] = 0;
    info[base + SpInfo.kParents] = 0;
    info[base + SpInfo.kFlood] = 0;
    info[base + SpInfo.kRootCount] = 0;
    info[base + SpInfo.kActive] = 1;
    c[ShadowCtl.kUsedPages]!++;
  }

  /** Take a zapped page off its hash chain and active_mmu_pages (kvm_mmu_prepare_zap_page's unlinks). */
  unlink(sp: number): void {
    const c = this.ctl;
    const info = this.info;
    const base = sp * SpInfo.kWords;
    const b = ShadowCtl.kHashBase + ShadowPages.bucket(info[base + SpInfo.kGfn]!);
    let prev = 0;
    for (let p = c[b]!; p !== 0; p = info[p * SpInfo.kWords + SpInfo.kHashNext]!) {
      if (p === sp) {
        const next = info[base + SpInfo.kHashNext]!;
        if (prev === 0) c[b] = next;
        else info[prev * SpInfo.kWords + SpInfo.kHashNext] = next;
        c[b - ShadowCtl.kHashBase + ShadowCtl.kHashLenBase]!--;
        break;
      }
      prev = p;
    }
    const lp = info[base + SpInfo.kListPrev]!;
    const ln = info[base + SpInfo.kListNext]!;
    if (lp !== 0) info[lp * SpInfo.kWords + SpInfo.kListNext] = ln;
    else c[ShadowCtl.kListHead] = ln;
    if (ln !== 0) info[ln * SpInfo.kWords + SpInfo.kListPrev] = lp;
    else c[ShadowCtl.kListTail] = lp;
    info[base + SpInfo.kActive] = 0;
    info[base + SpInfo.kHashNext] = 0;
    c[ShadowCtl.kUsedPages]!--;
  }

  /** First page of a bucket (for_each_valid_sp). */
  bucketHead(gfn: number): number {
    return this.ctl[ShadowCtl.kHashBase + ShadowPages.bucket(gfn)]!;
  }
  /** Pages in gfn's bucket (what a for_each_valid_sp walk of it examines). */
  bucketLength(gfn: number): number {
    return this.ctl[ShadowCtl.kHashLenBase + ShadowPages.bucket(gfn)]!;
  }
  hashNext(sp: number): number {
    return this.info[sp * SpInfo.kWords + SpInfo.kHashNext]!;
  }

  /** Record an extra parent SPTE of `sp` (mmu_page_add_parent_pte past the first). */
  addParent(sp: number, sptep: number): void {
    const base = sp * SpInfo.kWords;
    if (this.info[base + SpInfo.kParent] === 0) {
      this.info[base + SpInfo.kParent] = sptep;
      return;
    }
    const c = this.ctl;
    const n = c[ShadowCtl.kParentsOverflowCount]!;
    if (n >= ShadowCtl.kParentsOverflowMax) throw new Error(`shadow MMU: more than ${ShadowCtl.kParentsOverflowMax} extra parent SPTEs`);
    c[ShadowCtl.kParentsOverflow + 2 * n] = sp;
    c[ShadowCtl.kParentsOverflow + 2 * n + 1] = sptep;
    c[ShadowCtl.kParentsOverflowCount] = n + 1;
    this.info[base + SpInfo.kParents]!++;
  }

  /** mmu_page_remove_parent_pte() */
  removeParent(sp: number, sptep: number): void {
    const base = sp * SpInfo.kWords;
    const info = this.info;
    const c = this.ctl;
    if (info[base + SpInfo.kParent] === sptep) {
      info[base + SpInfo.kParent] = 0;
      if (info[base + SpInfo.kParents] === 0) return;
      // Promote one overflow entry.
      const n = c[ShadowCtl.kParentsOverflowCount]!;
      for (let i = 0; i < n; i++) {
        if (c[ShadowCtl.kParentsOverflow + 2 * i] !== sp) continue;
        info[base + SpInfo.kParent] = c[ShadowCtl.kParentsOverflow + 2 * i + 1]!;
        this.dropOverflow(i);
        info[base + SpInfo.kParents]!--;
        return;
      }
      throw new Error(`shadow MMU: sp ${sp} lost an overflow parent`);
    }
    const n = c[ShadowCtl.kParentsOverflowCount]!;
    for (let i = 0; i < n; i++) {
      if (c[ShadowCtl.kParentsOverflow + 2 * i] === sp && c[ShadowCtl.kParentsOverflow + 2 * i + 1] === sptep) {
        this.dropOverflow(i);
        info[base + SpInfo.kParents]!--;
        return;
      }
    }
    throw new Error(`BUG: shadow MMU: sptep ${sptep} is no parent of sp ${sp}`);
  }

  private dropOverflow(i: number): void {
    const c = this.ctl;
    const n = c[ShadowCtl.kParentsOverflowCount]! - 1;
    c[ShadowCtl.kParentsOverflow + 2 * i] = c[ShadowCtl.kParentsOverflow + 2 * n]!;
    c[ShadowCtl.kParentsOverflow + 2 * i + 1] = c[ShadowCtl.kParentsOverflow + 2 * n + 1]!;
    c[ShadowCtl.kParentsOverflowCount] = n;
  }

  /** Every parent SPTE of sp into `out` (cold: zap). */
  parents(sp: number, out: number[]): void {
    out.length = 0;
    const p = this.info[sp * SpInfo.kWords + SpInfo.kParent]!;
    if (p !== 0) out.push(p);
    if (this.info[sp * SpInfo.kWords + SpInfo.kParents] === 0) return;
    const c = this.ctl;
    const n = c[ShadowCtl.kParentsOverflowCount]!;
    for (let i = 0; i < n; i++) if (c[ShadowCtl.kParentsOverflow + 2 * i] === sp) out.push(c[ShadowCtl.kParentsOverflow + 2 * i + 1]!);
  }

  stat(word: number): number {
    return Atomics.load(this.ctl, word);
  }
  bumpStat(word: number, n = 1): void {
    // Under mmu_lock for write; Atomics so a stats read from another thread is tear-free.
    Atomics.add(this.ctl, word, n);
  }
  peakStat(word: number, v: number): void {
    if (v > this.ctl[word]!) Atomics.store(this.ctl, word, v);
  }

  /** Bytes of kvm_mmu_page structs live (KVM's struct is ~184 bytes; the harness's metadata is SpInfo). */
  usedPages(): number {
    return Atomics.load(this.ctl, ShadowCtl.kUsedPages);
  }
}
