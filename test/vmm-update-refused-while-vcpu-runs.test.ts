// Updates that copy shared state (memslot create/delete/move, KVM_CREATE_VCPU, page-table pool
// growth) would lose A/D bits a running vCPU sets meanwhile, so until they are concurrent they
// are refused with EBUSY while any vCPU is inside KVM_RUN, and work again once it left; a
// flags-only change (dirty logging on/off) stays allowed, as KVM allows it under running vCPUs.
// The vCPU is parked mid-run on a worker with the fault hook, so "running" is certain.
import { describe, expect, it } from 'vitest';
import {
  KVM_MEM_LOG_DIRTY_PAGES, KvmError, Runner, audit, config, createMemstressVms, armHook, releaseHook, HookPoint, HookState,
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

describe('VMM updates that copy shared state are refused while a vCPU runs', () => {
  it('memslot create/delete/move, KVM_CREATE_VCPU and pool growth: EBUSY while parked in KVM_RUN, fine after', async () => {
    const s = smallVm();
    const vm = s.vms[0]!;
    const slot = vm.memslots[0]!;
    const region = { slot: (slot.asId << 16) | slot.id, flags: slot.flags, guestPhysAddr: slot.baseGfn * 4096, memorySize: slot.npages * 4096, userspaceAddr: slot.userspaceAddr };
    // A second mapping for a new slot big enough that creating it must grow the page-table pool.
    const bigBytes = 256 * 2 ** 20;
    const hva = vm.mmap({ size: bigBytes, backing: 'anonymous' });
    const newSlot = { slot: 9, flags: 0, guestPhysAddr: 2 ** 40, memorySize: bigBytes, userspaceAddr: hva };
    const moved = { ...region, guestPhysAddr: 2 ** 41 };
    armHook(vm, slot.baseGfn + 7, HookPoint.kHookAfterFaultin);
    const runner = new Runner(s.host, s.vms, { workers: 1, cost: s.cost });
    try {
      let settled = false;
      const phase = runner.phase('parked', () => ({ baseGfn: slot.baseGfn, pages: 64, order: 'sequential', writePercent: 100, seed: 1, vm: 0, vcpu: 0, iteration: 1 })).finally(() => (settled = true));
      await until(() => Atomics.load(vm.w, VmLayout.kVmHookState) === HookState.kHookParked || settled);
      expect(settled).toBe(false);
      expect(Atomics.load(vm.vcpuWords[0]!, VcpuLayout.kVcpuRunning)).toBe(1);
      const cap0 = vm.pool.capacity;
      const gen0 = vm.generation;

      expectEbusy(() => vm.setUserMemoryRegion2(newSlot), /cannot create memslot 9 while vCPU 0 is in KVM_RUN/);
      expectEbusy(() => vm.setUserMemoryRegion2({ ...region, memorySize: 0 }), new RegExp(`cannot delete memslot ${region.slot} while vCPU 0`));
      expectEbusy(() => vm.setUserMemoryRegion2(moved), new RegExp(`memslot ${region.slot} while vCPU 0`));
      expectEbusy(() => vm.createVcpu(), /cannot create vCPU 1 while vCPU 0/);
      // Nothing changed: same slots, vCPUs, pool and generation; the refused update left the
      // VMM-exclusive word clear, so the vCPU is not refused in turn.
      expect(vm.memslots.length).toBe(1);
      expect(vm.memslots[0]!.baseGfn).toBe(slot.baseGfn);
      expect(vm.nrVcpus).toBe(1);
      expect(vm.pool.capacity).toBe(cap0);
      expect(vm.generation).toBe(gen0);
      expect(Atomics.load(vm.w, VmLayout.kVmVmmExclusive)).toBe(0);

      // Flags-only (dirty logging on and off) goes through under a running vCPU, as in KVM —
      // after synchronize_srcu() waited for the parked fault, which read the old flags: let it
      // go on by itself (this thread is the one that waits).
      Atomics.store(vm.w, VmLayout.kVmHookTimeoutMs, 50);
      vm.setUserMemoryRegion2({ ...region, flags: KVM_MEM_LOG_DIRTY_PAGES });
      expect(Atomics.load(vm.w, VmLayout.kVmHookState)).toBe(HookState.kHookReleased);
      expect(vm.memslots[0]!.flags & KVM_MEM_LOG_DIRTY_PAGES).toBe(KVM_MEM_LOG_DIRTY_PAGES);
      vm.setUserMemoryRegion2(region);

      releaseHook(vm);
      const p = await phase;
      expect(p.vcpus[0]!.accesses).toBe(64);
      expect(Atomics.load(vm.vcpuWords[0]!, VcpuLayout.kVcpuRunning)).toBe(0);

      // The vCPU left KVM_RUN: each update works now.
      vm.setUserMemoryRegion2(newSlot);
      expect(vm.pool.capacity).toBeGreaterThan(cap0);
      vm.setUserMemoryRegion2(moved);
      expect(vm.memslots.map((m) => m.baseGfn)).toContain(2 ** 41 / 4096);
      vm.createVcpu();
      expect(vm.nrVcpus).toBe(2);
      vm.setUserMemoryRegion2({ ...moved, memorySize: 0 });
      expect(vm.memslots.length).toBe(1);
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
