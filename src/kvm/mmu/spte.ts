/**
 * SPTEs: KVM's 64-bit x86 (EPT) layout stored as two Int32 words, because BigInt64 Atomics
 * allocate on every call here.
 *
 *   word 0 (flags)  bits 0..11 exactly as KVM's low SPTE bits: R=0 W=1 X=2 (EPT), huge=7
 *                   (PT_PAGE_SIZE_MASK), A=8, D=9 (EPT A/D), MMU-present=11 (SPTE_MMU_PRESENT_MASK);
 *                   KVM's high software bits at (bit - 32): host-writable 57 -> 25,
 *                   MMU-writable 58 -> 26, and bit 63 (SHADOW_NONPRESENT_VALUE) -> 31;
 *                   bits 12..24 hold the pfn generation (below), which has no KVM counterpart.
 *   word 1 (pfn)    the frame for a leaf, the child page-table page for a non-leaf.
 *
 * The flags word is the one CAS'd; the pfn word is written only while the flags word is
 * non-present or frozen, and before the new flags are published. FROZEN_SPTE is
 * SHADOW_NONPRESENT_VALUE | 0x5a0, as in KVM.
 *
 * Memory ordering (ECMAScript's model, which is what arm64 hosts and TurboFan give; x86's TSO
 * would hide the difference). KVM reads an SPTE with one READ_ONCE of 64 bits; here a lockless
 * reader needs two words that belong together:
 *   publish:  cmpxchg(flags -> FROZEN)  ->  Atomics.store(pfn)  ->  Atomics.store/cmpxchg(flags)
 *   observe:  Atomics.load(flags)  ->  Atomics.load(pfn)  ->  Atomics.load(flags) unchanged
 * All of them are seq-cst, so they sit in one total order, and a pfn changes only behind a
 * frozen or non-present flags word. Equal flags loads alone would still admit an ABA — flags A,
 * then B with another pfn, then A again while the reader held B's pfn — so every publish with a
 * new pfn also advances a 13-bit pfn generation in the flags word (withNextPfnGen): a reader
 * whose two flags loads agree read the pfn that belongs to them, unless 8192 pfn changes of that
 * one SPTE fit between two loads a few ns apart. `spteLoadFlags` and `spteReadPfn` are the
 * observe pair; Atomics.load is a plain mov on x86 and an ldar on arm64.
 */
export const enum Spte {
  PT_PRESENT_R = 1 << 0,
  PT_WRITABLE_MASK = 1 << 1,
  PT_EXEC = 1 << 2,
  PT_PAGE_SIZE_MASK = 1 << 7,
  SPTE_ACCESSED = 1 << 8,
  SPTE_DIRTY = 1 << 9,
  /**
   * Not a KVM bit (bit 10 is free in present EPT SPTEs): the harness's record that the fault
   * resolved the gfn as private. A SW-protected VM's SPTEs carry no such marker (TDX keeps private
   * SPTEs in a mirror root); the audit and the store oracle use it to tell a translation made
   * before a conversion from one made after, when in-place conversion keeps the pfn.
   */
  kSptePrivate = 1 << 10,
  SPTE_MMU_PRESENT_MASK = 1 << 11,
  SPTE_HOST_WRITABLE = 1 << 25,
  SPTE_MMU_WRITABLE = 1 << 26,
  SHADOW_NONPRESENT_VALUE = 1 << 31,
  FROZEN_SPTE = Spte.SHADOW_NONPRESENT_VALUE | 0x5a0,
  /** Bits 12..24: the pfn generation, advanced by every publish that changes the pfn word. */
  kSptePfnGenOne = 1 << 12,
  kSptePfnGenMask = 0x1fff << 12,
  /** make_nonleaf_spte(): present, RWX, accessed. */
  kNonLeafFlags = Spte.SPTE_MMU_PRESENT_MASK | Spte.PT_PRESENT_R | Spte.PT_WRITABLE_MASK | Spte.PT_EXEC | Spte.SPTE_ACCESSED,
}

export const enum PgLevel {
  PG_LEVEL_4K = 1,
  PG_LEVEL_2M = 2,
  PG_LEVEL_1G = 3,
  PT64_ROOT_4LEVEL = 4,
}
export const enum PtLayout {
  SPTE_LEVEL_BITS = 9,
  SPTE_ENT_PER_PAGE = 512,
  /** Int32 words per SPTE and per page-table page. */
  kSpteWords = 2,
  kPtPageWords = PtLayout.SPTE_ENT_PER_PAGE * PtLayout.kSpteWords,
}

/**
 * READ_ONCE(*sptep) for the flags word: the observe half of the publish in
 * tdpMmuSetSpteAtomic / tdpMmuIterSetSpte / handle_removed_pt. Seq-cst, so it is also ordered
 * after the reader's epoch publish (the StoreLoad that RCU's rcu_read_lock() gives KVM).
 */
export function spteLoadFlags(pt: Int32Array, sptep: number): number {
  return Atomics.load(pt, sptep);
}

/**
 * The pfn word of an SPTE whose flags word read `flags`, or -1 when the flags moved meanwhile
 * (the caller re-reads): see the ordering note above. Only for present SPTEs that another
 * thread may replace; with mmu_lock held for write no pfn changes under the reader.
 */
export function spteReadPfn(pt: Int32Array, sptep: number, flags: number): number {
  const pfn = Atomics.load(pt, sptep + 1);
  return Atomics.load(pt, sptep) === flags ? pfn : -1;
}

/**
 * `flags` to publish with a new pfn: the pfn generation of `oldFlags` plus one (it wraps). Only
 * present SPTEs carry it: no reader follows a non-present SPTE's pfn word, and those bits belong
 * to the MMIO generation in an MMIO SPTE (mmio.ts).
 */
export function withNextPfnGen(flags: number, oldFlags: number): number {
  if ((flags & Spte.SPTE_MMU_PRESENT_MASK) === 0) return flags;
  return (flags & ~Spte.kSptePfnGenMask) | ((oldFlags + Spte.kSptePfnGenOne) & Spte.kSptePfnGenMask);
}

export function isShadowPresentPte(flags: number): boolean {
  return (flags & Spte.SPTE_MMU_PRESENT_MASK) !== 0;
}
export function isFrozenSpte(flags: number): boolean {
  return flags === Spte.FROZEN_SPTE;
}
export function isLargePte(flags: number): boolean {
  return (flags & Spte.PT_PAGE_SIZE_MASK) !== 0;
}
export function isLastSpte(flags: number, level: number): boolean {
  return level === PgLevel.PG_LEVEL_4K || (flags & Spte.PT_PAGE_SIZE_MASK) !== 0;
}
export function isWritablePte(flags: number): boolean {
  return (flags & Spte.PT_WRITABLE_MASK) !== 0;
}
export function isMmuWritableSpte(flags: number): boolean {
  return (flags & Spte.SPTE_MMU_WRITABLE) !== 0;
}
export function isDirtySpte(flags: number): boolean {
  return (flags & Spte.SPTE_DIRTY) !== 0;
}
export function isAccessedSpte(flags: number): boolean {
  return (flags & Spte.SPTE_ACCESSED) !== 0;
}

/**
 * spte_has_volatile_bits(): bits of a present leaf that another thread may set without
 * mmu_lock. In this model those writers are exactly the vCPUs: fast_page_fault() sets W (with D
 * and A) on an MMU-writable SPTE that lacks W, and the EPT walker sets A on any access and D on
 * a store through a writable SPTE, each with a cmpxchg on the flags word (fast-pf.ts, walk.ts).
 * A/D bits are always enabled here (EPT A/D, no access tracking), so KVM's
 * !spte_ad_enabled() and is_access_track_spte() cases do not arise. A missing A counts as
 * volatile (KVM 6.x did; later kernels tolerate clobbering A): then an SPTE that is not
 * volatile is one no vCPU writes at all, which is what lets its update be a plain store.
 */
export function spteHasVolatileBits(flags: number): boolean {
  if ((flags & (Spte.PT_WRITABLE_MASK | Spte.SPTE_MMU_WRITABLE)) === Spte.SPTE_MMU_WRITABLE) return true;
  if ((flags & Spte.SPTE_ACCESSED) === 0) return true;
  return (flags & (Spte.PT_WRITABLE_MASK | Spte.SPTE_DIRTY)) === Spte.PT_WRITABLE_MASK;
}

/**
 * kvm_tdp_mmu_spte_need_atomic_update() (tdp_iter.h): with mmu_lock held for write, only a
 * present leaf with volatile bits must be changed with an atomic RMW; anything else can take a
 * plain store, since no other thread writes it (non-leaf SPTEs' A bits are set by the CPU, but
 * this model's walker never sets them and KVM does not consume them).
 */
export function kvmTdpMmuSpteNeedAtomicUpdate(flags: number, level: number): boolean {
  return isShadowPresentPte(flags) && isLastSpte(flags, level) && spteHasVolatileBits(flags);
}

/** KVM_PAGES_PER_HPAGE(level) */
export function pagesPerHpage(level: number): number {
  return 1 << ((level - 1) * PtLayout.SPTE_LEVEL_BITS);
}
export function levelShift(level: number): number {
  return (level - 1) * PtLayout.SPTE_LEVEL_BITS;
}
/** SPTE_INDEX(gfn << PAGE_SHIFT, level) */
export function spteIndex(gfn: number, level: number): number {
  return (gfn >>> ((level - 1) * PtLayout.SPTE_LEVEL_BITS)) & (PtLayout.SPTE_ENT_PER_PAGE - 1);
}
/** gfn_round_for_level() */
export function gfnRoundForLevel(gfn: number, level: number): number {
  return gfn & -pagesPerHpage(level);
}
/** Level a folio of `order` can be mapped at (kvm_max_level_for_order). */
export function maxLevelForOrder(order: number): number {
  if (order >= 18) return PgLevel.PG_LEVEL_1G;
  if (order >= 9) return PgLevel.PG_LEVEL_2M;
  return PgLevel.PG_LEVEL_4K;
}


/**
 * make_spte() for a fault: present, RX, accessed (not a prefetch), host-writable when the host
 * mapping is; a writable SPTE also gets MMU-writable and D (spte_shadow_dirty_mask), which is why
 * KVM marks the page dirty in the slot whenever it installs a writable SPTE while logging.
 */
export function makeSpteFlags(level: number, writable: boolean, hostWritable: boolean): number {
  let f = Spte.SPTE_MMU_PRESENT_MASK | Spte.PT_PRESENT_R | Spte.PT_EXEC | Spte.SPTE_ACCESSED;
  if (hostWritable) f |= Spte.SPTE_HOST_WRITABLE;
  if (writable) f |= Spte.PT_WRITABLE_MASK | Spte.SPTE_MMU_WRITABLE | Spte.SPTE_DIRTY;
  if (level > PgLevel.PG_LEVEL_4K) f |= Spte.PT_PAGE_SIZE_MASK;
  return f;
}

/** A leaf's child in a split: same permissions, huge bit only if the child level is huge. */
export function makeSmallSpteFlags(hugeFlags: number, childLevel: number): number {
  return childLevel > PgLevel.PG_LEVEL_4K ? hugeFlags | Spte.PT_PAGE_SIZE_MASK : hugeFlags & ~Spte.PT_PAGE_SIZE_MASK;
}

/** leaf_spte_change_needs_tlb_flush(): losing MMU-writable needs a flush before mmu_lock drops. */
export function leafSpteChangeNeedsTlbFlush(oldFlags: number, newFlags: number): boolean {
  return isMmuWritableSpte(oldFlags) && !isMmuWritableSpte(newFlags);
}

/**
 * check_spte_writable_invariants(): W implies MMU-writable implies host-writable.
 * Returns an error string or null (cheap; used by tests and the audit).
 */
export function checkSpteWritableInvariants(flags: number): string | null {
  if ((flags & Spte.PT_WRITABLE_MASK) && !(flags & Spte.SPTE_MMU_WRITABLE)) return 'writable SPTE without MMU-writable';
  if ((flags & Spte.SPTE_MMU_WRITABLE) && !(flags & Spte.SPTE_HOST_WRITABLE)) return 'MMU-writable SPTE without host-writable';
  return null;
}

/** The SPTE as KVM would hold it in 64 bits (for reports and tests). */
export function spteToU64(flags: number, pfn: number): bigint {
  const lo = BigInt(flags & 0xfff);
  // Bits 44..63 of the u64 carry word bits 12..31 shifted up by 32, less the pfn generation.
  const hi = BigInt(((flags & ~Spte.kSptePfnGenMask) >>> 12) & 0xfffff) << 44n;
  return lo | (BigInt(pfn) << 12n) | hi;
}
