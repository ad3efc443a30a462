// 64-page masks that cross a 2M boundary, on a slot whose base_gfn is not 64-aligned (so CLEAR's
// 64-page words do not line up with page tables): kvm_arch_mmu_enable_log_dirty_pt_masked()
// re-arms each page in its own 4K table and, under INITIALLY_SET with huge pages, write-protects
// (or eagerly splits) the huge page at BOTH ends of the mask, [ffs(mask), fls(mask)] inclusive.
// lpage_info indexes huge pages with gfn_to_index(), correct for an unaligned base.
import { describe, expect, it } from 'vitest';
import { Host, KVM_MEM_LOG_DIRTY_PAGES } from '../src/index.js';
import type { BackingSource } from '../src/host/mm.js';
import type { DirtyStrategy } from '../src/kvm/dirty/strategy.js';
import { PgLevel, Spte } from '../src/kvm/mmu/spte.js';
import { leafAt, setBits, span } from './fixtures/mmu.js';

const k1G = 1 << 18;
// base_gfn = 1G + 32: 32 mod 64, while guest and host stay 2M-congruent (huge pages allowed).
const kBase = k1G + 32;
const kPages = 2048 - 64; // ends at 1G + 2016: head and tail 2M pages partial
// CLEAR word at slot offset 448 covers gfns 1G+480 .. 1G+543: across the 2M boundary at 1G+512.
const kWord = 448;

function fixture(backing: BackingSource, strategy: Partial<DirtyStrategy>, caps: number) {
  const host = Host.create({ memory: 64 * 2 ** 20, hugepages2m: 8 });
  const vm = host.createVm({ strategy });
  vm.enableCap('KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2', caps);
  const hva = vm.mmap({ size: 8 * 2 ** 20, backing });
  const region = { slot: 1, flags: 0, guestPhysAddr: kBase * 4096, memorySize: kPages * 4096, userspaceAddr: hva + 32 * 4096 };
  vm.setUserMemoryRegion2(region);
  const vcpu = vm.createVcpu();
  expect(vcpu.run(span(kBase, kBase + kPages), 1 << 20)).toBe(kPages);
  vm.setUserMemoryRegion2({ ...region, flags: KVM_MEM_LOG_DIRTY_PAGES });
  return { host, vm, vcpu };
}

/** Bitmap for CLEAR of one 64-page word with bits `bits` set. */
function word(bits: number[]): Uint32Array {
  const b = new Uint32Array(2);
  for (const i of bits) b[i >>> 5]! |= 1 << (i & 31);
  return b;
}

describe('64-page masks across a 2M boundary on an unaligned slot', () => {
  it('hugetlb 2M: huge pages are mapped exactly where lpage_info allows (unaligned base)', () => {
    const { host, vm } = fixture('anonymous_hugetlb_2mb', { tracking: 'wrprot' }, 3);
    // Head [1G+32, 1G+512) and tail [1G+1536, 1G+2016) are partial: 4K. Two whole 2M pages.
    expect(vm.getStats()).toMatchObject({ pages_2m: 2, pages_4k: 480 + 480 });
    expect(leafAt(vm, k1G + 512, PgLevel.PG_LEVEL_2M) & Spte.PT_PAGE_SIZE_MASK).toBe(Spte.PT_PAGE_SIZE_MASK);
    expect(host.audit().violations).toEqual([]);
  });

  it('INITIALLY_SET, split on fault: a mask crossing into a huge page write-protects it too', () => {
    const { host, vm, vcpu } = fixture('anonymous_hugetlb_2mb', { tracking: 'wrprot', split: 'on-fault' }, 3);
    // INITIALLY_SET: nothing write-protected at enable; the huge page at 1G+512 is writable.
    expect(leafAt(vm, k1G + 512, PgLevel.PG_LEVEL_2M) & Spte.PT_WRITABLE_MASK).toBe(Spte.PT_WRITABLE_MASK);
    // Bits 0 (gfn 1G+480, 4K) and 40 (gfn 1G+520, inside the 2M page).
    expect(vm.clearDirtyLog({ slot: 1, firstPage: kWord, numPages: 64, bitmap: word([0, 40]) })).toBe(2);
    expect(leafAt(vm, k1G + 512, PgLevel.PG_LEVEL_2M) & Spte.PT_WRITABLE_MASK).toBe(0);
    expect(leafAt(vm, k1G + 480) & Spte.PT_WRITABLE_MASK).toBe(0);
    const bits0 = setBits(vm.getDirtyLog(1));
    expect(bits0).not.toContain(kWord);
    expect(bits0).not.toContain(kWord + 40);
    // The guest writes both pages again: both are seen and reported.
    expect(vcpu.run(span(k1G + 520, k1G + 521), 10)).toBe(1);
    expect(vcpu.run(span(k1G + 480, k1G + 481), 10)).toBe(1);
    const bits1 = setBits(vm.getDirtyLog(1));
    expect(bits1).toContain(kWord);
    expect(bits1).toContain(kWord + 40);
    expect(host.audit().violations).toEqual([]);
  });

  it('INITIALLY_SET, eager split in CLEAR: the huge page holding fls(mask) is split, even at its first gfn', () => {
    const { host, vm } = fixture('anonymous_hugetlb_2mb', { tracking: 'wrprot', split: 'eager' }, 3);
    // Bits 0 (gfn 1G+480) and 32 (gfn 1G+512, the huge page's first gfn).
    expect(vm.clearDirtyLog({ slot: 1, firstPage: kWord, numPages: 64, bitmap: word([0, 32]) })).toBe(2);
    expect(vm.getStats()).toMatchObject({ pages_2m: 1, pages_4k: 960 + 512 });
    expect(leafAt(vm, k1G + 512) & Spte.PT_WRITABLE_MASK).toBe(0);
    expect(leafAt(vm, k1G + 513) & Spte.PT_WRITABLE_MASK).toBe(Spte.PT_WRITABLE_MASK);
    expect(host.audit().violations).toEqual([]);
  });

  it('4K pages: each gfn of the mask is re-armed in its own page table, with the 4K table that holds it', () => {
    const { host, vm, vcpu } = fixture('anonymous', { tracking: 'wrprot' }, 1);
    // Enable write-protected everything: dirty the word's 64 pages again.
    expect(vcpu.run(span(k1G + 480, k1G + 544), 100)).toBe(64);
    expect(setBits(vm.getDirtyLog(1))).toEqual(Array.from({ length: 64 }, (_, i) => kWord + i));
    expect(vm.clearDirtyLog({ slot: 1, firstPage: kWord, numPages: 64, bitmap: word([0, 40]) })).toBe(2);
    expect(leafAt(vm, k1G + 480) & Spte.PT_WRITABLE_MASK).toBe(0);
    expect(leafAt(vm, k1G + 520) & Spte.PT_WRITABLE_MASK).toBe(0);
    // Its neighbours in the mask's word that were not in the mask stay writable.
    expect(leafAt(vm, k1G + 511) & Spte.PT_WRITABLE_MASK).toBe(Spte.PT_WRITABLE_MASK);
    expect(leafAt(vm, k1G + 521) & Spte.PT_WRITABLE_MASK).toBe(Spte.PT_WRITABLE_MASK);
    const fast0 = vcpu.getStats().pf_fast;
    expect(vcpu.run(span(k1G + 520, k1G + 521), 10)).toBe(1);
    expect(vcpu.getStats().pf_fast - fast0).toBe(1);
    expect(setBits(vm.getDirtyLog(1))).toContain(kWord + 40);
    expect(host.audit().violations).toEqual([]);
  });
});
