/**
 * fast_page_fault(): a write fault on a present leaf that is MMU-writable but not writable —
 * write-protected for dirty logging — is fixed without mmu_lock by a cmpxchg that sets W (and D,
 * which the retried store would set), then the page is marked dirty in the slot. Not for huge
 * leaves in a dirty-logged slot (those must be split by the slow path). At most 4 attempts.
 */
import { PgLevel, Spte, PtLayout, gfnRoundForLevel, spteLoadFlags, spteReadPfn } from '../spte.js';
import { count, countN } from '../../../metrics/counters.js';
import { Op } from '../../../metrics/ops.js';
import type { Vcpu } from '../../vcpu.js';
import type { Memslot } from '../../memslot.js';
import { RetPf } from './fault.js';
import { pscLeafTable } from './walk.js';

const kFastPfRetries = 4;

export function fastPageFault(vcpu: Vcpu, slot: Memslot, gfn: number, write: boolean): number {
  if (!write) return RetPf.RET_PF_INVALID;
  const vm = vcpu.vm;
  const m = vm.ctx.metrics;
  const pt = vm.pool.pt;
  for (let attempt = 0; attempt < kFastPfRetries; attempt++) {
    // kvm_tdp_mmu_fast_pf_get_last_sptep(): lockless walk to the last SPTE.
    // Each level is read as one snapshot of its two words (spteLoadFlags pairs with the SPTE's
    // publish; spteReadPfn is -1 if the flags moved while the pfn was read: read it again).
    // The EPT walk that just took this violation usually left gfn's 4K table in the vCPU's
    // paging-structure cache (walk.ts), still valid: the vCPU has not re-entered, so it is in the
    // epoch it cached the table in. A table unlinked meanwhile has its present entries frozen
    // (the cmpxchg below then fails and the walk retries from the root), or is being removed
    // under mmu_lock for read, whose handle_removed_pt() takes over what this cmpxchg sets — the
    // race KVM's own lockless walk has with a table removal.
    let page = vm.root;
    let level = PgLevel.PT64_ROOT_4LEVEL;
    let sptep = 0;
    let flags = 0;
    let pfn = -1;
    const cached = attempt === 0 ? pscLeafTable(vcpu.w, gfn) : 0;
    if (cached > 0) {
      page = cached;
      level = PgLevel.PG_LEVEL_4K;
    }
    for (; level >= PgLevel.PG_LEVEL_4K; level--) {
      sptep = page * PtLayout.kPtPageWords + ((gfn >>> ((level - 1) * 9)) & 511) * PtLayout.kSpteWords;
      flags = spteLoadFlags(pt, sptep);
      if ((flags & Spte.SPTE_MMU_PRESENT_MASK) === 0) break;
      pfn = spteReadPfn(pt, sptep, flags);
      if (pfn < 0) {
        level++;
        continue;
      }
      if (level === PgLevel.PG_LEVEL_4K || (flags & Spte.PT_PAGE_SIZE_MASK) !== 0) break;
      page = pfn;
    }
    countN(m, Op.spte_read, PgLevel.PT64_ROOT_4LEVEL + 1 - Math.max(level, 1));
    if ((flags & Spte.SPTE_MMU_PRESENT_MASK) === 0) return RetPf.RET_PF_INVALID;
    if ((flags & Spte.PT_WRITABLE_MASK) !== 0) {
      // Someone else made it writable: the access is allowed now.
      const f = vcpu.fault;
      f.leafFlags = flags;
      f.leafPfn = pfn + (gfn - gfnRoundForLevel(gfn, level));
      f.leafLevel = level;
      return RetPf.RET_PF_SPURIOUS;
    }
    if ((flags & Spte.SPTE_MMU_WRITABLE) === 0) return RetPf.RET_PF_INVALID;
    // A huge page in a dirty-logged slot must be split by the slow path.
    if (level > PgLevel.PG_LEVEL_4K && slot.dirtyLogging()) return RetPf.RET_PF_INVALID;
    const want = flags | Spte.PT_WRITABLE_MASK | Spte.SPTE_DIRTY | Spte.SPTE_ACCESSED;
    count(m, Op.spte_cmpxchg);
    if (Atomics.compareExchange(pt, sptep, flags, want) !== flags) {
      count(m, Op.spte_cmpxchg_fail);
      continue;
    }
    if (slot.dirtyLogging()) vm.markPageDirtyInSlot(slot, gfn, vcpu);
    // KVM's cmpxchg64 also proved the pfn unchanged; a 32-bit cmpxchg on the flags does not (a
    // zap and a new fault with equal flags in between: an ABA). Take the pfn that stands behind
    // the flags just published; if they moved already, the zap's flush request is pending for
    // this vCPU's next entry, and the retried access walks instead of using a TLB fill.
    pfn = spteReadPfn(pt, sptep, want);
    vcpu.countFastFault();
    const f = vcpu.fault;
    if (pfn < 0) return RetPf.RET_PF_FIXED;
    vm.onWritableSpte(pfn, level, true);
    f.leafFlags = want;
    f.leafPfn = pfn + (gfn - gfnRoundForLevel(gfn, level));
    f.leafLevel = level;
    return RetPf.RET_PF_FIXED;
  }
  return RetPf.RET_PF_INVALID;
}
