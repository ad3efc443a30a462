/**
 * Eager page splitting for the shadow MMU (kvm_shadow_mmu_try_split_huge_pages(), mmu.c, added
 * after the TDP MMU's): when dirty logging is enabled (or, with INITIALLY_SET, when CLEAR arms a
 * range), every huge SPTE in the slot's 2M/1G rmaps is replaced by a link to a new *direct*
 * shadow page holding the 512 smaller SPTEs of the same frames, so the guest's first write after
 * enabling takes a write-protection fault on a 4K SPTE instead of dropping a huge page and faulting
 * the range in again (the lazy split in FNAME(fetch)). Under mmu_lock held for write; the caller
 * flushes remote TLBs (the huge translation goes) and write-protects the small SPTEs as usual.
 */
import { PgLevel, PtLayout, Spte, isLastSpte, isShadowPresentPte, makeSmallSpteFlags, pagesPerHpage, withNextPfnGen } from '../spte.js';
import { count } from '../../../metrics/counters.js';
import { Op } from '../../../metrics/ops.js';
import { kvmUpdatePageStats } from '../page-stats.js';
import { SpRole } from './mmu-page.js';
import { rmapAdd, rmapRemove } from './rmap-ops.js';
import { shadowSetSpte } from './spte-ops.js';
import type { Memslot } from '../../memslot.js';
import type { Vm } from '../../vm.js';

/** Split every huge SPTE mapping [start, end) of `slot` down to `target`; returns how many were split. */
export function shadowSplitHugePagesRange(vm: Vm, slot: Memslot, start: number, end: number, target: number): number {
  if (vm.slotRmapBase(slot) < 0) return 0;
  let splits = 0;
  for (let level = PgLevel.PG_LEVEL_1G; level > target; level--) {
    const step = pagesPerHpage(level);
    const base = vm.slotRmapBase(slot);
    for (let g = Math.max(start, slot.baseGfn) & -step; g < end && g < slot.endGfn; g += step) {
      const head = vm.rmaps.headIndex(base, slot.baseGfn, level, Math.max(g, slot.baseGfn));
      // Each split removes the entry from this rmap: start over at the head until it is empty.
      for (let sptep = vm.rmapIter.begin(head); sptep !== 0; sptep = vm.rmapIter.begin(head)) {
        count(vm.ctx.metrics, Op.rmap_entry);
        if (!splitOne(vm, slot, sptep, level)) break;
        splits++;
      }
    }
  }
  vm.releaseVmmPages();
  return splits;
}

/** shadow_mmu_split_huge_page(): one huge SPTE at `level` becomes a link to a direct child page. */
function splitOne(vm: Vm, slot: Memslot, sptep: number, level: number): boolean {
  const pt = vm.pool.pt;
  const s = vm.sp;
  const at = sptep * PtLayout.kSpteWords;
  const flags = Atomics.load(pt, at);
  if (!isShadowPresentPte(flags) || !isLastSpte(flags, level)) return false;
  const pfn = pt[at + 1]!;
  const gfn = s.xlatGfn(sptep);
  const parentRole = s.role((sptep / PtLayout.SPTE_ENT_PER_PAGE) | 0);
  const child = vm.takeVmmPage();
  count(vm.ctx.metrics, Op.pt_page_alloc);
  const childLevel = level - 1;
  vm.pool.setInfo(child, childLevel, gfn);
  s.link(child, gfn, childLevel | SpRole.kDirect | (parentRole & SpRole.kGuestMode));
  const small = makeSmallSpteFlags(flags & ~Spte.kSptePfnGenMask, childLevel);
  const n = pagesPerHpage(childLevel);
  for (let i = 0; i < 512; i++) {
    const c = child * PtLayout.SPTE_ENT_PER_PAGE + i;
    shadowSetSpte(pt, c, small, pfn + i * n);
    s.setXlat(c, gfn + i * n);
    rmapAdd(vm, slot, gfn + i * n, childLevel, c);
  }
  // The huge SPTE leaves its rmap and becomes the link (stats: one huge leaf out, 512 in).
  rmapRemove(vm, gfn, level, sptep);
  kvmUpdatePageStats(vm, level, -1);
  kvmUpdatePageStats(vm, childLevel, 512);
  // Replace the pfn behind a non-present flags word (the walker's flags -> pfn -> flags observe):
  // a vCPU that reads it meanwhile takes a violation and waits for mmu_lock.
  const old = Atomics.exchange(pt, at, 0);
  Atomics.store(pt, at + 1, child);
  Atomics.store(pt, at, withNextPfnGen(Spte.kNonLeafFlags, old));
  s.addParent(child, sptep);
  count(vm.ctx.metrics, Op.split_huge);
  return true;
}
