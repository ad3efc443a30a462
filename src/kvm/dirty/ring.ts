/**
 * The dirty ring (virt/kvm/dirty_ring.c): per-vCPU rings of 16-byte kvm_dirty_gfn entries
 * { u32 flags; u32 slot; u64 offset } with the lifecycle
 *   00 --dirtied by KVM--> 01 (DIRTY) --harvested by the VMM--> 1X (RESET) --KVM_RESET_DIRTY_RINGS--> 00
 * Flags are published with release stores and read with acquire loads (Atomics). When a ring
 * reaches its soft limit (size minus the reserved 64 entries and, with PML, a PML buffer's 512),
 * the vCPU exits with KVM_EXIT_DIRTY_RING_FULL and stays out until the VMM resets enough.
 * Reset coalesces runs of entries of one slot within 64 pages into one masked re-arm.
 */
import { fail } from '../../host/errno.js';
import { allocSab } from '../../shm/arena.js';
import { count } from '../../metrics/counters.js';
import { Op } from '../../metrics/ops.js';
import { KvmExit, VcpuLayout } from '../vcpu-layout.js';
import { VmLayout } from '../vm-layout.js';
import { kvmFlushRemoteTlbs } from '../requests.js';
import { Strat } from './strategy.js';
import { enableLogDirtyPtMasked } from './masked.js';
import type { Vcpu } from '../vcpu.js';
import type { Vm } from '../vm.js';

export const enum DirtyRing {
  KVM_DIRTY_GFN_F_DIRTY = 1 << 0,
  KVM_DIRTY_GFN_F_RESET = 1 << 1,
  KVM_DIRTY_RING_RSVD_ENTRIES = 64,
  KVM_DIRTY_RING_MAX_ENTRIES = 65536,
  kDirtyGfnBytes = 16,
  kEntryWords = 4,
}

/**
 * kvm_vm_ioctl_enable_dirty_log_ring(kvm, u32 size) for KVM_CAP_DIRTY_LOG_RING(_ACQ_REL); the
 * caller (caps.ts) has truncated args[0] to the u32 KVM takes.
 *
 * KVM accepts the ring together with KVM_DIRTY_LOG_INITIALLY_SET (neither cap checks the other).
 * The combination loses writes: with INITIALLY_SET, enabling logging write-protects (or
 * D-clears) nothing, and the ring has no bitmap to start all ones, so a page mapped writable
 * before logging was enabled is written without a ring entry, and is never reported.
 */
export function enableDirtyRing(vm: Vm, bytes: number): void {
  if (!Number.isInteger(bytes) || bytes <= 0 || bytes > 0xffffffff || (bytes & (bytes - 1)) !== 0) fail('EINVAL', `KVM_CAP_DIRTY_LOG_RING: size ${bytes} must be a power of two (bytes)`);
  const rsvd = DirtyRing.KVM_DIRTY_RING_RSVD_ENTRIES + ((vm.w[VmLayout.kVmStrategy]! & Strat.kStratPml) !== 0 ? 512 : 0);
  if (bytes < rsvd * DirtyRing.kDirtyGfnBytes || bytes < 4096) fail('EINVAL', `KVM_CAP_DIRTY_LOG_RING: ${bytes} bytes cannot hold the ${rsvd} reserved entries (need at least ${Math.max(4096, rsvd * DirtyRing.kDirtyGfnBytes)})`);
  if (bytes > DirtyRing.KVM_DIRTY_RING_MAX_ENTRIES * DirtyRing.kDirtyGfnBytes) fail('E2BIG', `KVM_CAP_DIRTY_LOG_RING: ${bytes} bytes is more than ${DirtyRing.KVM_DIRTY_RING_MAX_ENTRIES} entries`);
  if (Atomics.load(vm.w, VmLayout.kVmDirtyRingSize) !== 0) fail('EINVAL', 'KVM_CAP_DIRTY_LOG_RING can be enabled only once');
  if (vm.nrVcpus > 0) fail('EINVAL', 'KVM_CAP_DIRTY_LOG_RING must be enabled before any vCPU is created');
  Atomics.store(vm.w, VmLayout.kVmDirtyRingSize, bytes / DirtyRing.kDirtyGfnBytes);
}

export function allocDirtyRing(entries: number): SharedArrayBuffer {
  return allocSab(entries * DirtyRing.kDirtyGfnBytes);
}

export function ringSoftLimit(vm: Vm): number {
  const n = vm.w[VmLayout.kVmDirtyRingSize]!;
  return n - DirtyRing.KVM_DIRTY_RING_RSVD_ENTRIES - ((vm.w[VmLayout.kVmStrategy]! & Strat.kStratPml) !== 0 ? 512 : 0);
}

/** kvm_dirty_ring_soft_full() */
export function ringSoftFull(vcpu: Vcpu): boolean {
  const w = vcpu.w;
  return w[VcpuLayout.kVcpuRingDirtyIndex]! - Atomics.load(w, VcpuLayout.kVcpuRingResetIndex) >= ringSoftLimit(vcpu.vm);
}

/** kvm_dirty_ring_push(): called from the vCPU's own thread. */
export function ringPush(vcpu: Vcpu, slotId: number, offset: number): void {
  const ring = vcpu.ring!;
  const w = vcpu.w;
  const n = vcpu.vm.w[VmLayout.kVmDirtyRingSize]!;
  const di = w[VcpuLayout.kVcpuRingDirtyIndex]!;
  if (di - Atomics.load(w, VcpuLayout.kVcpuRingResetIndex) >= n) throw new Error(`BUG: vCPU ${vcpu.id} dirty ring overflow (${n} entries)`);
  const e = (di & (n - 1)) * DirtyRing.kEntryWords;
  ring[e + 1] = slotId;
  ring[e + 2] = offset;
  ring[e + 3] = 0;
  Atomics.store(ring, e, DirtyRing.KVM_DIRTY_GFN_F_DIRTY);
  w[VcpuLayout.kVcpuRingDirtyIndex] = di + 1;
  const m = vcpu.vm.ctx.metrics;
  count(m, Op.ring_push);
  if (ringSoftFull(vcpu) && vcpu.pendingExit === 0) {
    vcpu.pendingExit = KvmExit.KVM_EXIT_DIRTY_RING_FULL;
    vcpu.f[VcpuLayout.kVcpuDirtyRingFullExits]!++;
    count(m, Op.ring_full_exit);
  }
}

/**
 * The VMM's side: collect every DIRTY entry of every vCPU ring, mark it RESET (harvested), and
 * hand (slot, offset) to `sink`. Returns the number harvested.
 */
export function harvestDirtyRings(vm: Vm, sink: (slot: number, offset: number) => void): number {
  const n = Atomics.load(vm.w, VmLayout.kVmDirtyRingSize);
  if (n === 0) fail('ENXIO', 'dirty ring harvest: KVM_CAP_DIRTY_LOG_RING is not enabled');
  let total = 0;
  for (let i = 0; i < vm.nrVcpus; i++) {
    const v = vm.vcpu(i);
    const ring = v.ring!;
    let fetch = Atomics.load(v.w, VcpuLayout.kVcpuRingFetchIndex);
    for (;;) {
      const e = (fetch & (n - 1)) * DirtyRing.kEntryWords;
      if (Atomics.load(ring, e) !== DirtyRing.KVM_DIRTY_GFN_F_DIRTY) break;
      sink(ring[e + 1]!, ring[e + 2]!);
      Atomics.store(ring, e, DirtyRing.KVM_DIRTY_GFN_F_RESET);
      fetch++;
      total++;
    }
    Atomics.store(v.w, VcpuLayout.kVcpuRingFetchIndex, fetch);
  }
  return total;
}

/** KVM_RESET_DIRTY_RINGS: returns the number of entries reset. */
export function resetDirtyRings(vm: Vm): number {
  const n = Atomics.load(vm.w, VmLayout.kVmDirtyRingSize);
  // kvm_vm_ioctl_reset_dirty_pages(): `if (!kvm->dirty_ring_size) return -EINVAL;`
  if (n === 0) fail('EINVAL', 'KVM_RESET_DIRTY_RINGS: enable KVM_CAP_DIRTY_LOG_RING on this VM first');
  const m = vm.ctx.metrics;
  let total = 0;
  let flush = false;
  for (let i = 0; i < vm.nrVcpus; i++) {
    const v = vm.vcpu(i);
    const ring = v.ring!;
    let reset = Atomics.load(v.w, VcpuLayout.kVcpuRingResetIndex);
    let first = true;
    let curSlot = 0;
    let curOff = 0;
    let lo = 0;
    let hi = 0;
    for (;;) {
      const e = (reset & (n - 1)) * DirtyRing.kEntryWords;
      if ((Atomics.load(ring, e) & DirtyRing.KVM_DIRTY_GFN_F_RESET) === 0) break;
      const slot = ring[e + 1]!;
      const off = ring[e + 2]!;
      Atomics.store(ring, e, 0);
      reset++;
      total++;
      count(m, Op.ring_reset_entry);
      if (!first && slot === curSlot) {
        const d = off - curOff;
        if (d >= 0 && d < 64) {
          if (d < 32) lo |= 1 << d;
          else hi |= 1 << (d - 32);
          continue;
        }
        // Backwards visit: shift the mask up if no bit falls off the top.
        if (d > -64 && d < 0 && topBitsClear(lo, hi, -d)) {
          [lo, hi] = shl64(lo, hi, -d);
          lo |= 1;
          curOff = off;
          continue;
        }
      }
      if (!first && resetDirtyGfn(vm, curSlot, curOff, lo, hi)) flush = true;
      curSlot = slot;
      curOff = off;
      lo = 1;
      hi = 0;
      first = false;
    }
    if (!first && resetDirtyGfn(vm, curSlot, curOff, lo, hi)) flush = true;
    Atomics.store(v.w, VcpuLayout.kVcpuRingResetIndex, reset);
  }
  if (flush) kvmFlushRemoteTlbs(vm);
  vm.releaseVmmPages();
  Atomics.add(vm.w, VmLayout.kVmRingResetGen, 1);
  Atomics.notify(vm.w, VmLayout.kVmRingResetGen);
  return total;
}

function topBitsClear(lo: number, hi: number, k: number): boolean {
  const [l2, h2] = shl64(lo, hi, k);
  const [l3, h3] = shr64(l2, h2, k);
  return l3 === lo && h3 === hi;
}
function shl64(lo: number, hi: number, k: number): [number, number] {
  if (k >= 32) return [0, lo << (k - 32)];
  return [lo << k, (hi << k) | (k === 0 ? 0 : lo >>> (32 - k))];
}
function shr64(lo: number, hi: number, k: number): [number, number] {
  if (k >= 32) return [hi >>> (k - 32), 0];
  return [(lo >>> k) | (k === 0 ? 0 : hi << (32 - k)), hi >>> k];
}

/** kvm_reset_dirty_gfn(): re-arm one coalesced mask under mmu_lock. */
function resetDirtyGfn(vm: Vm, slotId: number, offset: number, lo: number, hi: number): boolean {
  const slot = vm.slots.get(slotId);
  if (slot === undefined || !slot.dirtyLogging() || offset < 0 || offset >= slot.npages) return false;
  return vm.withMmuWriteLock(() => enableLogDirtyPtMasked(vm, slot, offset, lo, hi));
}
