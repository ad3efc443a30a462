/**
 * "No vCPU runs" for the one VMM-side update that is not published concurrently: KVM_CREATE_VCPU.
 * A new vCPU's words and dirty ring are SABs that workers learn only from the next handle, so a
 * worker's remote TLB flush or dirty-logging request (kvm_make_all_cpus_request()) during the
 * phase would miss the new vCPU. (Memslot create/delete/move and page-table pool growth run
 * under running vCPUs: memslots.ts, pt-pages.ts.) The update is refused while any vCPU of the VM
 * is inside KVM_RUN, and a KVM_RUN that starts during it is refused.
 *
 * The pair (a Dekker handshake, both sides seq-cst Atomics, so in the single total order of
 * seq-cst operations at least one side sees the other's store):
 *   Vcpu.run() entry:  store kVcpuRunning = 1, then load kVmVmmExclusive
 *   VMM update:        store kVmVmmExclusive = 1, then load every kVcpuRunning
 * Either the VMM sees the vCPU running (the update fails, nothing changed) or the vCPU sees the
 * update (KVM_RUN fails, the vCPU did nothing); both may fail, neither proceeds unseen. This
 * closes the check-then-act race at the cost of one store and one load per run() call — once
 * per slice of guest accesses, nothing per access or per fault.
 *
 * Errno: EBUSY, the kernel's "resource busy, retry when it is not" — what KVM answers for state
 * that cannot change under a vCPU that has run (KVM_SET_CPUID2 after KVM_RUN).
 */
import { fail } from '../host/errno.js';
import { VcpuLayout } from './vcpu-layout.js';
import { VmLayout } from './vm-layout.js';

/** KVM_RUN entry: publish "running", then check for a VMM-side update (the Dekker pair). */
export function vcpuRunBegin(vmw: Int32Array, vcpuw: Int32Array, id: number): void {
  Atomics.store(vcpuw, VcpuLayout.kVcpuRunning, 1);
  if (Atomics.load(vmw, VmLayout.kVmVmmExclusive) !== 0) refuseRun(vcpuw, id);
}

function refuseRun(vcpuw: Int32Array, id: number): never {
  Atomics.store(vcpuw, VcpuLayout.kVcpuRunning, 0);
  fail('EBUSY', `KVM_RUN on vCPU ${id} while the VMM creates a vCPU: run vCPUs only after KVM_CREATE_VCPU returned`);
}

/** KVM_RUN exit. */
export function vcpuRunEnd(vcpuw: Int32Array): void {
  Atomics.store(vcpuw, VcpuLayout.kVcpuRunning, 0);
}

/**
 * Run `fn` (a VMM-side update named by `what`, e.g. "create vCPU 3") with no vCPU of the VM in
 * KVM_RUN; EBUSY, with nothing changed, if one is. Re-entrant through `depth`: only the outermost
 * call does the handshake.
 */
export function withVcpusStopped<T>(vmw: Int32Array, vcpuWords: readonly Int32Array[], state: { depth: number }, what: string, fn: () => T): T {
  if (state.depth > 0) {
    state.depth++;
    try {
      return fn();
    } finally {
      state.depth--;
    }
  }
  Atomics.store(vmw, VmLayout.kVmVmmExclusive, 1);
  try {
    for (let i = 0; i < vcpuWords.length; i++) {
      if (Atomics.load(vcpuWords[i]!, VcpuLayout.kVcpuRunning) !== 0) refuseUpdate(what, i);
    }
    state.depth = 1;
    try {
      return fn();
    } finally {
      state.depth = 0;
    }
  } finally {
    Atomics.store(vmw, VmLayout.kVmVmmExclusive, 0);
  }
}

function refuseUpdate(what: string, id: number): never {
  fail('EBUSY', `cannot ${what} while vCPU ${id} is in KVM_RUN: stop the vCPUs first (do it between phases)`);
}
