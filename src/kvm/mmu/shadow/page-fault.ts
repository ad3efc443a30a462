/**
 * The shadow MMU's fault path (paging_tmpl.h FNAME(page_fault) and FNAME(fetch), mmu.c's
 * kvm_mmu_get_child_sp / mmu_set_spte / mmu_try_to_unsync_pages), for a guest that runs with
 * its own 4-level page tables and no EPT:
 *
 *  1. FNAME(walk_addr): walk the guest's tables for the gva (setting their A/D bits);
 *  2. kvm_mmu_faultin_pfn() for the gfn it maps — shared with the TDP MMU (tdp/fault.ts), which
 *     hands back here (kvmShadowMapPfn) once the pfn is known;
 *  3. with mmu_lock held for *write* (no fast path, no read-side faults): for each guest table
 *     above the guest's leaf, find or create the shadow page that shadows it (keyed by the table's
 *     gfn and role in mmu_page_hash; creating one write-protects that gfn through its rmaps and
 *     disallows huge mappings over it), then — where the guest maps huge but the host, lpage_info
 *     or dirty logging do not allow it — direct pages, then the leaf: its rmap entry, its
 *     translation, page stats and, while logging, the dirty bit.
 *
 * A store to a guest page-table page (a write-protected gfn) cannot be made writable
 * (mmu_try_to_unsync_pages answers -EPERM: this model keeps every shadowed gfn write-tracked and
 * does not unsync last-level tables), so it returns RET_PF_WRITE_PROTECTED and the vCPU emulates
 * the store (kvmMmuTrackWrite()).
 */
import { PgLevel, PtLayout, Spte, gfnRoundForLevel, isLargePte, isLastSpte, isShadowPresentPte, isWritablePte, makeSpteFlags, pagesPerHpage, spteIndex } from '../spte.js';
import { count, countN } from '../../../metrics/counters.js';
import { Op } from '../../../metrics/ops.js';
import { fail } from '../../../host/errno.js';
import { lpageMaxLevel } from '../lpage.js';
import { kvmUpdatePageStats } from '../page-stats.js';
import { isPageFaultStale } from '../../invalidate.js';
import { kvmFlushRemoteTlbs } from '../../requests.js';
import { vcpuMmuWriteLock, vcpuMmuWriteUnlock } from '../../mmu-lock.js';
import { KvmPageFault, RetPf, kvmTdpPageFault } from '../tdp/fault.js';
import { GuestWalkResult, guestPteChanged, guestWalk } from './paging_tmpl.js';
import { ShadowCtl, SpInfo, SpRole } from './mmu-page.js';
import { rmapAdd, rmapWriteProtectRange } from './rmap-ops.js';
import { shadowDropSpte, shadowSetSpte } from './spte-ops.js';
import { accountShadowed, gfnIsWriteTracked, kvmMmuCommitZapPage, kvmMmuPrepareZapPage } from './zap.js';
import type { Memslot } from '../../memslot.js';
import type { Vcpu } from '../../vcpu.js';
import type { Vm } from '../../vm.js';

/** FNAME(page_fault): a #PF exit at `gva` (a page number). Returns a RET_PF_* code. */
export function kvmShadowPageFault(vcpu: Vcpu, gva: number, write: boolean): number {
  const vm = vcpu.vm;
  const m = vm.ctx.metrics;
  const w = vcpu.walker;
  const r = guestWalk(w, vm.guestMem, vcpu.cr3Gfn, gva, write);
  countN(m, Op.guest_pte_read, w.reads);
  if (w.adUpdates > 0) countN(m, Op.guest_pte_ad, w.adUpdates);
  if (r !== GuestWalkResult.kGuestWalkOk) {
    // kvm_inject_emulated_page_fault(): the guest's own #PF. The guests here map everything they
    // touch, so one is a broken layout, not a workload event.
    fail('EFAULT', `KVM_RUN: guest page fault at gva 0x${(gva * 4096).toString(16)} (walk result ${r}, level ${w.faultLevel}): the guest page tables do not map it`);
  }
  vcpu.fault.gva = gva;
  return kvmTdpPageFault(vcpu, w.gfn, write, false);
}

/**
 * After kvm_mmu_faultin_pfn(): the rest of FNAME(page_fault) under mmu_lock for write. The
 * shadow root is loaded first (kvm_mmu_load -> mmu_alloc_shadow_roots) if the vCPU has none.
 */
export function kvmShadowMapPfn(vcpu: Vcpu, fault: KvmPageFault, slot: Memslot): number {
  const vm = vcpu.vm;
  const m = vm.ctx.metrics;
  if (vcpu.topupMmuCache()) return retry(m);
  // mmu_first_shadow_root_alloc() runs before mmu_lock (it takes slots_arch_lock, which nests
  // outside mmu_lock): a TDP VM's first shadow root allocates the rmaps of every memslot.
  if (vcpu.shadowRoot === 0) vm.onFirstShadowRoot();
  const m0 = vcpuMmuWriteLock(vcpu);
  let r: number;
  try {
    if (vcpu.shadowRoot === 0) mmuAllocShadowRoot(vcpu);
    if (isPageFaultStale(vm, fault.mmuSeq, fault.gfn)) r = retry(m);
    else {
      shadowHugepageAdjust(fault, slot, vcpu.walker.level);
      r = fetch(vcpu, fault, slot);
    }
  } finally {
    vcpuMmuWriteUnlock(vcpu, m0);
  }
  return r;
}

/** mmu_alloc_shadow_roots(): the root shadows the guest's PML4 at CR3 (root_count keeps it). */
export function mmuAllocShadowRoot(vcpu: Vcpu): void {
  const vm = vcpu.vm;
  const root = kvmMmuGetShadowPage(vcpu, vcpu.cr3Gfn, PgLevel.PT64_ROOT_4LEVEL | vcpu.rootRoleBits());
  vm.sp.set(root, SpInfo.kRootCount, vm.sp.get(root, SpInfo.kRootCount) + 1);
  vcpu.shadowRoot = root;
}

/**
 * kvm_mmu_hugepage_adjust() for a shadow fault: the guest's own leaf level bounds it
 * (fault->max_level = walker.level), then the host mapping, lpage_info (guest page tables
 * disallow huge pages over them) and dirty logging.
 */
function shadowHugepageAdjust(fault: KvmPageFault, slot: Memslot, guestLevel: number): void {
  let max = Math.min(fault.hostLevel, guestLevel, PgLevel.PG_LEVEL_1G);
  if (slot.dirtyLogging()) max = PgLevel.PG_LEVEL_4K;
  else if (max > PgLevel.PG_LEVEL_4K) max = lpageMaxLevel(slot.lpage, slot.baseGfn, fault.gfn, max);
  fault.maxLevel = max;
  fault.goalLevel = max;
}

/** FNAME(fetch) */
function fetch(vcpu: Vcpu, fault: KvmPageFault, slot: Memslot): number {
  const vm = vcpu.vm;
  const m = vm.ctx.metrics;
  const s = vm.sp;
  const pt = vm.pool.pt;
  const w = vcpu.walker;
  const gva = fault.gva;
  const guestLevel = w.level;
  const roleBits = vcpu.rootRoleBits();
  let table = vcpu.shadowRoot;
  let level = PgLevel.PT64_ROOT_4LEVEL;
  // Indirect pages: one per guest table on the walk, below the root.
  for (; level > guestLevel; level--) {
    // clear_sp_write_flooding_count(): a table the guest uses is not being flooded.
    clearWriteFlooding(vm, table);
    const sptep = table * PtLayout.SPTE_ENT_PER_PAGE + spteIndex(gva, level);
    const f = Atomics.load(pt, sptep * PtLayout.kSpteWords);
    count(m, Op.spte_read);
    const wantGfn = w.tableGfn[level - 2]!;
    const wantRole = (level - 1) | roleBits;
    if (isShadowPresentPte(f) && !isLargePte(f)) {
      const child = pt[sptep * PtLayout.kSpteWords + 1]!;
      if (s.gfn(child) === wantGfn && s.role(child) === wantRole) {
        table = child;
        continue;
      }
    }
    // A link to another table (the guest rewrote its entry), or a huge leaf in the way.
    if (isShadowPresentPte(f)) dropAndFlush(vm, sptep, level);
    const child = kvmMmuGetShadowPage(vcpu, wantGfn, wantRole);
    linkShadowPage(vm, sptep, child);
    // FNAME(gpte_changed): the guest entry this link follows changed after the walk: retry.
    if (guestPteChanged(w, vm.guestMem, level)) {
      count(m, Op.guest_pte_read);
      return retry(m);
    }
    count(m, Op.guest_pte_read);
    table = child;
  }
  // KVM clears only above the guest's leaf, as it never floods last-level pages (they may go
  // unsync instead); this model floods them (it does not unsync), so their use clears too.
  clearWriteFlooding(vm, table);
  // Direct pages: the guest maps huge here but the goal is smaller.
  const goal = fault.goalLevel;
  for (; level > goal; level--) {
    const sptep = table * PtLayout.SPTE_ENT_PER_PAGE + spteIndex(gva, level);
    const f = Atomics.load(pt, sptep * PtLayout.kSpteWords);
    count(m, Op.spte_read);
    const base = gfnRoundForLevel(fault.gfn, level);
    const wantRole = (level - 1) | SpRole.kDirect | roleBits;
    if (isShadowPresentPte(f) && !isLargePte(f)) {
      const child = pt[sptep * PtLayout.kSpteWords + 1]!;
      if (s.gfn(child) === base && s.role(child) === wantRole) {
        table = child;
        continue;
      }
    }
    // drop_large_spte(): the huge leaf goes (dirty logging turned on, or a page table appeared
    // inside it) and is mapped smaller from now on: the lazy split of the shadow MMU.
    if (isShadowPresentPte(f)) {
      if (isLargePte(f)) count(m, Op.split_huge);
      dropAndFlush(vm, sptep, level);
    }
    const child = kvmMmuGetShadowPage(vcpu, base, wantRole);
    linkShadowPage(vm, sptep, child);
    table = child;
  }
  return mmuSetSpte(vcpu, fault, slot, table * PtLayout.SPTE_ENT_PER_PAGE + spteIndex(gva, goal), goal);
}

function dropAndFlush(vm: Vm, sptep: number, level: number): void {
  const pt = vm.pool.pt;
  const f = Atomics.load(pt, sptep * PtLayout.kSpteWords);
  if (!isLastSpte(f, level)) {
    // A table's link: drop the child's parent and, if it is direct and now orphaned, the child.
    const child = pt[sptep * PtLayout.kSpteWords + 1]!;
    shadowDropSpte(vm, sptep, level);
    const s = vm.sp;
    if ((s.role(child) & SpRole.kDirect) !== 0 && s.get(child, SpInfo.kParent) === 0 && s.get(child, SpInfo.kParents) === 0) {
      const invalid = vm.shadowInvalid;
      kvmMmuPrepareZapPage(vm, child, invalid);
      kvmMmuCommitZapPage(vm, invalid);
      return;
    }
  } else {
    shadowDropSpte(vm, sptep, level);
  }
  kvmFlushRemoteTlbs(vm);
}

/**
 * kvm_mmu_get_shadow_page(): the page for (gfn, role) from mmu_page_hash, else a new one. The
 * bucket walk counts every page examined (collisions: pages of other gfns in the bucket, the
 * max_mmu_page_hash_collisions peak); a miss is mmu_cache_miss.
 */
export function kvmMmuGetShadowPage(vcpu: Vcpu, gfn: number, role: number): number {
  const vm = vcpu.vm;
  const m = vm.ctx.metrics;
  const s = vm.sp;
  let collisions = 0;
  let probes = 0;
  for (let sp = s.bucketHead(gfn); sp !== 0; sp = s.hashNext(sp)) {
    probes++;
    if (s.gfn(sp) !== gfn) {
      collisions++;
      continue;
    }
    if (s.role(sp) === role) {
      countN(m, Op.mmu_hash_probe, probes);
      s.peakStat(ShadowCtl.kStatMaxHashCollisions, collisions);
      return sp;
    }
  }
  countN(m, Op.mmu_hash_probe, probes);
  s.peakStat(ShadowCtl.kStatMaxHashCollisions, collisions);
  s.bumpStat(ShadowCtl.kStatCacheMiss);
  const sp = vcpu.takeMmuPage();
  count(m, Op.pt_page_alloc);
  const level = role & SpRole.kLevelMask;
  vm.pool.setInfo(sp, level, gfn);
  s.link(sp, gfn, role);
  if ((role & SpRole.kDirect) === 0) {
    // account_shadowed(): the guest table's gfn is write-tracked; every SPTE that maps it
    // (a huge one included) loses W and MMU-writable, so the guest's next store to it faults.
    accountShadowed(vm, gfn, 1);
    const tslot = vm.lookupMemslotAny(gfn);
    if (tslot !== null && rmapWriteProtectRange(vm, tslot, gfn, gfn + 1, PgLevel.PG_LEVEL_4K, PgLevel.PG_LEVEL_1G, false)) kvmFlushRemoteTlbs(vm);
  }
  return sp;
}

/** link_shadow_page(): a non-leaf SPTE to the child, recorded as the child's parent. */
function linkShadowPage(vm: Vm, sptep: number, child: number): void {
  shadowSetSpte(vm.pool.pt, sptep, Spte.kNonLeafFlags, child);
  vm.sp.addParent(child, sptep);
  count(vm.ctx.metrics, Op.spte_write);
}

/**
 * mmu_try_to_unsync_pages(): may a writable SPTE map gfn? Not while a shadow page write-tracks
 * it (kvm_gfn_is_write_tracked(), an O(1) count: -EPERM before any walk). Otherwise KVM walks
 * gfn's whole mmu_page_hash bucket (for_each_gfn_valid_sp_with_gfn) to unsync its last-level
 * pages; here every indirect page write-tracks its gfn (zap.ts), so an untracked gfn has none
 * and the walk would find nothing: it is priced by the bucket's length rather than performed,
 * which keeps a 1-TiB guest's writable installs O(1) in wall time (the audit checks the counts).
 */
function mmuTryToUnsyncPagesRefuses(vm: Vm, slot: Memslot, gfn: number): boolean {
  if (gfnIsWriteTracked(vm, slot, gfn)) return true;
  const probes = vm.sp.bucketLength(gfn);
  if (probes > 0) countN(vm.ctx.metrics, Op.mmu_hash_probe, probes);
  return false;
}

/** mmu_set_spte() + make_spte() for the leaf at `level`. */
function mmuSetSpte(vcpu: Vcpu, fault: KvmPageFault, slot: Memslot, sptep: number, level: number): number {
  const vm = vcpu.vm;
  const m = vm.ctx.metrics;
  const pt = vm.pool.pt;
  const at = sptep * PtLayout.kSpteWords;
  const old = Atomics.load(pt, at);
  const leafGfn = gfnRoundForLevel(fault.gfn, level);
  const pfn = fault.pfn - (fault.gfn - leafGfn);
  if (level > PgLevel.PG_LEVEL_4K && pfn % pagesPerHpage(level) !== 0) throw new Error(`BUG: huge pfn 0x${pfn.toString(16)} misaligned at level ${level}`);
  const samePage = isShadowPresentPte(old) && isLastSpte(old, level) && pt[at + 1] === pfn;
  if (samePage && (!fault.write || isWritablePte(old))) {
    setLeaf(fault, old, pfn, level);
    return RetPf.RET_PF_SPURIOUS;
  }
  // pte_access: the guest's RW over every level and, for a read, its D bit (protect_clean_gpte).
  let writable = fault.mapWritable && vcpu.walker.writable;
  let r: number = RetPf.RET_PF_FIXED;
  if (writable && level === PgLevel.PG_LEVEL_4K && mmuTryToUnsyncPagesRefuses(vm, slot, fault.gfn)) {
    writable = false;
    if (fault.write) r = RetPf.RET_PF_WRITE_PROTECTED;
  }
  const flags = makeSpteFlags(level, writable, fault.mapWritable);
  if (samePage) {
    // mmu_spte_update(): the same page with more rights (a write after dirty logging or a clean
    // read mapping took W away) changes in place: the rmap stays, gaining W needs no flush.
    for (;;) {
      const cur = Atomics.load(pt, at);
      // Keep the pfn generation (the pfn does not change) and the A/D bits the walker set.
      const next = flags | (cur & (Spte.kSptePfnGenMask | Spte.SPTE_ACCESSED | Spte.SPTE_DIRTY));
      if (Atomics.compareExchange(pt, at, cur, next) === cur) break;
    }
    count(m, Op.spte_cmpxchg);
  } else {
    // A table where the huge leaf goes, or another pfn: drop the old one first.
    if (isShadowPresentPte(old)) dropAndFlush(vm, sptep, level);
    shadowSetSpte(pt, sptep, flags, pfn);
    count(m, Op.spte_write);
    vm.sp.setXlat(sptep, leafGfn);
    rmapAdd(vm, slot, fault.gfn, level, sptep);
    kvmUpdatePageStats(vm, level, 1);
  }
  if (writable) {
    if (slot.dirtyLogging()) vm.markPageDirtyInSlot(slot, fault.gfn, vcpu);
    vm.onWritableSpte(pfn, level, false);
  }
  setLeaf(fault, Atomics.load(pt, at), pfn, level);
  return r;
}

function setLeaf(fault: KvmPageFault, flags: number, pfn: number, level: number): void {
  fault.leafFlags = flags;
  fault.leafPfn = pfn + (fault.gfn - gfnRoundForLevel(fault.gfn, level));
  fault.leafLevel = level;
}

function retry(m: { c: Float64Array; t: number; cost: Float64Array }): number {
  count(m as never, Op.fault_retry);
  return RetPf.RET_PF_RETRY;
}

/**
 * kvm_mmu_track_write() (the emulator's write to a write-tracked gfn, once per emulated store):
 * every shadow page of the gfn loses the SPTE for the written guest entry (mmu_pte_write) —
 * or, after repeated writes without the page being used (detect_write_flooding: 3), the whole
 * page (mmu_flooded). Under mmu_lock for write. Returns whether a flush is needed.
 */
export function kvmMmuTrackWrite(vcpu: Vcpu, gfn: number, index: number): void {
  const vm = vcpu.vm;
  const s = vm.sp;
  const m0 = vcpuMmuWriteLock(vcpu);
  try {
    s.bumpStat(ShadowCtl.kStatPteWrite);
    const invalid = vm.shadowInvalid;
    let flush = false;
    let probes = 0;
    for (let sp = s.bucketHead(gfn); sp !== 0;) {
      probes++;
      const next = s.hashNext(sp);
      const role = s.role(sp);
      if (s.gfn(sp) === gfn && (role & SpRole.kDirect) === 0) {
        const flood = s.get(sp, SpInfo.kFlood) + 1;
        s.set(sp, SpInfo.kFlood, flood);
        if (flood >= 3 && s.get(sp, SpInfo.kRootCount) === 0) {
          s.bumpStat(ShadowCtl.kStatFlooded);
          kvmMmuPrepareZapPage(vm, sp, invalid);
        } else {
          const sptep = sp * PtLayout.SPTE_ENT_PER_PAGE + index;
          const f = Atomics.load(vm.pool.pt, sptep * PtLayout.kSpteWords);
          if (isShadowPresentPte(f)) {
            if (!isLastSpte(f, role & SpRole.kLevelMask)) s.bumpStat(ShadowCtl.kStatPdeZapped);
            dropAndFlushNoCommit(vm, sptep, role & SpRole.kLevelMask, invalid);
            flush = true;
          }
        }
      }
      sp = next;
    }
    countN(vm.ctx.metrics, Op.mmu_hash_probe, probes);
    if (invalid.length > 0) kvmMmuCommitZapPage(vm, invalid);
    else if (flush) kvmFlushRemoteTlbs(vm);
  } finally {
    vcpuMmuWriteUnlock(vcpu, m0);
  }
}

function dropAndFlushNoCommit(vm: Vm, sptep: number, level: number, invalid: number[]): void {
  const pt = vm.pool.pt;
  const f = Atomics.load(pt, sptep * PtLayout.kSpteWords);
  const child = isLastSpte(f, level) ? 0 : pt[sptep * PtLayout.kSpteWords + 1]!;
  shadowDropSpte(vm, sptep, level);
  if (child !== 0) {
    const s = vm.sp;
    if ((s.role(child) & SpRole.kDirect) !== 0 && s.get(child, SpInfo.kParent) === 0 && s.get(child, SpInfo.kParents) === 0) kvmMmuPrepareZapPage(vm, child, invalid);
  }
}

/** Reset write-flooding when a shadowed table's page is used again (kvm_mmu_page_fault's clear). */
export function clearWriteFlooding(vm: Vm, sp: number): void {
  vm.sp.set(sp, SpInfo.kFlood, 0);
}

