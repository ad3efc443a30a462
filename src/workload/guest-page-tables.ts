/**
 * The guest's own x86-64 4-level page tables, built by the VMM before the guest runs, as KVM's
 * selftests do (lib/x86/processor.c: virt_pgd_alloc() takes the PML4, __virt_pg_map() walks
 * down creating tables with vm_alloc_page_table() in slot 0 and writes the leaf, virt_map()
 * repeats it per page). Non-leaf entries are P|RW|US; leaves P|RW|US (PS for 2M/1G) with A and D
 * clear: the CPU — here KVM's walker, paging_tmpl.ts — sets them.
 *
 * Speed: a table reached for the first time is filled with plain stores while nothing points
 * at it, and only then linked into its parent with writeGuestPte (the link is the publish; a
 * walker's Atomics.load of the parent's lo is the observe, after which the plain stores are
 * visible). One leaf table is one tight loop of two stores per entry. Entries added to a table
 * that is already linked use writeGuestPte.
 */
import { fail } from '../host/errno.js';
import {
  GPT_P, GPT_PS, GPT_RW, GPT_US, GpteSnapshot, gptGfn, gptHi, gptLo, kGpteWords, readGuestPte, writeGuestPte,
  type GuestPtMemory,
} from '../kvm/mmu/shadow/gpte.js';

export {
  GPT_A, GPT_D, GPT_GEN_MASK, GPT_HI_GEN_MASK, GPT_P, GPT_PS, GPT_RW, GPT_US, GpteSnapshot, gptGfn, gptHi, gptLo, isPresentGpte,
  kGptPageWords, kGpteWords, readGuestPte, writeGuestPte, type GuestPtMemory,
} from '../kvm/mmu/shadow/gpte.js';

/** An identity-style mapping: `pages` pages from gva (a page number) to gfn, with one leaf size. */
export interface GuestMapping {
  gva: number;
  gfn: number;
  pages: number;
  leaf: '4k' | '2m' | '1g';
}

export interface GuestPageTables {
  /** The PML4's gfn: what the vCPU's CR3 holds. */
  cr3Gfn: number;
  /** Page-table pages allocated (PML4 included). */
  ptPages: number;
}

const kNonLeaf = GPT_P | GPT_RW | GPT_US;
const kLeaf = GPT_P | GPT_RW | GPT_US;
/** Pages per gva covered by one table at each level: level-L tables have 512^(L-1)-page entries. */
const kLeafLevel = { '4k': 1, '2m': 2, '1g': 3 } as const;

function leafPages(level: number): number {
  return level === 1 ? 1 : level === 2 ? 512 : 262144;
}

/** EINVAL unless the mappings are well formed, aligned to their leaf size and disjoint in gva. */
function checkMappings(mappings: readonly GuestMapping[]): void {
  for (const m of mappings) {
    const lvl = kLeafLevel[m.leaf];
    if (lvl === undefined) fail('EINVAL', `guest mapping: leaf must be '4k', '2m' or '1g', got ${String(m.leaf)}`);
    for (const [k, v] of [['gva', m.gva], ['gfn', m.gfn], ['pages', m.pages]] as const) {
      if (!Number.isInteger(v) || v < 0) fail('EINVAL', `guest mapping: ${k} must be a non-negative integer page number, got ${v}`);
    }
    if (m.pages === 0) fail('EINVAL', `guest mapping at gva ${m.gva}: pages must be positive`);
    if (m.gva + m.pages > 2 ** 32 || m.gfn + m.pages > 2 ** 32) {
      fail('EINVAL', `guest mapping at gva ${m.gva}: gva and gfn ranges must end below page 2^32 (16 TiB)`);
    }
    const span = leafPages(lvl);
    if (m.gva % span !== 0 || m.gfn % span !== 0 || m.pages % span !== 0) {
      fail('EINVAL', `guest mapping at gva ${m.gva}: ${m.leaf} leaves need gva, gfn and pages aligned to ${span} pages`);
    }
  }
  const sorted = [...mappings].sort((a, b) => a.gva - b.gva);
  for (let i = 1; i < sorted.length; i++) {
    const a = sorted[i - 1]!, b = sorted[i]!;
    // __virt_pg_map asserts the entry is not present yet: one gva, one mapping.
    if (a.gva + a.pages > b.gva) fail('EINVAL', `guest mappings overlap: gva ${a.gva}+${a.pages} and gva ${b.gva}`);
  }
}

/** Distinct table indices (gva >>> shift) that the intervals cover. */
function distinctTables(ranges: { gva: number; pages: number }[], shift: number): number {
  const iv = ranges.map((r) => [Math.floor(r.gva / 2 ** shift), Math.floor((r.gva + r.pages - 1) / 2 ** shift)] as [number, number]);
  iv.sort((a, b) => a[0] - b[0]);
  let n = 0;
  let end = -1;
  for (const [s, e] of iv) {
    if (s > end) n += e - s + 1;
    else if (e > end) n += e - end;
    if (e > end) end = e;
  }
  return n;
}

/**
 * Page-table pages the mappings need (as memstress sizes slot 0 for them): the PML4, a PDPT per
 * 512 GiB of gva touched, a PD per 1 GiB touched by 4K or 2M leaves, a PT per 2 MiB touched by
 * 4K leaves.
 */
export function guestPtPagesNeeded(mappings: readonly GuestMapping[]): number {
  checkMappings(mappings);
  const below2 = mappings.filter((m) => m.leaf !== '1g');
  const below1 = mappings.filter((m) => m.leaf === '4k');
  return 1 + distinctTables([...mappings], 27) + distinctTables(below2, 18) + distinctTables(below1, 9);
}

/** The builder's state for one call: the memory, the allocator and a reused PTE snapshot. */
class PtBuilder {
  ptPages = 0;
  readonly snap = new GpteSnapshot();
  readonly cr3Gfn: number;
  readonly cr3Off: number;

  constructor(readonly mem: GuestPtMemory, readonly allocGfn: () => number) {
    this.cr3Gfn = this.allocTable();
    this.cr3Off = this.contentOf(this.cr3Gfn);
  }

  /** vm_alloc_page_table(): a fresh gfn in slot 0, its page zero. */
  allocTable(): number {
    const gfn = this.allocGfn();
    this.ptPages++;
    return gfn;
  }

  contentOf(gfn: number): number {
    const off = this.mem.contentOfGfn(gfn);
    if (off < 0) fail('EFAULT', `guest page tables: gfn ${gfn} is not guest memory (allocGfn must return gfns inside a memslot)`);
    return off;
  }

  /** Word offset of the level-`level` table covering gva, creating missing tables above it. */
  tableFor(level: number, gva: number): number {
    let off = this.cr3Off;
    for (let l = 4; l > level; l--) {
      const idx = Math.floor(gva / 2 ** ((l - 1) * 9)) & 511;
      const lo = readGuestPte(this.mem.words(), off, idx, this.snap);
      let gfn: number;
      if ((lo & GPT_P) !== 0) {
        gfn = gptGfn(lo, this.snap.hi);
        off = this.contentOf(gfn);
      } else {
        // An empty table may be linked before it is filled: its zero entries read not-present.
        gfn = this.allocTable();
        const child = this.contentOf(gfn);
        writeGuestPte(this.mem.words(), off, idx, gptLo(gfn, kNonLeaf), gptHi(gfn));
        off = child;
      }
    }
    return off;
  }

  /** n leaves at `level` for gva.. -> gfn.., all inside one table (idx + n <= 512). */
  mapRun(level: number, gva: number, gfn: number, n: number): void {
    const step = leafPages(level);
    const flags = level === 1 ? kLeaf : kLeaf | GPT_PS;
    const idx = Math.floor(gva / 2 ** ((level - 1) * 9)) & 511;
    const parentIdx = Math.floor(gva / 2 ** (level * 9)) & 511;
    const parent = this.tableFor(level + 1, gva);
    const plo = readGuestPte(this.mem.words(), parent, parentIdx, this.snap);
    if ((plo & GPT_P) !== 0) {
      // Linked already (an earlier run shares this table): the guest-visible protocol.
      const off = this.contentOf(gptGfn(plo, this.snap.hi));
      const words = this.mem.words();
      for (let i = 0; i < n; i++) {
        const g = gfn + i * step;
        writeGuestPte(words, off, idx + i, gptLo(g, flags), gptHi(g));
      }
      return;
    }
    const table = this.allocTable();
    const off = this.contentOf(table);
    const words = this.mem.words();
    // Unreachable until linked below: plain stores, published by the link.
    let p = off + idx * kGpteWords;
    for (let i = 0, g = gfn; i < n; i++, g += step, p += kGpteWords) {
      words[p] = (g << 12) | flags;
      words[p + 1] = g >>> 20;
    }
    writeGuestPte(words, parent, parentIdx, gptLo(table, kNonLeaf), gptHi(table));
  }
}

/**
 * Build the guest's page tables for `mappings` (virt_map() per region): `allocGfn()` returns the
 * next free gfn for a page-table page, and `mem` gives each gfn's content. EINVAL for misaligned
 * or overlapping mappings (nothing is allocated then); ENOMEM/EFAULT from the memory.
 */
export function buildGuestPageTables(mem: GuestPtMemory, allocGfn: () => number, mappings: readonly GuestMapping[]): GuestPageTables {
  checkMappings(mappings);
  const b = new PtBuilder(mem, allocGfn);
  for (const m of mappings) {
    const level = kLeafLevel[m.leaf];
    const step = leafPages(level);
    const end = m.gva + m.pages;
    for (let gva = m.gva; gva < end;) {
      // Up to the end of the table holding gva's entry, or of the mapping.
      const n = Math.min((end - gva) / step, 512 - ((gva / step) & 511));
      b.mapRun(level, gva, m.gfn + (gva - m.gva), n);
      gva += n * step;
    }
  }
  return { cr3Gfn: b.cr3Gfn, ptPages: b.ptPages };
}
