/**
 * kvm_arch_mmu_enable_log_dirty_pt_masked(): re-arm dirty tracking for the pages of one 64-bit
 * mask at `offset` in the slot — what CLEAR_DIRTY_LOG, legacy GET and dirty-ring reset do per
 * word. Under INITIALLY_SET huge pages were left alone at enable, so they are split (eager) and
 * write-protected here first: the 2M page(s) covering [ffs(mask), fls(mask)], at most two since
 * base_gfn need not be 64-aligned. Then 4K leaves lose W (write-protect) or D (PML).
 * Called with mmu_lock held for write.
 */
import { PgLevel } from '../mmu/spte.js';
import { tdpClearDirtyPtMasked, tdpWrprotRange } from '../mmu/tdp/wrprot.js';
import { tdpSplitHugePagesRange } from '../mmu/tdp/split.js';
import { rmapWriteProtectMasked, rmapWriteProtectRange } from '../mmu/shadow/rmap-ops.js';
import { shadowSplitHugePagesRange } from '../mmu/shadow/split.js';
import { VmLayout } from '../vm-layout.js';
import { KVM_DIRTY_LOG_INITIALLY_SET, KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE, SplitMode, Strat } from './strategy.js';
import type { Memslot } from '../memslot.js';
import type { Vm } from '../vm.js';

const kInitSet = KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE | KVM_DIRTY_LOG_INITIALLY_SET;

export function manualProtectAndInitSet(vm: Vm): boolean {
  return (Atomics.load(vm.w, VmLayout.kVmDirtyCaps) & kInitSet) === kInitSet;
}

function ffs64(lo: number, hi: number): number {
  return lo !== 0 ? 31 - Math.clz32(lo & -lo) : 32 + 31 - Math.clz32(hi & -hi);
}
function fls64(lo: number, hi: number): number {
  return hi !== 0 ? 32 + 31 - Math.clz32(hi) : 31 - Math.clz32(lo);
}

export function enableLogDirtyPtMasked(vm: Vm, slot: Memslot, offset: number, lo: number, hi: number): boolean {
  // The TDP MMU walks only roots of the slot's address space (kvm_mmu_page_as_id(root) ==
  // slot->as_id); the one root here is address space 0's (no vCPU enters SMM in this model).
  if (slot.asId !== 0) return false;
  const strat = vm.w[VmLayout.kVmStrategy]!;
  const gfn = slot.baseGfn + offset;
  let flush = false;
  if (manualProtectAndInitSet(vm)) {
    const start = gfn + ffs64(lo, hi);
    const end = gfn + fls64(lo, hi);
    const split = (strat & Strat.kStratSplitMask) >>> Strat.kStratSplitShift;
    if (split === SplitMode.kSplitEager || split === SplitMode.kSplitEagerClear) {
      if (tdpSplitHugePagesRange(vm, start, end + 1, PgLevel.PG_LEVEL_4K, false) > 0) flush = true;
    }
    if (tdpWrprotRange(vm, start, start + 1, PgLevel.PG_LEVEL_2M, false)) flush = true;
    // Cross two large pages?
    if (start >>> 9 !== end >>> 9 && tdpWrprotRange(vm, end, end + 1, PgLevel.PG_LEVEL_2M, false)) flush = true;
    // kvm_mmu_slot_gfn_write_protect(kvm, slot, start/end, PG_LEVEL_2M) walks the rmaps too,
    // after the shadow MMU's eager split of the range (kvm_mmu_try_split_huge_pages).
    if (vm.memslotsHaveRmaps()) {
      if ((split === SplitMode.kSplitEager || split === SplitMode.kSplitEagerClear) && shadowSplitHugePagesRange(vm, slot, start, end + 1, PgLevel.PG_LEVEL_4K) > 0) flush = true;
      if (rmapWriteProtectRange(vm, slot, start, start + 1, PgLevel.PG_LEVEL_2M, PgLevel.PG_LEVEL_1G, true)) flush = true;
      if (start >>> 9 !== end >>> 9 && rmapWriteProtectRange(vm, slot, end, end + 1, PgLevel.PG_LEVEL_2M, PgLevel.PG_LEVEL_1G, true)) flush = true;
    }
  }
  if (tdpClearDirtyPtMasked(vm, gfn, lo, hi, (strat & Strat.kStratPml) === 0)) flush = true;
  // kvm_mmu_write_protect_pt_masked()'s rmap loop (skipped without rmaps: the lazy-rmap saving).
  if (vm.memslotsHaveRmaps() && rmapWriteProtectMasked(vm, slot, gfn, lo, hi)) flush = true;
  return flush;
}
