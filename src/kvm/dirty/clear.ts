/**
 * KVM_CLEAR_DIRTY_LOG (kvm_clear_dirty_log_protect): for each 64-page word of the caller's
 * bitmap, clear those bits in KVM's bitmap and re-arm tracking for the pages that really were
 * dirty (fetch_andnot), under mmu_lock held for write, then flush TLBs once.
 * Alignment (api.rst, after 76d58e0f07ec): first_page must be a multiple of 64; num_pages too,
 * unless first_page + num_pages is the end of the slot.
 */
import { fail } from '../../host/errno.js';
import { countN } from '../../metrics/counters.js';
import { Op } from '../../metrics/ops.js';
import { kvmFlushRemoteTlbs } from '../requests.js';
import { checkSlotId, kvmUseDirtyBitmap, loggingSlot } from './bitmap.js';
import { kvmArchSyncDirtyLog } from './pml.js';
import { enableLogDirtyPtMasked } from './masked.js';
import type { Vm } from '../vm.js';

export interface ClearDirtyLog {
  slot: number;
  firstPage: number;
  numPages: number;
  /** Bit i (Uint32 word i >> 5, bit i & 31) stands for page firstPage + i. */
  bitmap: Uint32Array;
}

/** Returns the number of pages whose tracking was re-armed. */
export function clearDirtyLog(vm: Vm, log: ClearDirtyLog): number {
  kvmUseDirtyBitmap(vm, 'KVM_CLEAR_DIRTY_LOG');
  checkSlotId(vm, log.slot, 'KVM_CLEAR_DIRTY_LOG');
  if (!Number.isSafeInteger(log.firstPage) || log.firstPage < 0 || log.firstPage % 64 !== 0) {
    fail('EINVAL', `KVM_CLEAR_DIRTY_LOG: first_page ${log.firstPage} is not a multiple of 64`);
  }
  const slot = loggingSlot(vm, log.slot, 'KVM_CLEAR_DIRTY_LOG');
  const n = slot.npages;
  if (!Number.isSafeInteger(log.numPages) || log.numPages < 0 || log.firstPage > n || log.numPages > n - log.firstPage
    || (log.numPages < n - log.firstPage && log.numPages % 64 !== 0)) {
    fail('EINVAL', `KVM_CLEAR_DIRTY_LOG: num_pages ${log.numPages} from page ${log.firstPage} must stay inside the ${n}-page slot and be a multiple of 64 unless it reaches the slot's end`);
  }
  const words64 = Math.ceil(log.numPages / 64);
  if (log.bitmap.length < words64 * 2 - (log.numPages % 64 !== 0 && log.numPages % 64 <= 32 ? 1 : 0)) {
    fail('EFAULT', `KVM_CLEAR_DIRTY_LOG: bitmap of ${log.bitmap.length} words is too short for ${log.numPages} pages`);
  }
  kvmArchSyncDirtyLog(vm);
  const m = vm.ctx.metrics;
  const bm = slot.dirtyBitmap;
  const user = log.bitmap;
  let flush = false;
  let rearmed = 0;
  vm.withMmuWriteLock(() => {
    // Words are counted once per call, not per word (the same count and modeled time).
    let words = 0;
    for (let w = 0; w < words64; w++) {
      const ulo = user[2 * w] ?? 0;
      const uhi = user[2 * w + 1] ?? 0;
      if ((ulo | uhi) === 0) continue;
      words++;
      const i = (log.firstPage >>> 5) + 2 * w;
      // mask &= atomic_long_fetch_andnot(mask, p): only bits that were really set count.
      const lo = ulo !== 0 ? ulo & Atomics.and(bm, i, ~ulo) : 0;
      const hi = uhi !== 0 && i + 1 < bm.length ? uhi & Atomics.and(bm, i + 1, ~uhi) : 0;
      if ((lo | hi) === 0) continue;
      flush = true;
      rearmed += popcount(lo) + popcount(hi);
      enableLogDirtyPtMasked(vm, slot, log.firstPage + w * 64, lo, hi);
    }
    countN(m, Op.bitmap_word, words);
  });
  if (flush) kvmFlushRemoteTlbs(vm);
  vm.releaseVmmPages();
  return rearmed;
}

export function popcount(x: number): number {
  x = x - ((x >>> 1) & 0x55555555);
  x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
  return (Math.imul((x + (x >>> 4)) & 0x0f0f0f0f, 0x01010101) >>> 24);
}
