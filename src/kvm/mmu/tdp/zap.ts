/**
 * Zapping (tdp_mmu_zap_leafs, kvm_tdp_mmu_zap_all) under mmu_lock held for write: clear every
 * leaf SPTE mapping [start, end) — a huge leaf that overlaps the range goes whole — and leave the
 * tables in place. The caller flushes remote TLBs before dropping mmu_lock whenever this
 * returns true (a vCPU could otherwise keep writing through a cached translation).
 */
import { PgLevel, isLastSpte, isShadowPresentPte } from '../spte.js';
import { tdpMmuIterSetSpte } from './spte-change.js';
import type { Vm } from '../../vm.js';

export function tdpMmuZapLeafs(vm: Vm, start: number, end: number): boolean {
  const it = vm.iter;
  let flush = false;
  for (it.start(vm.root, PgLevel.PG_LEVEL_4K, start); it.valid && it.gfn < end; it.next()) {
    if (!isShadowPresentPte(it.oldFlags)) {
      // A mostly empty table (a 1G range mapped by a few 4K SPTEs): hop over its empty entries.
      it.skipNonPresent(end);
      continue;
    }
    if (!isLastSpte(it.oldFlags, it.level)) continue;
    tdpMmuIterSetSpte(vm, it, 0, it.oldPfn);
    flush = true;
  }
  return flush;
}

/**
 * Tear down everything under the root over [start, end): leaves and the tables that hold them
 * (memslot deletion, VM destruction). Tables go through handle_removed_pt and the epoch.
 */
export function tdpMmuZapRange(vm: Vm, start: number, end: number): boolean {
  const it = vm.iter;
  let flush = false;
  // Walk the root's entries only: removing a top-level table retires its whole subtree.
  for (it.start(vm.root, PgLevel.PT64_ROOT_4LEVEL, start); it.valid && it.gfn < end; it.next()) {
    if (!isShadowPresentPte(it.oldFlags)) continue;
    tdpMmuIterSetSpte(vm, it, 0, 0);
    flush = true;
  }
  return flush;
}
