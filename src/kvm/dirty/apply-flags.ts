/**
 * kvm_mmu_slot_apply_flags() (x86.c) for a flags-only change that toggles
 * KVM_MEM_LOG_DIRTY_PAGES:
 *
 *  enable   with MANUAL_PROTECT + INITIALLY_SET: nothing (the bitmap starts all ones and CLEAR
 *           arms tracking gradually) — unless a strategy asks for the older behaviours;
 *           otherwise eager split (kvm.eager_page_split), then PML: clear D on 4K leaves and
 *           write-protect ≥ 2M, or write-protect everything; then one remote TLB flush.
 *  disable  recover huge mappings: zap collapsible tables or rebuild huge SPTEs in place.
 * All of it under mmu_lock held for read (TDP MMU), with vCPUs possibly running.
 */
import { PgLevel } from '../mmu/spte.js';
import { tdpClearDirtyRange, tdpWrprotRange } from '../mmu/tdp/wrprot.js';
import { tdpSplitHugePagesRange } from '../mmu/tdp/split.js';
import { tdpRecoverHugePages, tdpZapCollapsibleSptes } from '../mmu/tdp/recover.js';
import { kvmFlushRemoteTlbs, kvmMakeAllCpusRequest } from '../requests.js';
import { KvmReq } from '../vcpu-layout.js';
import { VmLayout } from '../vm-layout.js';
import { SplitMode, Strat } from './strategy.js';
import { manualProtectAndInitSet } from './masked.js';
import { rmapWriteProtectRange, rmapZapCollapsibleSptes } from '../mmu/shadow/rmap-ops.js';
import { shadowSplitHugePagesRange } from '../mmu/shadow/split.js';
import { kvmMmuMaxMappingLevel } from '../mmu/tdp/fault.js';
import { KVM_MEM_READONLY, type Memslot } from '../memslot.js';
import type { Vm } from '../vm.js';

export interface ApplyFlagsOutcome {
  splits: number;
  tlbFlushes: number;
}

export function kvmMmuSlotApplyFlags(vm: Vm, slot: Memslot, enable: boolean): ApplyFlagsOutcome {
  const strat = vm.w[VmLayout.kVmStrategy]!;
  const out: ApplyFlagsOutcome = { splits: 0, tlbFlushes: 0 };
  Atomics.add(vm.w, VmLayout.kVmNrSlotsDirtyLogging, enable ? 1 : -1);
  // PML is VM-wide: vCPUs start/stop logging at their next entry.
  kvmMakeAllCpusRequest(vm, KvmReq.KVM_REQ_UPDATE_CPU_DIRTY_LOGGING, false);
  // "Nothing more to do for RO slots": nothing in them is writable to begin with.
  if ((slot.flags & KVM_MEM_READONLY) !== 0) return out;
  // Only roots of the slot's address space are walked; an SMM (as_id 1) slot has none here, as
  // no vCPU enters SMM in this model, so address space 0's mappings of the same gfns stay.
  if (slot.asId !== 0) return out;
  if (!enable) {
    // kvm_mmu_zap_collapsible_sptes(): the rmaps' half (shadow pages) under the write lock, then
    // the TDP MMU's under the read lock.
    if (vm.memslotsHaveRmaps() && vm.withMmuWriteLock(() => rmapZapCollapsibleSptes(vm, slot, kvmMmuMaxMappingLevel))) {
      kvmFlushRemoteTlbs(vm);
      out.tlbFlushes++;
    }
    if (vm.tdpMmuEnabled) {
      out.tlbFlushes += vm.withMmuReadLock(() =>
        (strat & Strat.kStratZapCollapsible) !== 0 ? tdpZapCollapsibleSptes(vm, slot) : tdpRecoverHugePages(vm, slot));
    }
    vm.releaseVmmPages();
    return out;
  }
  const split = (strat & Strat.kStratSplitMask) >>> Strat.kStratSplitShift;
  if (manualProtectAndInitSet(vm)) {
    // KVM returns here. The alternatives model older kernels / other choices.
    let flush = false;
    if (vm.memslotsHaveRmaps()) {
      vm.withMmuWriteLock(() => {
        if (split === SplitMode.kSplitEagerEnable) out.splits += shadowSplitHugePagesRange(vm, slot, slot.baseGfn, slot.endGfn, PgLevel.PG_LEVEL_4K);
        if ((strat & Strat.kStratWrprotHuge) !== 0 && rmapWriteProtectRange(vm, slot, slot.baseGfn, slot.endGfn, PgLevel.PG_LEVEL_2M, PgLevel.PG_LEVEL_1G, true)) flush = true;
      });
      if (out.splits > 0) flush = true;
    }
    if (vm.tdpMmuEnabled) vm.withMmuReadLock(() => {
      if (split === SplitMode.kSplitEagerEnable) out.splits = tdpSplitHugePagesRange(vm, slot.baseGfn, slot.endGfn, PgLevel.PG_LEVEL_4K, true);
      if ((strat & Strat.kStratWrprotHuge) !== 0 && tdpWrprotRange(vm, slot.baseGfn, slot.endGfn, PgLevel.PG_LEVEL_2M)) flush = true;
    });
    if (flush) {
      kvmFlushRemoteTlbs(vm);
      out.tlbFlushes++;
    }
    vm.releaseVmmPages();
    return out;
  }
  // kvm_mmu_slot_remove_write_access(): the rmaps at every level under the write lock (the shadow
  // MMU has no PML: write protection is its dirty tracking), then the TDP MMU's walk. Eager
  // splitting first (kvm_shadow_mmu_try_split_huge_pages) when the strategy asks for it.
  if (vm.memslotsHaveRmaps()) {
    vm.withMmuWriteLock(() => {
      if (split === SplitMode.kSplitEager || split === SplitMode.kSplitEagerEnable) out.splits += shadowSplitHugePagesRange(vm, slot, slot.baseGfn, slot.endGfn, PgLevel.PG_LEVEL_4K);
      rmapWriteProtectRange(vm, slot, slot.baseGfn, slot.endGfn, PgLevel.PG_LEVEL_4K, PgLevel.PG_LEVEL_1G, true);
    });
  }
  if (vm.tdpMmuEnabled) vm.withMmuReadLock(() => {
    if (split === SplitMode.kSplitEager || split === SplitMode.kSplitEagerEnable) out.splits = tdpSplitHugePagesRange(vm, slot.baseGfn, slot.endGfn, PgLevel.PG_LEVEL_4K, true);
    if ((strat & Strat.kStratPml) !== 0) {
      tdpClearDirtyRange(vm, slot.baseGfn, slot.endGfn);
      tdpWrprotRange(vm, slot.baseGfn, slot.endGfn, PgLevel.PG_LEVEL_2M);
    } else {
      tdpWrprotRange(vm, slot.baseGfn, slot.endGfn, PgLevel.PG_LEVEL_4K);
    }
  });
  // kvm_flush_remote_tlbs_memslot(), unconditionally.
  kvmFlushRemoteTlbs(vm);
  out.tlbFlushes++;
  vm.releaseVmmPages();
  return out;
}
