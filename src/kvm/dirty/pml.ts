/**
 * PML (Page Modification Logging): while any slot logs dirty pages, the CPU appends the gfn of
 * every D-bit 0->1 transition it makes to the vCPU's 512-entry buffer; a full buffer is a
 * PML-full exit, and KVM drains the buffer into the dirty log on every exit
 * (vmx_flush_pml_buffer). Before reading dirty logs, KVM kicks vCPUs so their buffers are
 * drained (kvm_arch_sync_dirty_log / kvm_flush_pml_buffers).
 *
 * Ordering: a vCPU drains before it publishes OUTSIDE_GUEST_MODE, so a VMM that saw it outside
 * guest mode (or waited for its kick to be acknowledged) sees everything it logged.
 */
import { count } from '../../metrics/counters.js';
import { Op } from '../../metrics/ops.js';
import { kvmMakeAllCpusRequest } from '../requests.js';
import { KvmReq, VcpuLayout } from '../vcpu-layout.js';
import { VmLayout } from '../vm-layout.js';
import { Strat } from './strategy.js';
import type { Vcpu } from '../vcpu.js';
import type { Vm } from '../vm.js';


/** Whether the CPU logs D-bit transitions for this VM now (PML on and any slot logging). */
export function pmlEnabled(vm: Vm): boolean {
  // enable_pml needs EPT (vmx's hardware_setup clears it with ept=0): never with the shadow MMU.
  return vm.tdpMmuEnabled && (vm.w[VmLayout.kVmStrategy]! & Strat.kStratPml) !== 0 && Atomics.load(vm.w, VmLayout.kVmNrSlotsDirtyLogging) > 0;
}

export function pmlLog(vcpu: Vcpu, gfn: number): void {
  const w = vcpu.w;
  const idx = w[VcpuLayout.kVcpuPmlIndex]!;
  w[VcpuLayout.kVcpuPmlBuffer + idx] = gfn;
  w[VcpuLayout.kVcpuPmlIndex] = idx + 1;
  const m = vcpu.vm.ctx.metrics;
  count(m, Op.pml_log);
  if (idx + 1 === VcpuLayout.PML_LOG_NR_ENTRIES) {
    // EXIT_REASON_PML_FULL
    vcpu.f[VcpuLayout.kVcpuPmlFullExits]!++;
    count(m, Op.vm_exit);
    count(m, Op.pml_flush);
    pmlDrain(vcpu);
  }
}

/** vmx_flush_pml_buffer(): mark every logged gfn dirty in its slot. */
export function pmlDrain(vcpu: Vcpu): void {
  const w = vcpu.w;
  const n = w[VcpuLayout.kVcpuPmlIndex]!;
  if (n === 0) return;
  const vm = vcpu.vm;
  for (let i = 0; i < n; i++) {
    const gfn = w[VcpuLayout.kVcpuPmlBuffer + i]!;
    const slot = vcpu.gfnToMemslot(gfn);
    if (slot !== null && slot.dirtyLogging()) vm.markPageDirtyInSlot(slot, gfn, vcpu);
  }
  w[VcpuLayout.kVcpuPmlIndex] = 0;
}

/** kvm_arch_sync_dirty_log(): make running vCPUs exit (and drain PML) before logs are read. */
export function kvmArchSyncDirtyLog(vm: Vm): void {
  if (!pmlEnabled(vm)) return;
  kvmMakeAllCpusRequest(vm, KvmReq.KVM_REQ_FLUSH_CPU_DIRTY_LOG, true);
}
