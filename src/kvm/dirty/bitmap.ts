/**
 * The dirty bitmap and KVM_GET_DIRTY_LOG (kvm_main.c): one bit per page of a logging slot, in
 * 64-bit little-endian words as KVM's (two Uint32 per word here).
 *
 * mark_page_dirty_in_slot() goes to the vCPU's dirty ring when the ring is on, else sets the
 * bit. GET with manual protect only copies (after flushing CPU dirty logs, i.e. PML buffers);
 * without it, GET is the legacy harvest: exchange each word with 0 and re-arm tracking for the
 * pages it reported, under mmu_lock, then flush TLBs.
 */
import { fail } from '../../host/errno.js';
import { count, countN } from '../../metrics/counters.js';
import { Op } from '../../metrics/ops.js';
import { VmLayout } from '../vm-layout.js';
import { KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE } from './strategy.js';
import { ringPush } from './ring.js';
import { kvmArchSyncDirtyLog } from './pml.js';
import { enableLogDirtyPtMasked } from './masked.js';
import { kvmFlushRemoteTlbs } from '../requests.js';
import { KVM_USER_MEM_SLOTS, type Memslot } from '../memslot.js';
import { kvmArchNrMemslotAsIds } from '../caps.js';
import type { Vcpu } from '../vcpu.js';
import type { Vm } from '../vm.js';

export function markPageDirtyInSlot(vm: Vm, slot: Memslot, gfn: number, vcpu: Vcpu | null): void {
  count(vm.ctx.metrics, Op.dirty_mark);
  const rel = gfn - slot.baseGfn;
  if (vcpu !== null && vm.w[VmLayout.kVmDirtyRingSize] !== 0) {
    ringPush(vcpu, slot.slotId, rel);
    return;
  }
  const bm = slot.dirtyBitmap;
  const i = rel >>> 5;
  const bit = 1 << (rel & 31);
  // set_bit_le(): skip the locked op when the bit is already set.
  if ((bm[i]! & bit) === 0) Atomics.or(bm, i, bit);
}

/** Find a logging slot for a uAPI slot number (as_id << 16 | id), or ENOENT. */
export function loggingSlot(vm: Vm, slotNum: number, what: string): Memslot {
  checkSlotId(vm, slotNum, what);
  const slot = vm.slots.get(slotNum);
  if (slot === undefined || !slot.dirtyLogging()) fail('ENOENT', `${what}: slot ${slotNum} does not exist or has no dirty log (KVM_MEM_LOG_DIRTY_PAGES is off)`);
  return slot;
}

/**
 * as_id = slot >> 16 must be < kvm_arch_nr_memslot_as_ids() (2 with SMM, else 1) and id <
 * KVM_USER_MEM_SLOTS, else EINVAL (kvm_get_dirty_log_protect / kvm_clear_dirty_log_protect).
 */
export function checkSlotId(vm: Vm, slotNum: number, what: string): void {
  const nrAsIds = kvmArchNrMemslotAsIds(vm.host);
  if (!Number.isInteger(slotNum) || slotNum < 0 || slotNum >>> 16 >= nrAsIds || (slotNum & 0xffff) >= KVM_USER_MEM_SLOTS) {
    fail('EINVAL', `${what}: slot ${slotNum} is not a valid slot (id < ${KVM_USER_MEM_SLOTS}, address space < ${nrAsIds}${nrAsIds === 1 ? ': this host has no SMM address space' : ''})`);
  }
}

export function kvmUseDirtyBitmap(vm: Vm, what: string): void {
  if (Atomics.load(vm.w, VmLayout.kVmDirtyRingSize) !== 0) fail('ENXIO', `${what}: the dirty ring is enabled on this VM; harvest the rings instead`);
}

/** KVM_GET_DIRTY_LOG: returns a copy of the slot's bitmap (Uint32 words, bit i = page i). */
export function getDirtyLog(vm: Vm, slotNum: number): Uint32Array {
  kvmUseDirtyBitmap(vm, 'KVM_GET_DIRTY_LOG');
  const slot = loggingSlot(vm, slotNum, 'KVM_GET_DIRTY_LOG');
  const m = vm.ctx.metrics;
  const words = Math.ceil(slot.npages / 64) * 2;
  const out = new Uint32Array(words);
  kvmArchSyncDirtyLog(vm);
  const bm = slot.dirtyBitmap;
  if ((Atomics.load(vm.w, VmLayout.kVmDirtyCaps) & KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE) !== 0) {
    // Manual protect: a plain copy (copy_to_user); clearing is CLEAR_DIRTY_LOG's job.
    out.set(new Uint32Array(bm.buffer, bm.byteOffset, words));
    countN(m, Op.bitmap_word, words / 2);
    return out;
  }
  let flush = false;
  vm.withMmuWriteLock(() => {
    countN(m, Op.bitmap_word, words / 2);
    for (let i = 0; i < words; i += 2) {
      // A plain read to skip clean words (KVM's `if (!dirty_bitmap[i]) continue;`): a bit a vCPU
      // sets meanwhile stays set for the next GET; a set one is taken with the exchange.
      if (bm[i] === 0 && bm[i + 1] === 0) continue;
      const lo = Atomics.exchange(bm, i, 0);
      const hi = Atomics.exchange(bm, i + 1, 0);
      out[i] = lo;
      out[i + 1] = hi;
      if ((lo | hi) !== 0) {
        flush = true;
        enableLogDirtyPtMasked(vm, slot, i * 32, lo, hi);
      }
    }
  });
  if (flush) kvmFlushRemoteTlbs(vm);
  vm.releaseVmmPages();
  return out;
}
