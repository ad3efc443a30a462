/**
 * The TDP MMU fault path: kvm_tdp_page_fault() -> kvm_mmu_faultin_pfn() -> kvm_tdp_mmu_map(),
 * under mmu_lock held for read, installing SPTEs with cmpxchg and honouring the frozen-SPTE
 * protocol and the mmu_invalidate_seq retry rule.
 */
import {
  PgLevel, gfnRoundForLevel, isFrozenSpte, isLargePte, isLastSpte, isShadowPresentPte, isWritablePte, Spte, makeSpteFlags, maxLevelForOrder, pagesPerHpage,
} from '../spte.js';
import { lpageMaxLevel } from '../lpage.js';
import { readLock, readUnlock } from '../../../shm/rwlock.js';
import { count, countN, countWaitNs, type Metrics } from '../../../metrics/counters.js';
import { Op } from '../../../metrics/ops.js';
import { hostFault, kHostFaultUffd, type Vma } from '../../../host/mm.js';
import { kvmMemIsPrivate, kvmMemIsPrivateHint } from '../../attributes.js';
import { kvmGmemGetPfn } from '../../guest_memfd.js';
import { fail } from '../../../host/errno.js';
import { KVM_MEM_READONLY } from '../../memslot.js';
import { VmLayout } from '../../vm-layout.js';
import { isPageFaultStale, mmuInvalidateRetryGfnUnsafe, maybeParkAtHook, HookPoint } from '../../invalidate.js';
import { kvmFlushRemoteTlbs } from '../../requests.js';
import { tdpMmuSetSpteAtomic } from './spte-change.js';
import { tdpMmuSplitHugePage, clearSp } from './split.js';
import type { Vcpu } from '../../vcpu.js';
import { fastPageFault } from './fast-pf.js';
import { pscLeafTable } from './walk.js';
import { KvmReq, VcpuLayout } from '../../vcpu-layout.js';
import { handleMmioPageFault, makeMmioSpteFlags } from './mmio.js';
import { kvmShadowMapPfn } from '../shadow/page-fault.js';
import { vcpuMmuReadLock, vcpuMmuReadUnlock } from '../../mmu-lock.js';
import type { Memslot } from '../../memslot.js';

// enum ret_pf (mmu_internal.h)
export const enum RetPf {
  RET_PF_CONTINUE = 0,
  RET_PF_RETRY = 1,
  RET_PF_EMULATE = 2,
  RET_PF_WRITE_PROTECTED = 3,
  RET_PF_INVALID = 4,
  RET_PF_FIXED = 5,
  RET_PF_SPURIOUS = 6,
  /**
   * Not a KVM return code: the vCPU thread sleeps in handle_userfault() inside
   * __kvm_faultin_pfn()'s GUP. The fault is suspended where it is (fault.* keeps its state, the
   * vCPU stays inside KVM_RUN and its SRCU read side) and goes on in kvmTdpPageFaultResume()
   * once the VMM's reader resolved the page; nothing exits to userspace.
   */
  RET_PF_UFFD_BLOCKED = 7,
  /**
   * Not a KVM return code: kvm_mmu_prepare_memory_fault_exit() filled run->memory_fault and the
   * fault returns -EFAULT, i.e. KVM_RUN exits to userspace with KVM_EXIT_MEMORY_FAULT.
   */
  RET_PF_MEMORY_FAULT = 8,
}

/** struct kvm_page_fault, one per vCPU, reused. */
export class KvmPageFault {
  gfn = 0;
  write = false;
  slot: Memslot | null = null;
  pfn = 0;
  mmuSeq = 0;
  hostLevel = PgLevel.PG_LEVEL_4K;
  maxLevel = PgLevel.PG_LEVEL_4K;
  goalLevel = PgLevel.PG_LEVEL_4K;
  mapWritable = true;
  /**
   * PFERR_RSVD_MASK: the access hit an MMIO SPTE of the current generation (an EPT misconfig,
   * handle_mmio_page_fault()), not an EPT violation: no kvm_mmu_do_page_fault(), no pf_taken.
   */
  rsvd = false;
  /** The leaf the fault installed or found (for the TLB fill on re-entry); flags 0 if none. */
  leafFlags = 0;
  leafPfn = 0;
  leafLevel = 0;
  /** The VMA page GUP resolves (kept across a userfaultfd sleep). */
  hostIdx = 0;
  /** The faulting gva (page number) of a shadow-MMU fault (the gfn is what the guest maps it to). */
  gva = 0;
  /**
   * fault->is_private: on a KVM_X86_SW_PROTECTED_VM, kvm_mmu_page_fault() derives
   * PFERR_PRIVATE_ACCESS from kvm_mem_is_private() before the fault runs.
   */
  isPrivate = false;
}

/** kvm_tdp_page_fault(): returns a RET_PF_* code. */
export function kvmTdpPageFault(vcpu: Vcpu, gfn: number, write: boolean, present = false): number {
  const vm = vcpu.vm;
  const m = vm.ctx.metrics;
  const fault = vcpu.fault;
  fault.gfn = gfn;
  fault.write = write;
  fault.leafFlags = 0;
  fault.rsvd = false;

  // kvm_mmu_do_page_fault() finds the slot; kvm_mmu_page_fault() made a SW-protected VM's access
  // private where the attributes say so (a hint: kvmTdpFaultinGmem() checks again, ordered after
  // the sequence snapshot, as kvm_mmu_faultin_pfn() does).
  const slot = vcpu.gfnToMemslot(gfn);
  fault.isPrivate = vm.privateMem && kvmMemIsPrivateHint(vm, slot, gfn);
  // kvm_mmu_faultin_pfn(): snapshot the invalidation sequence before resolving the pfn.
  fault.mmuSeq = Atomics.load(vm.w, VmLayout.kVmInvSeq);
  if (slot === null) return kvmTdpNoslotFault(vcpu, fault);
  count(m, Op.memslot_lookup);
  fault.slot = slot;
  // A read-only memslot is never mapped writable (nor host-writable).
  fault.mapWritable = (slot.flags & KVM_MEM_READONLY) === 0;
  // __gfn_to_hva_many() gives KVM_HVA_ERR_RO_BAD for a write, so the pfn is KVM_PFN_ERR_RO_FAULT
  // and kvm_handle_error_pfn() emulates the store (no MMIO SPTE: a read of the gfn must still
  // map): the emulator's write to a read-only gfn becomes KVM_EXIT_MMIO.
  if (write && !fault.mapWritable) return RetPf.RET_PF_EMULATE;
  // fast_page_fault() before anything else: a write-protected, MMU-writable leaf needs no lock.
  if (write && present) {
    const r = fastPageFault(vcpu, slot, gfn, write);
    if (r !== RetPf.RET_PF_INVALID) return r;
  }
  // kvm_mmu_faultin_pfn(): a slot being deleted or moved (KVM_MEMSLOT_INVALID) is retried until
  // the update is done, so nothing is mapped for it after kvm_arch_flush_shadow_memslot().
  if (slot.invalid()) return retry(m);
  if (mmuInvalidateRetryGfnUnsafe(vm, gfn)) {
    count(m, Op.fault_retry);
    return RetPf.RET_PF_RETRY;
  }
  if (vm.privateMem || slot.gmem !== null) return kvmTdpFaultinGmem(vcpu, fault, slot);
  const vma = slot.vma;
  if (vma === null) return faultFailed(gfn, slot);
  fault.hostIdx = slot.vmaOffset + (gfn - slot.baseGfn);
  return kvmTdpFaultinPfn(vcpu, fault, slot, vma);
}

/**
 * The GUP of __kvm_mmu_faultin_pfn() and the rest of the fault. GUP populates the host page if
 * the VMM never touched it, or, on a userfaultfd-registered range, sleeps until the VMM's reader
 * resolved it (RET_PF_UFFD_BLOCKED; kvmTdpPageFaultResume() goes on from here).
 */
function kvmTdpFaultinPfn(vcpu: Vcpu, fault: KvmPageFault, slot: Memslot, vma: Vma): number {
  const vm = vcpu.vm;
  const m = vm.ctx.metrics;
  const gfn = fault.gfn;
  const ht = vm.ctx.hostThread;
  // The faulting thread as a userfaultfd sees it, for this GUP only: back to -1 after, so a VMM
  // access on this thread afterwards is the VMM's (handleUserfault() refuses it), not this vCPU's.
  ht.uffdWaiter = vcpu.idx;
  ht.faultWrite = fault.write;
  const pfn = hostFault(ht, vma, fault.hostIdx);
  ht.uffdWaiter = -1;
  if (pfn < 0) {
    if (pfn === kHostFaultUffd) {
      count(m, Op.uffd_fault);
      return RetPf.RET_PF_UFFD_BLOCKED;
    }
    return faultFailed(gfn, slot);
  }
  if (ht.populated) {
    count(m, Op.host_fault);
    vcpu.countZeroing(ht.lastOrder);
  }
  fault.hostLevel = maxLevelForOrder(ht.lastOrder);
  fault.pfn = pfn;
  return kvmTdpMapPfn(vcpu, fault, slot);
}

/**
 * A fault on a VM with private memory or on a guest_memfd slot (out of line: the anonymous
 * path above stays as it was). kvm_mmu_faultin_pfn(): the access's privateness must still match
 * the attributes (a conversion in between exits KVM_EXIT_MEMORY_FAULT); a private gfn resolves
 * through guest_memfd (a slot without one exits), a shared one through the file when it is
 * gmem-only (GUEST_MEMFD_FLAG_MMAP) — the page must be shared there — else through the host
 * mapping. The folio order bounds the level.
 */
function kvmTdpFaultinGmem(vcpu: Vcpu, fault: KvmPageFault, slot: Memslot): number {
  const vm = vcpu.vm;
  const gfn = fault.gfn;
  if (kvmMemIsPrivate(vm, slot, gfn) !== fault.isPrivate) return RetPf.RET_PF_MEMORY_FAULT;
  const gmem = slot.gmem;
  if (!fault.isPrivate && !slot.gmemOnly) {
    const vma = slot.vma;
    if (vma === null) return faultFailed(gfn, slot);
    fault.hostIdx = slot.vmaOffset + (gfn - slot.baseGfn);
    return kvmTdpFaultinPfn(vcpu, fault, slot, vma);
  }
  // kvm_gmem_get_pfn(): a shared fault on a page the file holds private cannot be served. On a
  // VM with private memory the file's shareability is the attribute just re-checked (an MMAP
  // file exists only on the 'gmem' path there), so only a default VM's file needs the look.
  if (gmem === null || (!fault.isPrivate && !vm.privateMem && gmem.isPrivate(slot.gmemPgoff + (gfn - slot.baseGfn)))) return RetPf.RET_PF_MEMORY_FAULT;
  const pfn = kvmGmemGetPfn(vm, slot, gfn);
  if (pfn < 0) return faultFailed(gfn, slot);
  fault.hostLevel = maxLevelForOrder(vm.ctx.hostThread.lastOrder);
  fault.pfn = pfn;
  return kvmTdpMapPfn(vcpu, fault, slot);
}

/** The rest of the fault once the pfn is known: mmu_lock for read, the stale check, the map. */
function kvmTdpMapPfn(vcpu: Vcpu, fault: KvmPageFault, slot: Memslot): number {
  const vm = vcpu.vm;
  // A shadow-MMU fault (paging_tmpl.h's FNAME(page_fault)) shares kvm_mmu_faultin_pfn() up to here.
  // A nested guest's (L2's) faults are shadow faults too, on a TDP VM (nested EPT).
  if (vcpu.shadowPaging) return kvmShadowMapPfn(vcpu, fault, slot);
  const m = vm.ctx.metrics;
  const gfn = fault.gfn;
  maybeParkAtHook(vm, gfn, HookPoint.kHookAfterFaultin);

  // A top-up that left the epoch (SRCU) may have slept through a memslot update: start over.
  if (vcpu.topupMmuCache()) return retry(m);
  // With the modeled lock (a nested guest's write-side faults beside these), the read hold is
  // placed on the timeline too (mmu-lock.ts); otherwise the plain read lock.
  if (vm.lockModel !== null) return kvmTdpMapPfnModeled(vcpu, fault, slot);
  const waited = readLock(vm.w, VmLayout.kVmMmuLock, vcpu.w, VcpuLayout.kVcpuMmuLockReader);
  count(m, Op.lock_read);
  if (waited > 0) countWaitNs(m, Op.lock_wait_ns, waited);
  let r: number;
  if (isPageFaultStale(vm, fault.mmuSeq, gfn)) {
    count(m, Op.fault_retry);
    r = RetPf.RET_PF_RETRY;
  } else {
    kvmMmuHugepageAdjust(fault, slot);
    maybeParkAtHook(vm, gfn, HookPoint.kHookAfterHugepageAdjust);
    r = kvmTdpMmuMap(vcpu, fault);
  }
  readUnlock(vm.w, VmLayout.kVmMmuLock, vcpu.w, VcpuLayout.kVcpuMmuLockReader);
  return r;
}

/** kvmTdpMapPfn()'s locked part with the read hold placed on the modeled lock timeline. */
function kvmTdpMapPfnModeled(vcpu: Vcpu, fault: KvmPageFault, slot: Memslot): number {
  const vm = vcpu.vm;
  const m0 = vcpuMmuReadLock(vcpu);
  let r: number;
  if (isPageFaultStale(vm, fault.mmuSeq, fault.gfn)) r = retry(vm.ctx.metrics);
  else {
    kvmMmuHugepageAdjust(fault, slot);
    r = kvmTdpMmuMap(vcpu, fault);
  }
  vcpuMmuReadUnlock(vcpu, m0);
  return r;
}

/**
 * The vCPU thread was woken in handle_userfault(): GUP retries the fault (VM_FAULT_RETRY, then
 * FAULT_FLAG_TRIED), which now finds the page the reader mapped, and the fault goes on with the
 * state it had: the slot (the vCPU held SRCU, so it still exists) and the mmu_invalidate_seq
 * snapshot from before GUP, so an invalidation that ran while it slept makes it retry.
 */
export function kvmTdpPageFaultResume(vcpu: Vcpu): number {
  const fault = vcpu.fault;
  const slot = fault.slot!;
  return kvmTdpFaultinPfn(vcpu, fault, slot, slot.vma!);
}

/**
 * No memslot covers the gfn (out of line: never taken by accesses to guest memory).
 *
 * First what the EPT-misconfig exit does when the hardware walk ended on an MMIO SPTE of the
 * current generation: handle_mmio_page_fault() emulates at once, without a memslot lookup. Else
 * kvm_handle_noslot_fault() returns RET_PF_CONTINUE and kvm_tdp_mmu_map() installs an MMIO SPTE
 * at 4K (kvm_mmu_hugepage_adjust() leaves a noslot pfn at 4K), under mmu_lock for read with the
 * usual stale-fault check; the access is emulated either way (RET_PF_EMULATE).
 */
function kvmTdpNoslotFault(vcpu: Vcpu, fault: KvmPageFault): number {
  const vm = vcpu.vm;
  const m = vm.ctx.metrics;
  // The shadow MMU caches no MMIO SPTE here: every such access is emulated.
  if (vcpu.shadowPaging) {
    count(m, Op.memslot_lookup);
    return RetPf.RET_PF_EMULATE;
  }
  if (handleMmioPageFault(vcpu, fault.gfn)) {
    fault.rsvd = true;
    return RetPf.RET_PF_EMULATE;
  }
  count(m, Op.memslot_lookup);
  fault.slot = null;
  fault.mapWritable = false;
  fault.maxLevel = PgLevel.PG_LEVEL_4K;
  fault.goalLevel = PgLevel.PG_LEVEL_4K;
  // No page-table pages to spare: emulate without an MMIO SPTE, as KVM does with MMIO caching off.
  if (!vcpu.tryTopupMmuCache()) return RetPf.RET_PF_EMULATE;
  const waited = readLock(vm.w, VmLayout.kVmMmuLock, vcpu.w, VcpuLayout.kVcpuMmuLockReader);
  count(m, Op.lock_read);
  if (waited > 0) countWaitNs(m, Op.lock_wait_ns, waited);
  const r = isPageFaultStale(vm, fault.mmuSeq, fault.gfn) ? retry(m) : kvmTdpMmuMap(vcpu, fault);
  readUnlock(vm.w, VmLayout.kVmMmuLock, vcpu.w, VcpuLayout.kVcpuMmuLockReader);
  return r;
}

/**
 * tdp_mmu_map_handle_target_level() for a noslot fault: make_mmio_spte() with the memslot
 * generation (the gfn in the pfn word). An identical SPTE is left alone (another vCPU made it);
 * either way the access is emulated.
 */
function tdpMmuMapMmioSpte(vcpu: Vcpu, fault: KvmPageFault): number {
  const vm = vcpu.vm;
  const it = vcpu.iter;
  const flags = makeMmioSpteFlags(vm.generation);
  if ((it.oldFlags !== flags || it.oldPfn !== fault.gfn) && !tdpMmuSetSpteAtomic(vm, it, flags, fault.gfn)) return retry(vm.ctx.metrics);
  return RetPf.RET_PF_EMULATE;
}

/**
 * KVM_RUN fails with EFAULT (kvm_handle_error_pfn() -> kvm_mmu_prepare_memory_fault_exit()); the
 * reason follows from the fault's state, checked in the order the fault path checks it. Out of
 * line: the messages' bytecode would otherwise count against V8's inlining budget on every
 * fault, which is what keeps the hot helpers inlined.
 */
function faultFailed(gfn: number, slot: Memslot): never {
  const at = `gfn 0x${gfn.toString(16)}`;
  if (slot.vma === null) return fail('EFAULT', `KVM_RUN: memslot ${slot.id} is not backed by a mapping at hva 0x${slot.userspaceAddr.toString(16)}`);
  return fail('EFAULT', `KVM_RUN: host out of memory backing ${at} (${slot.vma.backing}); size the host or hugetlb pools for the guest`);
}

/**
 * kvm_mmu_hugepage_adjust(): the goal level is the largest the host mapping, lpage_info and the
 * slot allow; dirty logging forces 4K.
 */
export function kvmMmuHugepageAdjust(fault: KvmPageFault, slot: Memslot): void {
  let max = Math.min(fault.hostLevel, PgLevel.PG_LEVEL_1G);
  if (slot.dirtyLogging()) max = PgLevel.PG_LEVEL_4K;
  else if (max > PgLevel.PG_LEVEL_4K) max = lpageMaxLevel(slot.lpage, slot.baseGfn, fault.gfn, max);
  fault.maxLevel = max;
  fault.goalLevel = max;
}

/**
 * kvm_mmu_max_mapping_level(): the largest level the host mapping and lpage_info allow for gfn,
 * ignoring dirty logging (used when recovering huge pages).
 */
export function kvmMmuMaxMappingLevel(slot: Memslot, gfn: number): number {
  const vma = slot.vma;
  if (vma === null) return PgLevel.PG_LEVEL_4K;
  const idx = slot.vmaOffset + (gfn - slot.baseGfn);
  if (vma.lookup(idx) < 0) return PgLevel.PG_LEVEL_4K;
  const host = Math.min(maxLevelForOrder(vma.mappingOrder(idx)), PgLevel.PG_LEVEL_1G);
  return host > PgLevel.PG_LEVEL_4K ? lpageMaxLevel(slot.lpage, slot.baseGfn, gfn, host) : PgLevel.PG_LEVEL_4K;
}

/**
 * kvm_tdp_mmu_map(): walk from the root towards fault.goalLevel, installing a table wherever a
 * level is missing (or splitting a huge page that is in the way), then the leaf. The iterator
 * starts with minLevel = goalLevel, so the walk ends where tdp_mmu_for_each_pte() would return.
 */
export function kvmTdpMmuMap(vcpu: Vcpu, fault: KvmPageFault): number {
  const vm = vcpu.vm;
  const m = vm.ctx.metrics;
  const it = vcpu.iter;
  const goal = fault.goalLevel;
  const table = goal === PgLevel.PG_LEVEL_4K ? cachedTableUnderLock(vcpu, fault.gfn) : 0;
  if (table > 0) it.startInTable(table, goal, fault.gfn);
  else it.start(vm.root, goal, fault.gfn);
  for (;;) {
    // Another thread froze the SPTE: give up and retry rather than allocate for nothing.
    if (isFrozenSpte(it.oldFlags)) return retry(m);
    if (it.level === goal) {
      countN(m, Op.spte_read, PgLevel.PT64_ROOT_4LEVEL + 1 - goal);
      return tdpMmuMapHandleTargetLevel(vcpu, fault);
    }
    // Non-present, or a huge page that must be split to map at a lower level.
    if (!isShadowPresentPte(it.oldFlags) || isLargePte(it.oldFlags)) {
      const sp = vcpu.takeMmuPage();
      count(m, Op.pt_page_alloc);
      let ok: boolean;
      if (isShadowPresentPte(it.oldFlags)) {
        ok = tdpMmuSplitHugePage(vm, it, sp, true);
        if (!ok) clearSp(vm, sp);
      } else {
        vm.pool.setInfo(sp, it.level - 1, it.gfn);
        ok = tdpMmuSetSpteAtomic(vm, it, Spte.kNonLeafFlags, sp);
      }
      if (!ok) {
        vcpu.returnMmuPage(sp);
        return retry(m);
      }
    }
    // Step down into the lower level page table (present and non-leaf by now).
    if (!it.stepDown()) return retry(m);
  }
}

/**
 * The 4K table the walk that took this violation cached (walk.ts), if it may be used under
 * mmu_lock held for read: the vCPU is still in the epoch it cached it in (no re-entry since), so
 * the page is not freed; a table unlinked by another reader has all its entries frozen by
 * handle_removed_pt() (the install then retries) or is being removed, and that removal takes
 * over whatever is installed first — KVM's race between a fault mid-walk and a table removal.
 * A table unlinked under mmu_lock held for write (a zap) keeps its non-present entries as they
 * are; every such zap requests a TLB flush of every vCPU before it drops the lock, so a pending
 * KVM_REQ_TLB_FLUSH (seen through the lock's acquire) means: walk from the root. Op counts stay
 * the full walk's.
 */
function cachedTableUnderLock(vcpu: Vcpu, gfn: number): number {
  if ((Atomics.load(vcpu.w, VcpuLayout.kVcpuRequests) & KvmReq.KVM_REQ_TLB_FLUSH) !== 0) return 0;
  return pscLeafTable(vcpu.w, gfn);
}

function retry(m: Metrics): number {
  count(m, Op.fault_retry);
  return RetPf.RET_PF_RETRY;
}

/** tdp_mmu_map_handle_target_level() */
function tdpMmuMapHandleTargetLevel(vcpu: Vcpu, fault: KvmPageFault): number {
  const vm = vcpu.vm;
  const it = vcpu.iter;
  if (fault.slot === null) return tdpMmuMapMmioSpte(vcpu, fault);
  const level = it.level;
  const old = it.oldFlags;
  // Already mapped with the access allowed: another vCPU won the race (RET_PF_SPURIOUS).
  if (isShadowPresentPte(old) && isLastSpte(old, level) && (!fault.write || isWritablePte(old))) {
    setLeaf(fault, old, it.oldPfn, level);
    return RetPf.RET_PF_SPURIOUS;
  }
  const pfn = fault.pfn - (fault.gfn - it.gfn);
  if (level > PgLevel.PG_LEVEL_4K && pfn % pagesPerHpage(level) !== 0) hugePfnMisaligned(pfn, level);
  const flags = makeSpteFlags(level, fault.mapWritable, fault.mapWritable) | (fault.isPrivate ? Spte.kSptePrivate : 0);
  if (!tdpMmuSetSpteAtomic(vm, it, flags, pfn)) return retry(vm.ctx.metrics);
  // Replacing a present non-leaf (a table where a huge page now goes) needs a flush.
  if (isShadowPresentPte(old) && !isLastSpte(old, level)) kvmFlushRemoteTlbs(vm);
  // make_spte(): a writable SPTE in a dirty-logged slot means the page is dirty now.
  if (fault.mapWritable) {
    if (fault.slot!.dirtyLogging()) vm.markPageDirtyInSlot(fault.slot!, fault.gfn, vcpu);
    vm.onWritableSpte(pfn, level, false);
  }
  setLeaf(fault, flags, pfn, level);
  return RetPf.RET_PF_FIXED;
}

function setLeaf(fault: KvmPageFault, flags: number, pfn: number, level: number): void {
  fault.leafFlags = flags;
  fault.leafPfn = pfn + (fault.gfn - gfnRoundForLevel(fault.gfn, level));
  fault.leafLevel = level;
}


function hugePfnMisaligned(pfn: number, level: number): never {
  throw new Error(`BUG: huge pfn 0x${pfn.toString(16)} misaligned at level ${level}`);
}
