/**
 * The shadow MMU's part of audit() (kvm/audit.ts), by recount while nothing runs:
 *  - every page on active_mmu_pages is in its gfn's hash bucket, at the level its role says, and
 *    the buckets hold those pages only, each as many as its length word says;
 *    every link's child is active and names the linking SPTE among its parents;
 *  - every present leaf maps the frame the host maps for its gfn (shadowed_translation), is in
 *    that gfn's rmap at its level, keeps the writable invariants, is not huge where lpage_info
 *    forbids it, and is not writable if a shadow page shadows that gfn (guest page-table stores
 *    must trap);
 *  - every rmap entry of every slot points at a present leaf of that gfn and level: rmaps and
 *    SPTEs are each other's inverse (the two counts match);
 *  - every gfn's gfn_write_track counts the indirect pages that shadow it (the fault path trusts
 *    the count instead of walking the hash bucket).
 */
import { PtLayout, Spte, checkSpteWritableInvariants, isLastSpte, isShadowPresentPte, pagesPerHpage, PgLevel, gfnRoundForLevel } from '../spte.js';
import { disallowLpage } from '../lpage.js';
import { ShadowCtl, ShadowPages, SpInfo, SpRole, kMmuHashBuckets } from './mmu-page.js';
import type { Vm } from '../../vm.js';

export function auditShadow(vm: Vm, report: (kind: string, detail: string) => void): { leaves: number[]; pages: number } {
  const s = vm.sp;
  const pt = vm.pool.pt;
  const leaves = [0, 0, 0, 0];
  let pages = 0;
  let leafTotal = 0;
  /** Indirect pages per gfn: the shadowed guest tables, and what gfn_write_track must count. */
  const tracked = new Map<number, number>();
  const active: number[] = [];
  for (let sp = s.ctl[ShadowCtl.kListHead]!; sp !== 0; sp = s.get(sp, SpInfo.kListNext)) {
    active.push(sp);
    if (active.length > vm.pool.capacity) {
      report('shadow-list', 'active_mmu_pages has a cycle');
      break;
    }
  }
  for (const sp of active) {
    pages++;
    if ((s.role(sp) & SpRole.kDirect) === 0) tracked.set(s.gfn(sp), (tracked.get(s.gfn(sp)) ?? 0) + 1);
    if (s.get(sp, SpInfo.kActive) !== 1) report('shadow-list', `sp ${sp} on active_mmu_pages but not marked active`);
    let inBucket = false;
    for (let p = s.bucketHead(s.gfn(sp)); p !== 0; p = s.hashNext(p)) if (p === sp) inBucket = true;
    if (!inBucket) report('shadow-hash', `sp ${sp} (gfn 0x${s.gfn(sp).toString(16)}) missing from bucket ${ShadowPages.bucket(s.gfn(sp))}`);
    if (vm.pool.level(sp) !== s.level(sp)) report('shadow-level', `sp ${sp}: pool level ${vm.pool.level(sp)} != role level ${s.level(sp)}`);
  }
  // The bucket lengths the fault path prices its hash walks by (mmu_try_to_unsync_pages()).
  let hashed = 0;
  for (let b = 0; b < kMmuHashBuckets; b++) {
    let n = 0;
    for (let p = s.ctl[ShadowCtl.kHashBase + b]!; p !== 0 && n <= active.length; p = s.hashNext(p)) n++;
    hashed += n;
    const len = s.ctl[ShadowCtl.kHashLenBase + b]!;
    if (len !== n) report('shadow-hash', `bucket ${b} holds ${n} pages but its length says ${len}`);
  }
  if (hashed !== active.length) report('shadow-hash', `${hashed} pages in mmu_page_hash, ${active.length} on active_mmu_pages`);
  const parents: number[] = [];
  for (const sp of active) {
    const level = s.level(sp);
    for (let i = 0; i < PtLayout.SPTE_ENT_PER_PAGE; i++) {
      const sptep = sp * PtLayout.SPTE_ENT_PER_PAGE + i;
      const flags = pt[sptep * PtLayout.kSpteWords]!;
      const pfn = pt[sptep * PtLayout.kSpteWords + 1]!;
      if (!isShadowPresentPte(flags)) continue;
      if (!isLastSpte(flags, level)) {
        if (s.get(pfn, SpInfo.kActive) !== 1) {
          report('shadow-link', `sp ${sp}[${i}] links page ${pfn}, which is not an active shadow page`);
          continue;
        }
        if (s.level(pfn) !== level - 1) report('shadow-link', `sp ${sp}[${i}] (level ${level}) links sp ${pfn} of level ${s.level(pfn)}`);
        s.parents(pfn, parents);
        if (!parents.includes(sptep)) report('shadow-parent', `sp ${pfn} does not list its parent SPTE ${sptep}`);
        continue;
      }
      leaves[level - 1]!++;
      leafTotal++;
      const gfn = s.xlatGfn(sptep);
      const inv = checkSpteWritableInvariants(flags);
      if (inv) report('spte-writable', `shadow gfn 0x${gfn.toString(16)}: ${inv}`);
      if (gfnRoundForLevel(gfn, level) !== gfn) report('shadow-xlat', `sp ${sp}[${i}] level ${level} records unaligned gfn 0x${gfn.toString(16)}`);
      const slot = vm.searchMemslots(gfn);
      const step = pagesPerHpage(level);
      if (slot === null || gfn + step > slot.endGfn) {
        report('spte-outside-slot', `shadow gfn 0x${gfn.toString(16)} level ${level} not inside one memslot`);
        continue;
      }
      if (level > PgLevel.PG_LEVEL_4K && disallowLpage(slot.lpage, slot.baseGfn, gfn, level) !== 0) {
        report('huge-disallowed', `shadow gfn 0x${gfn.toString(16)} mapped at level ${level} with disallow_lpage ${disallowLpage(slot.lpage, slot.baseGfn, gfn, level)}`);
      }
      for (let k = 0; k < step; k++) {
        const host = slot.vma === null ? -1 : slot.vma.lookup(slot.vmaOffset + (gfn + k - slot.baseGfn));
        if (host !== pfn + k) {
          report('stale-spte', `shadow gfn 0x${(gfn + k).toString(16)} (level ${level}) maps pfn 0x${(pfn + k).toString(16)} but the host maps ${host < 0 ? 'nothing' : '0x' + host.toString(16)}`);
          break;
        }
      }
      if ((flags & Spte.PT_WRITABLE_MASK) !== 0) {
        for (let k = 0; k < step; k++) {
          if (tracked.has(gfn + k)) {
            report('writable-guest-pt', `gfn 0x${(gfn + k).toString(16)} holds a shadowed guest page table but is mapped writable (sp ${sp}[${i}])`);
            break;
          }
        }
      }
      const base = vm.slotRmapBase(slot);
      if (base < 0) {
        report('rmap-missing', `slot ${slot.id} maps shadow gfn 0x${gfn.toString(16)} but has no rmaps`);
        continue;
      }
      const head = vm.rmaps.headIndex(base, slot.baseGfn, level, gfn);
      let found = false;
      for (let e = vm.rmapIter.begin(head); e !== 0; e = vm.rmapIter.next()) if (e === sptep) found = true;
      if (!found) report('rmap-missing', `SPTE ${sptep} (gfn 0x${gfn.toString(16)} level ${level}) is not in its rmap`);
    }
  }
  // The other direction: every rmap entry is a present leaf of its gfn and level.
  let rmapTotal = 0;
  if (vm.memslotsHaveRmaps()) {
    for (const slot of vm.slotsInGfnRange(0, 2 ** 31)) {
      const base = vm.slotRmapBase(slot);
      if (base < 0) {
        report('rmap-missing', `slot ${slot.id} has no rmaps although every memslot should`);
        continue;
      }
      for (let level = PgLevel.PG_LEVEL_4K; level <= PgLevel.PG_LEVEL_1G; level++) {
        const step = pagesPerHpage(level);
        for (let g = slot.baseGfn & -step; g < slot.endGfn; g += step) {
          const gfn = Math.max(g, slot.baseGfn);
          const head = vm.rmaps.headIndex(base, slot.baseGfn, level, gfn);
          if (level === PgLevel.PG_LEVEL_4K) {
            const want = tracked.get(gfn) ?? 0;
            const have = vm.rmaps.writeTrackCount(head);
            if (have !== want) report('write-track', `gfn 0x${gfn.toString(16)}: gfn_write_track ${have} but ${want} shadow page(s) shadow it`);
          }
          if (vm.rmaps.count(head) === 0) continue;
          for (let e = vm.rmapIter.begin(head); e !== 0; e = vm.rmapIter.next()) {
            rmapTotal++;
            const sp = (e / PtLayout.SPTE_ENT_PER_PAGE) | 0;
            const flags = pt[e * PtLayout.kSpteWords]!;
            if (s.get(sp, SpInfo.kActive) !== 1 || !isShadowPresentPte(flags) || !isLastSpte(flags, s.level(sp))) {
              report('rmap-dangling', `rmap of gfn 0x${gfn.toString(16)} level ${level} holds SPTE ${e}, which is not a present leaf of an active shadow page`);
            } else if (s.level(sp) !== level || gfnRoundForLevel(s.xlatGfn(e), level) !== gfnRoundForLevel(gfn, level)) {
              report('rmap-dangling', `rmap of gfn 0x${gfn.toString(16)} level ${level} holds SPTE ${e} of gfn 0x${s.xlatGfn(e).toString(16)} level ${s.level(sp)}`);
            }
          }
        }
      }
    }
    if (rmapTotal !== leafTotal) report('rmap-count', `${rmapTotal} rmap entries for ${leafTotal} shadow leaves`);
  }
  if (s.usedPages() !== active.length) report('shadow-list', `n_used_mmu_pages ${s.usedPages()} != ${active.length} on active_mmu_pages`);
  return { leaves, pages };
}
