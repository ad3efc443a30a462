/**
 * vCPU requests and kicks (kvm_make_all_cpus_request, kvm_flush_remote_tlbs).
 *
 * A request sets a bit in vcpu->requests; a vCPU in guest mode is moved to EXITING_GUEST_MODE
 * (kvm_vcpu_exiting_guest_mode) and, for requests that wait, the requester spins until it has
 * left guest mode. vCPUs check their mode between guest accesses (the IPI) and process requests
 * at the next entry; because both sides use seq-cst atomics on mode and requests, either the
 * requester sees the vCPU outside guest mode or the vCPU sees the request before it touches
 * guest memory again.
 */
import { VmLayout } from './vm-layout.js';
import { VcpuMode, KvmReq, VcpuLayout } from './vcpu-layout.js';
import { count } from '../metrics/counters.js';
import { Op } from '../metrics/ops.js';
import type { Vm } from './vm.js';

export function kvmMakeAllCpusRequest(vm: Vm, req: number, wait: boolean): void {
  const vcpus = vm.vcpuWords;
  for (let i = 0; i < vcpus.length; i++) {
    const w = vcpus[i]!;
    Atomics.or(w, VcpuLayout.kVcpuRequests, req);
    if (Atomics.load(w, VcpuLayout.kVcpuMode) === VcpuMode.IN_GUEST_MODE) Atomics.compareExchange(w, VcpuLayout.kVcpuMode, VcpuMode.IN_GUEST_MODE, VcpuMode.EXITING_GUEST_MODE);
  }
  if (!wait) return;
  for (let i = 0; i < vcpus.length; i++) {
    const w = vcpus[i]!;
    let spins = 0;
    while (Atomics.load(w, VcpuLayout.kVcpuMode) === VcpuMode.EXITING_GUEST_MODE) {
      // The target may share a core with us: after a short spin, sleep until it leaves guest mode.
      if (++spins > 2000) Atomics.wait(w, VcpuLayout.kVcpuMode, VcpuMode.EXITING_GUEST_MODE, 1);
    }
  }
}

/** kvm_flush_remote_tlbs(): every vCPU drops its translations before the caller proceeds. */
export function kvmFlushRemoteTlbs(vm: Vm): void {
  Atomics.add(vm.w, VmLayout.kVmStatRemoteTlbFlushRequests, 1);
  count(vm.ctx.metrics, Op.tlb_flush_request);
  kvmMakeAllCpusRequest(vm, KvmReq.KVM_REQ_TLB_FLUSH, true);
  Atomics.add(vm.w, VmLayout.kVmStatRemoteTlbFlush, 1);
}
