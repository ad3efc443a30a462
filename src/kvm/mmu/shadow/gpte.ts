/**
 * The guest's x86-64 PTE (a "gpte" in paging_tmpl.h): what the guest writes into its own page
 * tables and what KVM's walker reads. The architecture's 64-bit entry is two Int32 words here:
 *
 *   lo  bits 0..11 flags (P 0, RW 1, US 2, A 5, D 6, PS 7; 9..11 are ignored by the CPU and
 *       carry the write generation below) | physical address bits 12..31
 *   hi  physical address bits 32..51 | bits 20..30: the write generation (PTE bits 52..62,
 *       ignored by the CPU) | bit 31 would be NX (unused)
 *
 * so for gfn < 2^32, lo = gfn << 12 | flags and hi = gfn >>> 20.
 *
 * The guest stores a PTE as one 64-bit unit; with two words the writer/reader pair is:
 *   writer (writeGuestPte): a new present PTE stores hi, then lo (lo carries P); changing a
 *     present PTE first stores lo not-present, then hi, then the new lo; all Atomics.store.
 *   reader (readGuestPte): Atomics.load lo; if present, Atomics.load hi, then lo again and hi
 *     again, and retry if either changed.
 * Re-checking lo alone cannot see lo go A -> B -> A between its two loads: the reader pairs A's
 * lo with B's hi, a value that never existed (the ABA the SPTE test caught in the TDP walker, and
 * the race test here caught tens of times a run). So every write advances a generation counter
 * kept in bits the CPU ignores: its low 11 bits in PTE bits 52..62 (hi bits 20..30; no
 * protection keys are modelled) and its low 3 bits in bits 9..11 of lo, both kept across the
 * not-present step. A torn pair then needs 2048 rewrites of one PTE between the reader's loads
 * (as the SPTE's 13-bit pfn generation bounds its ABA). A/D updates (KVM's FNAME(cmpxchg_gpte),
 * the CPU's locked OR) are compareExchange on lo; the caller re-checks hi after it succeeds.
 */

export const GPT_P = 1 << 0;
export const GPT_RW = 1 << 1;
export const GPT_US = 1 << 2;
export const GPT_A = 1 << 5;
export const GPT_D = 1 << 6;
/** PS: a 2M leaf in a PDE, a 1G leaf in a PDPTE; reserved in a PML4E. */
export const GPT_PS = 1 << 7;
/** lo bits 9..11 (ignored by the CPU): the write generation's low 3 bits. */
export const GPT_GEN_MASK = 0x7 << 9;
/** hi bits 20..30 (PTE bits 52..62, ignored by the CPU): the write generation's low 11 bits. */
export const GPT_HI_GEN_MASK = 0x7ff << 20;
const kGptHiGenShift = 20;
const kGptGenShift = 9;
const kGptFlagsMask = 0xfff;

/** Int32 words per guest PTE and per guest page-table page (512 entries). */
export const kGpteWords = 2;
export const kGptPageWords = 1024;

/** lo word of a PTE mapping gfn with `flags` (bits 0..11). */
export function gptLo(gfn: number, flags: number): number {
  return (gfn << 12) | (flags & kGptFlagsMask);
}
/** hi word of a PTE mapping gfn. */
export function gptHi(gfn: number): number {
  return gfn >>> 20;
}
/** The gfn a PTE's address field names (before a huge leaf's low bits are masked). */
export function gptGfn(lo: number, hi: number): number {
  return (hi & 0xfffff) * 0x100000 + (lo >>> 12);
}
export function isPresentGpte(lo: number): boolean {
  return (lo & GPT_P) !== 0;
}

/** A reader's snapshot of one PTE (reused by its owner: reads allocate nothing). */
export class GpteSnapshot {
  lo = 0;
  hi = 0;
}

/**
 * Read entry `idx` of the table whose content starts at word `off` (reader side of the pair
 * above). A not-present entry's other bits mean nothing to a walker: hi reads as 0 then.
 */
export function readGuestPte(words: Int32Array, off: number, idx: number, snap: GpteSnapshot): number {
  const p = off + idx * kGpteWords;
  for (;;) {
    const lo = Atomics.load(words, p);
    if ((lo & GPT_P) === 0) {
      snap.lo = lo;
      snap.hi = 0;
      return lo;
    }
    const hi = Atomics.load(words, p + 1);
    // Rewritten under us (lo or hi moved): read it again.
    if (Atomics.load(words, p) !== lo || Atomics.load(words, p + 1) !== hi) continue;
    snap.lo = lo;
    snap.hi = hi;
    return lo;
  }
}

/**
 * The guest's store of entry `idx` (writer side of the pair above); the generation bits of `lo`
 * and `hi` are replaced by the entry's next generation. Writers of one PTE are serialized by the guest (its own
 * page-table lock); KVM's concurrent A/D cmpxchg fails against the not-present step and retries
 * its walk, as it would against the guest's 64-bit store.
 */
export function writeGuestPte(words: Int32Array, off: number, idx: number, lo: number, hi: number): void {
  const p = off + idx * kGpteWords;
  const old = Atomics.load(words, p);
  const gen = ((Atomics.load(words, p + 1) >>> kGptHiGenShift) + 1) & 0x7ff;
  if ((old & GPT_P) !== 0) Atomics.store(words, p, old & GPT_GEN_MASK);
  Atomics.store(words, p + 1, (hi & ~GPT_HI_GEN_MASK) | (gen << kGptHiGenShift));
  Atomics.store(words, p, (lo & ~GPT_GEN_MASK) | ((gen & 7) << kGptGenShift));
}

/**
 * Guest memory as the page-table builder and KVM's walker see it: 4 KiB of content per gfn, in
 * one Int32Array of words. The lead wires it to the memslots (gfn -> hva -> pfn) and PageContent.
 */
export interface GuestPtMemory {
  /**
   * Word offset of gfn's content in words(), or -1: no content (the page reads as zero) or no
   * memslot. Never creates content: the walker's read through the hva (__get_user).
   */
  gfnContent(gfn: number): number;
  /** Word offset of gfn's content, creating it (the VMM's store touches the page); -1: no memslot. */
  contentOfGfn(gfn: number): number;
  /** The current view: re-read after each call above (the store may have grown). */
  words(): Int32Array;
}
