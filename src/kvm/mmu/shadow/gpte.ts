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
 * The guest stores a PTE as one 64-bit unit and the walker reads it as one: readGuestPte,
 * writeGuestPte and cmpxchgGuestPte (A/D, FNAME(cmpxchg_gpte)) are 64-bit Atomics on a
 * BigInt64Array over the same words. (A two-word protocol — lo, hi, lo, hi re-checked, with an
 * 11-bit write generation in ignored bits — still tore under preemption in CI: the generation
 * wrapped while a reader was descheduled between its loads. BigInt atomics allocate, but only the
 * shadow MMU's walk and the guest's page-table stores use them.) Each write still advances the
 * generation in bits the CPU ignores (hi bits 20..30, lo bits 9..11): a record of rewrites.
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
  // One 64-bit atomic load, as the CPU and READ_ONCE read a PTE: no lo/hi pair that never existed
  // together can be seen (a two-word protocol with a generation still tore under preemption: the
  // generation wrapped while the reader was descheduled between its loads).
  const v = Atomics.load(view64(words), (off >>> 1) + idx);
  const lo = Number(BigInt.asIntN(32, v));
  snap.lo = lo;
  snap.hi = (lo & GPT_P) === 0 ? 0 : Number(BigInt.asIntN(32, v >> 32n));
  return lo;
}

/**
 * The guest's store of entry `idx` (writer side): one 64-bit atomic store, the generation bits of
 * `lo` and `hi` replaced by the entry's next generation (kept as a record of rewrites).
 */
export function writeGuestPte(words: Int32Array, off: number, idx: number, lo: number, hi: number): void {
  const p = off + idx * kGpteWords;
  const gen = ((Atomics.load(words, p + 1) >>> kGptHiGenShift) + 1) & 0x7ff;
  const nlo = (lo & ~GPT_GEN_MASK) | ((gen & 7) << kGptGenShift);
  const nhi = (hi & ~GPT_HI_GEN_MASK) | (gen << kGptHiGenShift);
  Atomics.store(view64(words), (off >>> 1) + idx, pack(nlo, nhi));
}

/**
 * FNAME(cmpxchg_gpte): set bits in lo of an entry that still holds (lo, hi), as one 64-bit
 * cmpxchg. False: the guest rewrote the entry since it was read (the walk retries).
 */
export function cmpxchgGuestPte(words: Int32Array, off: number, idx: number, lo: number, hi: number, newLo: number): boolean {
  const want = pack(lo, hi);
  return Atomics.compareExchange(view64(words), (off >>> 1) + idx, want, pack(newLo, hi)) === want;
}

function pack(lo: number, hi: number): bigint {
  return BigInt.asIntN(64, (BigInt(hi) << 32n) | BigInt(lo >>> 0));
}

/** A BigInt64Array over the same memory as `words` (cached for the last view seen: no allocation per call). */
let view64Of: Int32Array | null = null;
let view64Arr: BigInt64Array = new BigInt64Array(0);
function view64(words: Int32Array): BigInt64Array {
  if (words !== view64Of) {
    view64Arr = new BigInt64Array(words.buffer, words.byteOffset, words.length >>> 1);
    view64Of = words;
  }
  return view64Arr;
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
