/**
 * mmu_lock as a vCPU takes it in a fault, in both clocks.
 *
 * Wall clock: the shared rwlock (shm/rwlock.ts). A VM without the TDP MMU (`--mmu shadow`) never
 * takes mmu_lock for read — the shadow MMU does everything under the write lock, and the VMM's
 * read-side callers take it for write on such a VM (Vm.withMmuReadLock) — so its writers need
 * not scan the readers' indicators (416 vCPUs' lines per fault would cost more than the fault).
 *
 * Modeled clock: with a lock timeline (the VM's `lockModel`), each hold is placed on the VM's
 * shared timeline in modeled time (shm/timeline-rwlock.ts): write holds serialise, read holds
 * share, and the wait — placement start minus the vCPU's modeled clock at acquisition — is
 * counted as lock_wait_modeled_ns (priced 1), so it lands in the vCPU's clock, its fault latency
 * and the phase's duration. The hold is the modeled cost of what ran under the lock, known at
 * release, which is when the placement happens (what runs under the lock does not depend on the
 * wait, so placing after the fact is exact for the model). Times on the timeline are the vCPU's
 * modeled ns since the phase began (Vcpu.lockPhaseStart), and the runner resets the timeline
 * at every phase, so vCPUs meet at barriers in modeled time as they do in wall time.
 */
import { readLock, readUnlock, writeLock, writeUnlock } from '../shm/rwlock.js';
import { count, countN, countWaitNs } from '../metrics/counters.js';
import { Op } from '../metrics/ops.js';
import { VmLayout } from './vm-layout.js';
import { VcpuLayout } from './vcpu-layout.js';
import type { Vcpu } from './vcpu.js';

const kNoReaders = { words: [], at: [] };

/** Acquire for write from a vCPU's fault; returns the metrics clock at acquisition (for the release). */
export function vcpuMmuWriteLock(vcpu: Vcpu): number {
  const vm = vcpu.vm;
  return acquired(vcpu, writeLock(vm.w, VmLayout.kVmMmuLock, vm.tdpMmuEnabled ? vm.mmuLockReaders : kNoReaders), Op.lock_write);
}

export function vcpuMmuWriteUnlock(vcpu: Vcpu, m0: number): void {
  writeUnlock(vcpu.vm.w, VmLayout.kVmMmuLock);
  placeHold(vcpu, m0, true);
}

export function vcpuMmuReadLock(vcpu: Vcpu): number {
  return acquired(vcpu, readLock(vcpu.vm.w, VmLayout.kVmMmuLock, vcpu.w, VcpuLayout.kVcpuMmuLockReader), Op.lock_read);
}

export function vcpuMmuReadUnlock(vcpu: Vcpu, m0: number): void {
  readUnlock(vcpu.vm.w, VmLayout.kVmMmuLock, vcpu.w, VcpuLayout.kVcpuMmuLockReader);
  placeHold(vcpu, m0, false);
}

/**
 * The lock was taken after `waited` wall ns: note the vCPU's modeled clock (the hold starts with
 * the acquisition itself: the rwlock's own cacheline transfer is serial too) and count the op.
 */
function acquired(vcpu: Vcpu, waited: number, op: number): number {
  const m = vcpu.vm.ctx.metrics;
  vcpu.lockAcquiredAt = vcpu.modeledNow();
  const m0 = m.t;
  count(m, op);
  if (waited > 0) countWaitNs(m, Op.lock_wait_ns, waited);
  vcpu.lockWallWait = waited;
  return m0;
}

/** At release: place the hold (m0 .. now on the metrics clock) on the timeline; count and record the wait. */
function placeHold(vcpu: Vcpu, m0: number, write: boolean): void {
  const vm = vcpu.vm;
  const tl = vm.lockModel;
  if (tl === null) return;
  const m = vm.ctx.metrics;
  const t = vcpu.lockAcquiredAt - vcpu.lockPhaseStart;
  const wait = write ? tl.placeWrite(t, m.t - m0) : tl.placeRead(t, m.t - m0);
  if (wait > 0) countN(m, Op.lock_wait_modeled_ns, wait);
  const h = vcpu.lockHists;
  if (h !== null) recordWait(write ? h.write : h.read, vcpu, wait);
}

/** One acquisition's wait: modeled always, wall on the faults sampled for wall time. */
function recordWait(h: { wall: { recordValue(v: number): void }; recordModeled(ns: number): void }, vcpu: Vcpu, modeled: number): void {
  h.recordModeled(modeled);
  if (vcpu.vm.ctx.hostThread.faultTimed) h.wall.recordValue(vcpu.lockWallWait < 1 ? 1 : vcpu.lockWallWait);
}
