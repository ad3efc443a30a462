/**
 * KVM's walk of the guest's own page tables (paging_tmpl.h, PTTYPE 64, 4-level): what the
 * shadow MMU does on a guest page fault before it can shadow anything. FNAME(walk_addr_generic)
 * reads one gpte per level from CR3 down, accumulating the access rights, stops at a leaf (a 4K
 * PTE, or PS in a PDE/PDPTE), checks the permission, and then
 * FNAME(update_accessed_dirty_bits) sets A in every level's entry and D in the leaf on a write,
 * each with FNAME(cmpxchg_gpte); a lost cmpxchg (the guest changed the PTE under the walk)
 * restarts the walk (retry_walk).
 *
 * The walker records per level the table's gfn and the index used (walker->table_gfn[],
 * walker->pte_gpa[]) and the entry read (walker->ptes[]), indexed [level - 1] as KVM does, so the
 * shadow MMU can key shadow pages by (table gfn, role level) and re-check a gpte before it
 * installs a shadow entry (FNAME(gpte_changed): guestPteChanged()).
 *
 * Modelled: CR0.WP = 1 (a write through a non-RW entry faults at any privilege), no SMEP/SMAP,
 * no NX (no instruction fetches), no protection keys. Reserved bits: PS in a PML4E only.
 * gva is a page number below 2^32 (a 16 TiB virtual range: PML4 slots 0..31).
 */
import { GPT_A, GPT_D, GPT_P, GPT_PS, GPT_RW, GpteSnapshot, cmpxchgGuestPte, gptGfn, readGuestPte, type GuestPtMemory } from './gpte.js';

export const enum GuestWalkResult {
  kGuestWalkOk = 0,
  /** A level's entry is not present (out.faultLevel names it), or its table is not guest memory. */
  kGuestWalkNotPresent = 1,
  /** A write through an entry without RW at some level (out.faultLevel: the leaf level). */
  kGuestWalkProtection = 2,
  /** A reserved bit is set (PS in a PML4E): PFERR_RSVD_MASK. */
  kGuestWalkReserved = 3,
}

/** x86 page-fault error code bits (walker->fault.error_code), as KVM's PFERR_*_MASK. */
export const enum Pferr {
  PFERR_PRESENT_MASK = 1 << 0,
  PFERR_WRITE_MASK = 1 << 1,
  PFERR_USER_MASK = 1 << 2,
  PFERR_RSVD_MASK = 1 << 3,
}

export const kGuestRootLevel = 4;
/** Internal: a lost A/D cmpxchg, walk again. */
const kRetryWalk = -1;

/** struct guest_walker: one per vCPU, reused by every walk (a walk allocates nothing). */
export class GuestWalk {
  gva = 0;
  /** The gfn gva maps to (the leaf's frame plus gva's offset inside a huge leaf). */
  gfn = 0;
  /** Leaf level: 1 a 4K PTE, 2 a 2M PDE, 3 a 1G PDPTE (walker->level). 0 after a fault. */
  level = 0;
  /** The level whose entry faulted (not present / reserved), or the leaf level (protection). */
  faultLevel = 0;
  /** walker->fault.error_code on a fault, 0 on success. */
  errorCode = 0;
  /** RW in every level and, after FNAME(protect_clean_gpte), D in the leaf: a shadow entry may be writable. */
  writable = false;
  /** Guest PTE reads (Atomics loads of lo) of this call, over every retry. */
  reads = 0;
  /** Successful A/D cmpxchgs of this call. */
  adUpdates = 0;
  /** Walks restarted after a lost cmpxchg. */
  retries = 0;
  /** Bit `level` set for each level whose entry this call updated: mark_page_dirty(table_gfn). */
  adLevels = 0;
  /** walker->table_gfn[level - 1]: the guest table walked at each level (levels >= level). */
  readonly tableGfn = new Float64Array(kGuestRootLevel);
  /** The entry's index in that table (pte_gpa = table_gfn << 12 | index * 8). */
  readonly index = new Int32Array(kGuestRootLevel);
  /** walker->ptes[level - 1]: the entry read, lo (after A/D updates) and hi words (with generation bits). */
  readonly pteLo = new Int32Array(kGuestRootLevel);
  readonly pteHi = new Int32Array(kGuestRootLevel);
  /** The reader's snapshot (internal scratch). */
  readonly snap = new GpteSnapshot();
}

/**
 * FNAME(walk_addr_generic) for gva (a page number) from the PML4 at cr3Gfn. Returns a
 * GuestWalkResult; `out` holds the walk either way. A faulting walk updates no A/D bit, as KVM
 * checks permissions before update_accessed_dirty_bits.
 */
export function guestWalk(out: GuestWalk, mem: GuestPtMemory, cr3Gfn: number, gva: number, write: boolean): number {
  out.gva = gva;
  out.reads = 0;
  out.adUpdates = 0;
  out.retries = 0;
  out.adLevels = 0;
  for (;;) {
    const r = walkOnce(out, mem, cr3Gfn, gva, write);
    if (r !== kRetryWalk) return r;
    out.retries++;
  }
}

function walkOnce(out: GuestWalk, mem: GuestPtMemory, cr3Gfn: number, gva: number, write: boolean): number {
  let tableGfn = cr3Gfn;
  let ptWrite = GPT_RW;
  out.level = 0;
  out.errorCode = 0;
  let level = kGuestRootLevel;
  let lo = 0;
  let hi = 0;
  for (;; level--) {
    const idx = (gva >>> ((level - 1) * 9)) & 511;
    out.tableGfn[level - 1] = tableGfn;
    out.index[level - 1] = idx;
    const off = mem.gfnContent(tableGfn);
    out.reads++;
    // A table without content reads as zero: not present, like a table outside guest memory
    // (KVM: kvm_is_error_hva(host_addr) -> error).
    lo = off < 0 ? 0 : readGuestPte(mem.words(), off, idx, out.snap);
    hi = off < 0 ? 0 : out.snap.hi;
    out.pteLo[level - 1] = lo;
    out.pteHi[level - 1] = hi;
    if ((lo & GPT_P) === 0) return fault(out, GuestWalkResult.kGuestWalkNotPresent, level, write ? Pferr.PFERR_WRITE_MASK : 0);
    if (level === kGuestRootLevel && (lo & GPT_PS) !== 0) {
      return fault(out, GuestWalkResult.kGuestWalkReserved, level, Pferr.PFERR_PRESENT_MASK | Pferr.PFERR_RSVD_MASK | (write ? Pferr.PFERR_WRITE_MASK : 0));
    }
    ptWrite &= lo; // pt_access &= pte_access (RW only: no NX, US is not checked)
    if (level === 1 || (lo & GPT_PS) !== 0) break; // FNAME(is_last_gpte)
    tableGfn = gptGfn(lo, hi);
  }
  if (write && (ptWrite & GPT_RW) === 0) {
    return fault(out, GuestWalkResult.kGuestWalkProtection, level, Pferr.PFERR_PRESENT_MASK | Pferr.PFERR_WRITE_MASK);
  }
  // gpte_to_gfn_lvl(): a huge leaf's address bits below its size are not address (bit 12 is PAT).
  const span = level === 1 ? 1 : level === 2 ? 512 : 262144;
  const base = gptGfn(lo, hi);
  out.gfn = base - (base & (span - 1)) + (gva & (span - 1));
  out.level = level;
  const r = updateAccessedDirtyBits(out, mem, level, write);
  if (r !== GuestWalkResult.kGuestWalkOk) return r;
  // FNAME(protect_clean_gpte): a read maps a clean leaf read-only, so the guest's first write
  // faults and KVM sets D.
  out.writable = (ptWrite & GPT_RW) !== 0 && (out.pteLo[level - 1]! & GPT_D) !== 0;
  return GuestWalkResult.kGuestWalkOk;
}

function fault(out: GuestWalk, result: number, level: number, errorCode: number): number {
  out.faultLevel = level;
  out.errorCode = errorCode;
  out.level = 0;
  out.writable = false;
  return result;
}

/**
 * FNAME(update_accessed_dirty_bits): from the root down to the leaf, A where clear and, on a
 * write, D in the leaf, one cmpxchg per entry that changes. A failed cmpxchg means the guest
 * rewrote the entry after the walk read it: walk again (the entries already updated keep A).
 */
function updateAccessedDirtyBits(out: GuestWalk, mem: GuestPtMemory, leafLevel: number, write: boolean): number {
  for (let level = kGuestRootLevel; level >= leafLevel; level--) {
    const orig = out.pteLo[level - 1]!;
    let pte = orig | GPT_A;
    if (level === leafLevel && write) pte |= GPT_D;
    if (pte === orig) continue;
    const off = mem.gfnContent(out.tableGfn[level - 1]!);
    if (off < 0) return kRetryWalk; // the table's frame was freed under the walk
    // The whole entry must be what the walk read (a 64-bit cmpxchg, as FNAME(cmpxchg_gpte)).
    if (!cmpxchgGuestPte(mem.words(), off, out.index[level - 1]!, orig, out.pteHi[level - 1]!, pte)) return kRetryWalk;
    out.adUpdates++;
    out.adLevels |= 1 << level;
    out.pteLo[level - 1] = pte;
  }
  return GuestWalkResult.kGuestWalkOk;
}

/**
 * FNAME(gpte_changed): whether the entry the walk read at `level` differs from the guest's
 * table now (the shadow MMU re-checks before installing a shadow entry from a walk done earlier).
 * Counts its read in out.reads.
 */
export function guestPteChanged(out: GuestWalk, mem: GuestPtMemory, level: number): boolean {
  const off = mem.gfnContent(out.tableGfn[level - 1]!);
  out.reads++;
  if (off < 0) return out.pteLo[level - 1] !== 0;
  const lo = readGuestPte(mem.words(), off, out.index[level - 1]!, out.snap);
  return lo !== out.pteLo[level - 1] || ((lo & GPT_P) !== 0 && out.snap.hi !== out.pteHi[level - 1]);
}
