// Memslot create, move and delete while a vCPU is inside KVM_RUN on a worker, parked in a fault
// by the fault hook so "running" is certain, as KVM allows (kvm_set_memslot() under SRCU):
//  - a create that grows the page-table pool, over memory mapped during the phase: the worker's
//    vCPU then maps the new slot (the VMA came by the task's port) from pages beyond the pool's
//    old end (its views were refreshed at guest entry; nothing copied);
//  - a delete of the slot a parked fault read before the update (the old set): the update waits
//    for that fault (synchronize_srcu after KVM_MEMSLOT_INVALID), then zaps, so no SPTE of the
//    deleted slot survives the ioctl, and faults that come while the slot is invalid retry
//    instead of mapping it (checked with the VMM parked between the zap and the removal);
//  - a move of a slot the vCPU does not touch, under the same running vCPU.
import { describe, expect, it } from 'vitest';
import { Runner, audit, armHook, releaseHook, HookPoint, HookState, VmLayout, until, Host, Vm } from './fixtures/dist.js';
import { Metrics } from '../dist/src/metrics/counters.js';
import { costVector, loadCostModel } from '../dist/src/metrics/cost-model.js';
import { PgLevel, PtLayout, Spte } from '../dist/src/kvm/mmu/spte.js';
import { kDefaultCostModelPath } from './fixtures/vm-ctx.js';

const kSlotPages = 4096;
const kBigPages = 65536;
const G = 2 ** 32 / 4096;

/** The first gfn in [start, end) that a present leaf SPTE (any level) maps, or -1. */
function mappedGfnIn(vm: Vm, start: number, end: number): number {
  const pt = vm.pool.pt;
  for (let gfn = start; gfn < end; gfn++) {
    let page = vm.root;
    for (let l = PgLevel.PT64_ROOT_4LEVEL; l >= PgLevel.PG_LEVEL_4K; l--) {
      const sptep = page * PtLayout.kPtPageWords + ((gfn >>> ((l - 1) * 9)) & 511) * PtLayout.kSpteWords;
      const flags = Atomics.load(pt, sptep);
      if ((flags & Spte.SPTE_MMU_PRESENT_MASK) === 0) break;
      if (l === PgLevel.PG_LEVEL_4K || (flags & Spte.PT_PAGE_SIZE_MASK) !== 0) return gfn;
      page = Atomics.load(pt, sptep + 1);
    }
  }
  return -1;
}

/** The page-table page that holds gfn's 4K SPTE (-1 if none). */
function leafTable(vm: Vm, gfn: number): number {
  const pt = vm.pool.pt;
  let page = vm.root;
  for (let l = PgLevel.PT64_ROOT_4LEVEL; l > PgLevel.PG_LEVEL_4K; l--) {
    const sptep = page * PtLayout.kPtPageWords + ((gfn >>> ((l - 1) * 9)) & 511) * PtLayout.kSpteWords;
    if ((Atomics.load(pt, sptep) & Spte.SPTE_MMU_PRESENT_MASK) === 0) return -1;
    page = Atomics.load(pt, sptep + 1);
  }
  return page;
}

function setup() {
  const host = Host.create({ memory: 128 * 2 ** 20, stamps: true });
  const cost = costVector(loadCostModel(kDefaultCostModelPath));
  const vm = Vm.create(host, 0, { metrics: new Metrics(cost), hostThread: host.thread() }, { maxVcpus: 1 });
  const hva = vm.mmap({ size: kSlotPages * 4096, backing: 'anonymous' });
  const region = { slot: 1, flags: 0, guestPhysAddr: G * 4096, memorySize: kSlotPages * 4096, userspaceAddr: hva };
  vm.setUserMemoryRegion2(region);
  vm.createVcpu();
  return { host, vm, cost, region };
}

const stream = (baseGfn: number, pages: number) => () => ({ baseGfn, pages, order: 'sequential' as const, writePercent: 100, seed: 1, vm: 0, vcpu: 0, iteration: 1 });

describe('memslot updates while a vCPU is parked in KVM_RUN on a worker', () => {
  it('create (pool growth), delete of the slot a parked fault read, and move all go through; nothing of the deleted slot stays mapped', async () => {
    const s = setup();
    const vm = s.vm;
    const runner = new Runner(s.host, [vm], { workers: 1, cost: s.cost });
    try {
      // Phase 1: park in slot 1, create the big slot meanwhile; the vCPU then walks on into it.
      armHook(vm, G + 7, HookPoint.kHookAfterFaultin);
      let settled = false;
      const p1 = runner.phase('create', stream(G, kSlotPages + 512)).finally(() => (settled = true));
      await until(() => Atomics.load(vm.w, VmLayout.kVmHookState) === HookState.kHookParked || settled);
      expect(settled).toBe(false);
      const cap0 = vm.pool.capacity;
      // The SRCU waits inside this ioctl wait for the parked fault: let it go on by itself. The
      // big slot's memory is mapped now, during the phase (the worker gets the VMA by its port).
      Atomics.store(vm.w, VmLayout.kVmHookTimeoutMs, 50);
      const bigHva = vm.mmap({ size: kBigPages * 4096, backing: 'anonymous' });
      const big = { slot: 9, flags: 0, guestPhysAddr: (G + kSlotPages) * 4096, memorySize: kBigPages * 4096, userspaceAddr: bigHva };
      vm.setUserMemoryRegion2(big);
      expect(Atomics.load(vm.w, VmLayout.kVmHookState)).toBe(HookState.kHookReleased);
      expect(vm.pool.capacity).toBeGreaterThan(cap0);
      const r1 = await p1;
      // Every access of the big slot found it (none went out as MMIO), through tables taken from
      // the grown part of the pool.
      expect(r1.vcpus[0]!.mmioExits).toBe(0);
      expect(vm.getStats().pages_4k).toBe(kSlotPages + 512);
      expect(leafTable(vm, G + kSlotPages)).toBeGreaterThanOrEqual(cap0);
      expect(audit(s.host, [vm]).violations).toEqual([]);

      // Phase 2: park a fault in the big slot (it read the set with the slot valid), then delete
      // that slot; the VMM stops between its zap and the slot's removal for a while, so faults
      // that come meanwhile find the slot invalid. Then move slot 1 under the same vCPU.
      releaseHook(vm);
      const parkAt = G + kSlotPages + 1024 + 7;
      armHook(vm, parkAt, HookPoint.kHookAfterFaultin);
      settled = false;
      const p2 = runner.phase('delete', stream(G + kSlotPages + 1024, 2048)).finally(() => (settled = true));
      await until(() => Atomics.load(vm.w, VmLayout.kVmHookState) === HookState.kHookParked || settled);
      expect(settled).toBe(false);
      Atomics.store(vm.w, VmLayout.kVmHookTimeoutMs, 50);
      const nap = new Int32Array(new SharedArrayBuffer(4));
      let hooked = 0;
      vm.memslotHook = () => {
        hooked++;
        // The VMM thread stops here, the slot zapped but still in the set (KVM_MEMSLOT_INVALID).
        Atomics.wait(nap, 0, 0, 50);
      };
      vm.setUserMemoryRegion2({ ...big, memorySize: 0 });
      vm.memslotHook = null;
      expect(hooked).toBe(1);
      expect(Atomics.load(vm.w, VmLayout.kVmHookState)).toBe(HookState.kHookReleased);
      // The parked fault finished before the zap, faults during the window retried: nothing maps
      // the deleted range once the ioctl returned (the vCPU still runs: its accesses are MMIO now).
      expect(mappedGfnIn(vm, G + kSlotPages, G + kSlotPages + kBigPages)).toBe(-1);
      vm.setUserMemoryRegion2({ ...s.region, guestPhysAddr: 2 ** 36 });
      expect(mappedGfnIn(vm, G, G + kSlotPages)).toBe(-1);
      const r2 = await p2;
      expect(r2.vcpus[0]!.accesses).toBe(2048);
      expect(r2.vcpus[0]!.mmioExits).toBeGreaterThan(0);
      expect(mappedGfnIn(vm, G + kSlotPages, G + kSlotPages + kBigPages)).toBe(-1);
      expect(vm.memslots.map((m) => m.baseGfn)).toEqual([2 ** 36 / 4096]);
      expect(audit(s.host, [vm]).violations).toEqual([]);
    } finally {
      vm.memslotHook = null;
      releaseHook(vm);
      await runner.close();
    }
  });
});
