// KVM_CREATE_VCPU adds SABs (the vCPU's words, its ring) that workers learn only from the next
// handle, so a worker's kvm_make_all_cpus_request() would miss the new vCPU: it is refused with
// EBUSY while any vCPU is inside KVM_RUN, and works again once it left. (Memslot changes and
// page-table pool growth run under running vCPUs: memslot-update-while-vcpu-parked.test.ts.)
// The vCPU is parked mid-run on a worker with the fault hook, so "running" is certain.
import { describe, expect, it } from 'vitest';
import {
  KvmError, Runner, audit, config, createMemstressVms, armHook, releaseHook, HookPoint, HookState,
  VcpuLayout, VmLayout, until, Host, Vm,
} from './fixtures/dist.js';
import { Metrics } from '../dist/src/metrics/counters.js';
import { costVector, loadCostModel } from '../dist/src/metrics/cost-model.js';
import { kDefaultCostModelPath } from './fixtures/vm-ctx.js';

/** One VM with room for more vCPUs (KVM_CAP_MAX_VCPUS 4), one 64-page slot, one vCPU. */
function smallVm() {
  const host = Host.create({ memory: 64 * 2 ** 20 });
  const cost = costVector(loadCostModel(kDefaultCostModelPath));
  const ctx = { metrics: new Metrics(cost), hostThread: host.thread() };
  const vm = Vm.create(host, 0, ctx, { maxVcpus: 4 });
  const hva = vm.mmap({ size: 64 * 4096, backing: 'anonymous' });
  vm.setUserMemoryRegion2({ slot: 1, flags: 0, guestPhysAddr: 2 ** 32, memorySize: 64 * 4096, userspaceAddr: hva });
  vm.createVcpu();
  return { host, vms: [vm], cost };
}

function expectEbusy(fn: () => unknown, what: RegExp): void {
  let err: unknown = null;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(KvmError);
  expect((err as KvmError).errno).toBe('EBUSY');
  expect((err as KvmError).message).toMatch(what);
  expect((err as KvmError).message).toMatch(/stop the vCPUs first/);
}

describe('KVM_CREATE_VCPU is refused while a vCPU runs', () => {
  it('EBUSY while a vCPU is parked in KVM_RUN, nothing changed; fine after', async () => {
    const s = smallVm();
    const vm = s.vms[0]!;
    const slot = vm.memslots[0]!;
    armHook(vm, slot.baseGfn + 7, HookPoint.kHookAfterFaultin);
    const runner = new Runner(s.host, s.vms, { workers: 1, cost: s.cost });
    try {
      let settled = false;
      const phase = runner.phase('parked', () => ({ baseGfn: slot.baseGfn, pages: 64, order: 'sequential', writePercent: 100, seed: 1, vm: 0, vcpu: 0, iteration: 1 })).finally(() => (settled = true));
      await until(() => Atomics.load(vm.w, VmLayout.kVmHookState) === HookState.kHookParked || settled);
      expect(settled).toBe(false);
      expect(Atomics.load(vm.vcpuWords[0]!, VcpuLayout.kVcpuRunning)).toBe(1);
      const layout0 = vm.layoutGen;
      expectEbusy(() => vm.createVcpu(), /cannot create vCPU 1 while vCPU 0/);
      // Nothing changed, and the refused update left the VMM-exclusive word clear, so the vCPU
      // is not refused in turn.
      expect(vm.nrVcpus).toBe(1);
      expect(vm.layoutGen).toBe(layout0);
      expect(Atomics.load(vm.w, VmLayout.kVmVmmExclusive)).toBe(0);
      releaseHook(vm);
      const p = await phase;
      expect(p.vcpus[0]!.accesses).toBe(64);
      expect(Atomics.load(vm.vcpuWords[0]!, VcpuLayout.kVcpuRunning)).toBe(0);
      vm.createVcpu();
      expect(vm.nrVcpus).toBe(2);
      expect(audit(s.host, s.vms).violations).toEqual([]);
    } finally {
      releaseHook(vm);
      await runner.close();
    }
  });

  it('a KVM_RUN that starts during such an update is refused (EBUSY) and leaves no running mark', () => {
    const c = config({ vcpus: 1, bytesPerVcpu: 16 * 4096, workers: 1 });
    const s = createMemstressVms(c);
    const vm = s.vms[0]!;
    const vcpu = vm.vcpu(0);
    const base = vm.memslots[0]!.baseGfn;
    let g = base;
    const src = { iteration: 1, write: true, next: () => (g < base + 16 ? g++ : -1) };
    // The VMM side of the handshake has published its update (the window the Dekker pair covers).
    Atomics.store(vm.w, VmLayout.kVmVmmExclusive, 1);
    let err: unknown = null;
    try {
      vcpu.run(src, 100);
    } catch (e) {
      err = e;
    }
    expect((err as KvmError).errno).toBe('EBUSY');
    expect((err as KvmError).message).toMatch(/KVM_RUN on vCPU 0 while the VMM/);
    expect(Atomics.load(vm.vcpuWords[0]!, VcpuLayout.kVcpuRunning)).toBe(0);
    expect(g).toBe(base); // no access ran
    Atomics.store(vm.w, VmLayout.kVmVmmExclusive, 0);
    expect(vcpu.run(src, 100)).toBe(16);
    expect(Atomics.load(vm.vcpuWords[0]!, VcpuLayout.kVcpuRunning)).toBe(0);
  });
});
