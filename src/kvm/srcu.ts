/**
 * synchronize_srcu(&kvm->srcu) for memslot updates. KVM reads memslots (and a slot's flags)
 * under kvm->srcu from the start of a fault to its end; kvm_swap_active_memslots() publishes the
 * new slot and waits for every reader of the old one before kvm_commit_memory_region() — for a
 * flags-only update, kvm_mmu_slot_apply_flags() — runs. Without the wait, a fault that read "not
 * logging" just before the flip maps a huge or writable SPTE after apply_flags' write-protect
 * walk has passed it: writes to that page are never logged.
 *
 * The VM's epoch domain (the RCU stand-in for page tables) serves as the SRCU here: a vCPU is
 * inside from KVM_RUN entry to exit and republishes the global epoch at every guest entry when
 * it moved (Vcpu.enterGuest), i.e. after each fault completes. So: advance the epoch, kick the
 * vCPUs in guest mode (so one that does not fault re-enters and republishes), and wait until no
 * participant is still in an epoch from before the advance.
 *
 * The pair: the caller's seq-cst store of the new slot flags, then the epoch advance (seq-cst
 * RMW); a vCPU's seq-cst load of the global epoch at entry that sees the advance is ordered after
 * both, so its next fault reads the new flags.
 */
import { kvmMakeAllCpusRequest } from './requests.js';
import { count } from '../metrics/counters.js';
import { Op } from '../metrics/ops.js';
import type { Vm } from './vm.js';

/**
 * `priced`: KVM's own grace periods (kvm_swap_active_memslots() waits with
 * synchronize_srcu_expedited()) are priced as one srcu_sync each, whether or not a reader had to
 * be waited for (the wait itself is wall time, as every lock wait here); the harness's own use
 * (the page-table pool growing in place, which KVM does not need) passes false.
 */
export function synchronizeSrcu(vm: Vm, priced = true): void {
  if (priced) count(vm.ctx.metrics, Op.srcu_sync);
  const before = vm.epoch.advance();
  if (vm.epoch.oldestActive() > before) return;
  // kvm_vcpu_kick() of every vCPU: a request with no bits only moves IN_GUEST_MODE to EXITING.
  kvmMakeAllCpusRequest(vm, 0, false);
  const spin = new Int32Array(new SharedArrayBuffer(4));
  for (let spins = 0; vm.epoch.oldestActive() <= before; spins++) {
    // Readers are on other threads: spin briefly, then sleep in 1 ms steps (never busy-wait a core
    // that a vCPU worker may need).
    if (spins > 1000) Atomics.wait(spin, 0, 0, 1);
  }
}
