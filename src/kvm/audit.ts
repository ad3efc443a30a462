/**
 * audit(): the invariants of ARCHITECTURE.md, checked by recounting from scratch. Call it only
 * while nothing runs (between phases); it takes no locks.
 *
 *  - every present leaf maps frames this VM's memslot and VMA own, at the pfn the host maps
 *    for that gfn now (a stale SPTE after an invalidation shows up here), huge leaves only where
 *    lpage_info allows and the folio is that large;
 *  - no frozen SPTE survives in a reachable table; writable-bit invariants hold;
 *  - pages_4k/2m/1g equal the recount; page-table pages balance (reachable + cached + retired +
 *    free = pool); folio refcounts equal the host mappings that reference them; per-owner and
 *    host-wide frame accounting balance.
 */
import type { Host } from '../host/host.js';
import type { FrameTable } from '../host/frame-table.js';
import type { Vma } from '../host/mm.js';
import {
  Spte, PgLevel, PtLayout, checkSpteWritableInvariants, isLastSpte, isShadowPresentPte, pagesPerHpage,
} from './mmu/spte.js';
import { disallowLpage, Lpage } from './mmu/lpage.js';
import type { Vm } from './vm.js';
import { VmLayout } from './vm-layout.js';
import type { Memslot } from './memslot.js';
import { kvmMemIsPrivate, kvmRangeUniform } from './attributes.js';
import { GmemWord, type GmemFile } from '../gmem/gmem-file.js';
import { auditShadow } from './mmu/shadow/audit.js';

export interface AuditViolation {
  vm: number | null;
  kind: string;
  detail: string;
}

export interface AuditResult {
  ok: boolean;
  violations: AuditViolation[];
  /** Leaves per level found by the recount, per VM. */
  recount: { vm: number; pages_4k: number; pages_2m: number; pages_1g: number; ptPages: number }[];
}

const kMaxReported = 50;

export function auditVm(vm: Vm, out: AuditViolation[]): { pages: number[]; ptPages: number } {
  const pt = vm.pool.pt;
  const frames = vm.host.frames;
  const leaves = [0, 0, 0, 0];
  let ptPages = 0;
  const report = (kind: string, detail: string) => {
    if (out.length < kMaxReported) out.push({ vm: vm.id, kind, detail });
  };
  const walk = (page: number, level: number, baseGfn: number) => {
    ptPages++;
    if (vm.pool.level(page) !== level) report('pt-level', `page ${page} holds level ${vm.pool.level(page)}, reached at level ${level}`);
    const step = pagesPerHpage(level);
    for (let i = 0; i < PtLayout.SPTE_ENT_PER_PAGE; i++) {
      const sptep = page * PtLayout.kPtPageWords + i * PtLayout.kSpteWords;
      const flags = pt[sptep]!;
      const pfn = pt[sptep + 1]!;
      const gfn = baseGfn + i * step;
      if (flags === Spte.FROZEN_SPTE) {
        report('frozen-spte', `gfn 0x${gfn.toString(16)} level ${level} still frozen`);
        continue;
      }
      if (!isShadowPresentPte(flags)) continue;
      if (!isLastSpte(flags, level)) {
        walk(pfn, level - 1, gfn);
        continue;
      }
      leaves[level - 1]!++;
      const inv = checkSpteWritableInvariants(flags);
      if (inv) report('spte-writable', `gfn 0x${gfn.toString(16)}: ${inv}`);
      const slot = vm.searchMemslots(gfn);
      if (slot === null || gfn + step > slot.endGfn) {
        report('spte-outside-slot', `gfn 0x${gfn.toString(16)} level ${level} not inside one memslot`);
        continue;
      }
      if (level > PgLevel.PG_LEVEL_4K) {
        const d = disallowLpage(slot.lpage, slot.baseGfn, gfn, level);
        if (d !== 0) report((d & Lpage.KVM_LPAGE_MIXED_FLAG) !== 0 ? 'huge-mixed-attributes' : 'huge-disallowed', `gfn 0x${gfn.toString(16)} mapped at level ${level} with disallow_lpage 0x${(d >>> 0).toString(16)}`);
      }
      if (frames.owner(pfn) !== vm.owner) report('foreign-frame', `gfn 0x${gfn.toString(16)} maps pfn 0x${pfn.toString(16)} owned by ${frames.owner(pfn)}, not VM ${vm.id}`);
      if (frames.refcount(frames.head(pfn)) <= 0) report('freed-frame', `gfn 0x${gfn.toString(16)} maps pfn 0x${pfn.toString(16)} with no host reference`);
      if (slot.gmem !== null || vm.privateMem) {
        auditPrivateLeaf(vm, slot, gfn, level, flags, pfn, report);
        continue;
      }
      // Every 4K page under the leaf must be the page the host maps for that gfn now.
      for (let k = 0; k < step; k++) {
        const host = slot.vma === null ? -1 : slot.vma.lookup(slot.vmaOffset + (gfn + k - slot.baseGfn));
        if (host !== pfn + k) {
          report('stale-spte', `gfn 0x${(gfn + k).toString(16)} (level ${level} leaf) maps pfn 0x${(pfn + k).toString(16)} but the host maps ${host < 0 ? 'nothing' : '0x' + host.toString(16)}`);
          break;
        }
      }
      if (level > PgLevel.PG_LEVEL_4K && slot.vma !== null && slot.vma.mappingOrder(slot.vmaOffset + (gfn - slot.baseGfn)) < (level - 1) * 9) {
        report('huge-beyond-host-mapping', `gfn 0x${gfn.toString(16)} mapped at level ${level} where the host maps only ${4 << slot.vma.mappingOrder(slot.vmaOffset + (gfn - slot.baseGfn))} KiB`);
      }
    }
  };
  walk(vm.root, PgLevel.PT64_ROOT_4LEVEL, 0);
  // The shadow MMU's pages come from the same pool and its leaves count in the same page stats.
  if (vm.sp.usedPages() > 0 || vm.memslotsHaveRmaps()) {
    const sh = auditShadow(vm, report);
    for (let i = 0; i < 3; i++) leaves[i]! += sh.leaves[i]!;
    ptPages += sh.pages;
  }
  const stale = Atomics.load(vm.w, VmLayout.kVmStaleWrites);
  if (stale !== 0) report('stale-write', `${stale} guest store(s) went through a stale translation (first at gfn 0x${Atomics.load(vm.w, VmLayout.kVmStaleWriteGfn).toString(16)})`);

  const stats = vm.getStats();
  const names = ['pages_4k', 'pages_2m', 'pages_1g'] as const;
  names.forEach((n, i) => {
    if (stats[n] !== leaves[i]) report('page-stats', `${n} = ${stats[n]} but the page tables hold ${leaves[i]}`);
  });

  let cached = 0;
  for (let i = 0; i < vm.nrVcpus; i++) cached += vm.vcpu(i).cachedMmuPages().length;
  const retired = vm.pool.retiredCount();
  if (vm.pool.inUse() !== ptPages + cached + retired) {
    report('pt-pages', `pool says ${vm.pool.inUse()} pages in use; found ${ptPages} reachable + ${cached} cached + ${retired} retired`);
  }
  if (vm.pool.inUse() + vm.pool.freeCount() !== vm.pool.capacity - 1) {
    report('pt-pages', `pool leaks: ${vm.pool.inUse()} in use + ${vm.pool.freeCount()} free != ${vm.pool.capacity - 1}`);
  }

  // Folio refcounts against the host mappings, and the owner's accounting. A folio's entries are
  // consecutive in its VMA (one per hugetlb page, up to 512 for a THP), so runs of equal heads
  // are counted in one pass with no per-folio table (a 1 TiB host has 2^28 frames).
  let owned = 0;
  const checkRun = (head: number, refs: number) => {
    const rc = frames.refcount(head);
    if (rc !== refs) report('frame-refcount', `folio 0x${head.toString(16)} refcount ${rc}, mapped ${refs} times`);
    if (frames.owner(head) !== vm.owner) report('foreign-frame', `VMA maps folio 0x${head.toString(16)} owned by ${frames.owner(head)}`);
    owned += 2 ** frames.order(head);
  };
  for (const vma of vm.vmas) {
    if (vma.cache !== null) {
      auditSharedVma(vma, frames, checkRun, report);
      continue;
    }
    let runHead = -1;
    let runRefs = 0;
    for (let g = 0; g < vma.map.length; g++) {
      const e = vma.map[g]!;
      if (e === 0) continue;
      const head = frames.head(e - 1);
      if (head === runHead) {
        runRefs++;
        continue;
      }
      if (runHead >= 0) checkRun(runHead, runRefs);
      runHead = head;
      runRefs = 1;
    }
    if (runHead >= 0) checkRun(runHead, runRefs);
  }
  for (const fd of vm.gmems) owned += auditGmemFile(fd.file, frames, vm.owner, report);
  if (vm.privateMem) for (const slot of vm.memslots) auditMixedFlags(vm, slot, report);
  if (owned !== vm.host.ownedPages(vm.owner)) report('owner-accounting', `VM ${vm.id} owns ${vm.host.ownedPages(vm.owner)} pages by accounting, ${owned} by recount`);
  return { pages: leaves, ptPages };
}

/**
 * A leaf of a guest_memfd slot or of a VM with private memory: each 4K page under it is the page
 * its current attribute resolves to (private: the file's; shared: the file's when the slot is
 * gmem-only and the page is shared there, else the host mapping's), and the leaf was made for
 * that attribute (kSptePrivate): a private gfn is never mapped through the shared path nor a
 * shared one through the private path. A huge leaf needs a folio at least as large.
 */
function auditPrivateLeaf(vm: Vm, slot: Memslot, gfn: number, level: number, flags: number, pfn: number, report: (kind: string, detail: string) => void): void {
  const step = pagesPerHpage(level);
  const f = slot.gmem;
  for (let k = 0; k < step; k++) {
    const g = gfn + k;
    const priv = kvmMemIsPrivate(vm, slot, g);
    if (((flags & Spte.kSptePrivate) !== 0) !== priv) {
      report(priv ? 'private-via-shared' : 'shared-via-private', `gfn 0x${g.toString(16)} is ${priv ? 'private' : 'shared'} but its level ${level} leaf was made for a ${priv ? 'shared' : 'private'} access`);
      return;
    }
    const off = slot.gmemPgoff + (g - slot.baseGfn);
    let want: number;
    if (priv) want = f === null ? -1 : f.lookup(off);
    else if (slot.gmemOnly) want = f!.isPrivate(off) ? -1 : f!.lookup(off);
    else want = slot.vma === null ? -1 : slot.vma.lookup(slot.vmaOffset + (g - slot.baseGfn));
    if (want !== pfn + k) {
      report('stale-spte', `gfn 0x${g.toString(16)} (level ${level} ${priv ? 'private' : 'shared'} leaf) maps pfn 0x${(pfn + k).toString(16)} but it resolves to ${want < 0 ? 'nothing' : '0x' + want.toString(16)}`);
      return;
    }
  }
  if (level > PgLevel.PG_LEVEL_4K && f !== null && (kvmMemIsPrivate(vm, slot, gfn) || slot.gmemOnly)) {
    const order = f.folioOrder(slot.gmemPgoff + (gfn - slot.baseGfn));
    if (order < (level - 1) * 9) report('huge-beyond-folio', `gfn 0x${gfn.toString(16)} mapped at level ${level} over a guest_memfd folio of order ${order}`);
  }
}

/**
 * KVM_LPAGE_MIXED_FLAG against a recount: every huge page (2M, 1G) the slot wholly holds is
 * flagged exactly when its gfns do not all share one attribute. (Huge pages cut by the slot's
 * ends are never tracked: lpage_info disallows them at creation.) A wrong flag may hide behind
 * a split folio for a while; the recount does not let it.
 */
function auditMixedFlags(vm: Vm, slot: Memslot, report: (kind: string, detail: string) => void): void {
  for (let level = PgLevel.PG_LEVEL_2M; level <= PgLevel.PG_LEVEL_1G; level++) {
    const n = pagesPerHpage(level);
    for (let gfn = Math.ceil(slot.baseGfn / n) * n; gfn + n <= slot.endGfn; gfn += n) {
      const mixed = (disallowLpage(slot.lpage, slot.baseGfn, gfn, level) & Lpage.KVM_LPAGE_MIXED_FLAG) !== 0;
      if (mixed === kvmRangeUniform(vm, slot, gfn, gfn + n)) {
        report('mixed-flag', `slot ${slot.id} gfn 0x${gfn.toString(16)} level ${level}: KVM_LPAGE_MIXED_FLAG is ${mixed ? 'set' : 'clear'} but its attributes are ${mixed ? 'uniform' : 'mixed'}`);
        return;
      }
    }
  }
}

/**
 * A guest_memfd's folios: the file holds one reference on each (a hugetlb page: one, however it
 * is split), a page the host maps is shared, and the file's counters match a recount. Returns
 * the pages the file owns (in the file, plus stranded pieces).
 */
function auditGmemFile(f: GmemFile, frames: FrameTable, owner: number, report: (kind: string, detail: string) => void): number {
  let owned = 0;
  let present = 0;
  let hostMapped = 0;
  let priv = 0;
  if (f.hugetlb) {
    for (let hi = 0; hi < f.hugeHead!.length; hi++) {
      const e = f.hugeHead![hi]!;
      if (e === 0) continue;
      owned += 2 ** f.order;
      const rc = frames.refcount(e - 1);
      if (rc !== 1) report('frame-refcount', `guest_memfd ${f.ino} hugetlb page 0x${(e - 1).toString(16)} refcount ${rc}, held once by the file`);
    }
  }
  let lastHead = -1;
  for (let p = 0; p < f.npages; p++) {
    if (f.isPrivate(p)) priv++;
    if (f.hostMapped[p] !== 0) {
      hostMapped++;
      if (f.isPrivate(p)) report('host-mapped-private', `guest_memfd ${f.ino} page ${p} is private and mapped by the host`);
    }
    const e = f.map[p]!;
    if (e === 0) continue;
    present++;
    if (frames.owner(e - 1) !== owner) report('foreign-frame', `guest_memfd ${f.ino} page ${p} holds pfn 0x${(e - 1).toString(16)} owned by ${frames.owner(e - 1)}`);
    if (f.hugetlb) continue;
    const head = frames.head(e - 1);
    if (head === lastHead) continue;
    lastHead = head;
    owned += 2 ** frames.order(head);
    const rc = frames.refcount(head);
    if (rc !== 1) report('frame-refcount', `guest_memfd ${f.ino} folio 0x${head.toString(16)} refcount ${rc}, held once by the file`);
  }
  const c = (w: GmemWord) => f.counter(w);
  if (present !== c(GmemWord.kAllocated)) report('gmem-accounting', `guest_memfd ${f.ino} says ${c(GmemWord.kAllocated)} pages allocated, the file holds ${present}`);
  if (hostMapped !== c(GmemWord.kHostMapped)) report('gmem-accounting', `guest_memfd ${f.ino} says ${c(GmemWord.kHostMapped)} pages host-mapped, recount ${hostMapped}`);
  if (priv !== c(GmemWord.kPrivatePages)) report('gmem-accounting', `guest_memfd ${f.ino} says ${c(GmemWord.kPrivatePages)} pages private, recount ${priv}`);
  if (f.hugetlb && owned !== present + c(GmemWord.kStranded)) report('gmem-accounting', `guest_memfd ${f.ino}: ${owned} pages in huge pages, ${present} in the file + ${c(GmemWord.kStranded)} stranded`);
  return owned;
}

/**
 * A shared backing (one folio per granule): each folio is referenced by the page cache and by
 * the mapping if it maps it, and a mapped granule maps the cached folio, never another.
 */
function auditSharedVma(vma: Vma, frames: FrameTable, checkRun: (head: number, refs: number) => void, report: (kind: string, detail: string) => void): void {
  const cache = vma.cache!;
  for (let g = 0; g < vma.map.length; g++) {
    const e = vma.map[g]!;
    const c = cache[g]!;
    if (e !== 0 && e !== c) report('shared-mapping-mismatch', `${vma.backing} mapping ${vma.id} maps pfn 0x${(e - 1).toString(16)} at granule ${g}, page cache holds ${c === 0 ? 'none' : `0x${(c - 1).toString(16)}`}`);
    if (c !== 0) checkRun(c - 1, (e !== 0 ? 1 : 0) + 1);
    else if (e !== 0) checkRun(e - 1, 1);
  }
}

/** Host-wide balance: free + owned + hugetlb reserve = all frames. */
export function auditHost(host: Host, owners: number[], out: AuditViolation[]): void {
  const a = host.accounting();
  let ownedNonHuge = 0;
  for (const o of owners) ownedNonHuge += host.ownedPages(o);
  const hugeInUse = (a.hugetlb2m.total - a.hugetlb2m.free) * 512 + (a.hugetlb1g.total - a.hugetlb1g.free) * 262144;
  ownedNonHuge -= hugeInUse;
  const reserve = a.hugetlb2m.total * 512 + a.hugetlb1g.total * 262144;
  // Every thread drains its per-cpu caches before it reports, so nothing hides there.
  if (a.free + ownedNonHuge + reserve !== a.pages) {
    out.push({ vm: null, kind: 'host-accounting', detail: `free ${a.free} + owned ${ownedNonHuge} + hugetlb ${reserve} != ${a.pages} frames (an undrained per-thread cache, or a leak)` });
  }
}

export function audit(host: Host, vms: Vm[]): AuditResult {
  const violations: AuditViolation[] = [];
  const recount: AuditResult['recount'] = [];
  for (const vm of vms) {
    const r = auditVm(vm, violations);
    recount.push({ vm: vm.id, pages_4k: r.pages[0]!, pages_2m: r.pages[1]!, pages_1g: r.pages[2]!, ptPages: r.ptPages });
  }
  auditHost(host, vms.map((v) => v.owner), violations);
  return { ok: violations.length === 0, violations, recount };
}
