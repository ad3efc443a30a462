// kvm_tdp_mmu_map(): an SPTE another thread holds frozen (FROZEN_SPTE, mid-update under the
// frozen-SPTE protocol) makes the fault back off with RET_PF_RETRY: it installs nothing, takes no
// page-table page from its cache, and does not overwrite the frozen value (which would break the
// other thread's update). Once the SPTE is unfrozen the same fault succeeds. The frozen state is
// set by hand, so the interleaving is deterministic.
import { describe, expect, it } from 'vitest';
import { Host } from '../src/index.js';
import { PgLevel, Spte } from '../src/kvm/mmu/spte.js';
import { RetPf, kvmTdpPageFault } from '../src/kvm/mmu/tdp/fault.js';
import { VcpuLayout } from '../src/kvm/vcpu-layout.js';
import { kOp } from '../src/metrics/ops.js';
import { leafAt, span, sptepAt } from './fixtures/mmu.js';

const kBase = 1 << 18; // gfn 0x40000 (1 GiB): 1G-aligned, so the 4K table of the slot is fresh
const kPages = 2048;

function fixture() {
  const host = Host.create({ memory: 64 * 2 ** 20 });
  const vm = host.createVm();
  const hva = vm.mmap({ size: kPages * 4096, backing: 'anonymous' });
  vm.setUserMemoryRegion2({ slot: 1, flags: 0, guestPhysAddr: kBase * 4096, memorySize: kPages * 4096, userspaceAddr: hva });
  const vcpu = vm.createVcpu();
  // One store builds the tables down to the first 4K table.
  expect(vcpu.run(span(kBase, kBase + 1), 10)).toBe(1);
  return { host, vm, vcpu };
}

function snapshot(vm: ReturnType<typeof fixture>['vm'], vcpu: ReturnType<typeof fixture>['vcpu']) {
  return { stats: vm.getStats(), inUse: vm.pool.inUse(), cache: vcpu.w[VcpuLayout.kVcpuMmuCacheCount]! };
}

describe('a fault backs off from a frozen SPTE', () => {
  it('frozen 4K leaf: RET_PF_RETRY, nothing installed; unfrozen: RET_PF_FIXED', () => {
    const { host, vm, vcpu } = fixture();
    const g = kBase + 5;
    const p = sptepAt(vm, g, PgLevel.PG_LEVEL_4K);
    expect(p).toBeGreaterThan(0);
    expect(vm.pool.pt[p]).toBe(0);
    vm.pool.pt[p] = Spte.FROZEN_SPTE;
    const before = snapshot(vm, vcpu);
    const retries0 = host.ctx.metrics.c[kOp.fault_retry]!;
    expect(kvmTdpPageFault(vcpu, g, true)).toBe(RetPf.RET_PF_RETRY);
    expect(vm.pool.pt[p]).toBe(Spte.FROZEN_SPTE);
    expect(vm.pool.pt[p + 1]).toBe(0);
    const after = snapshot(vm, vcpu);
    // topup may refill the cache before mmu_lock; what matters is that nothing was consumed.
    expect(after.stats).toEqual(before.stats);
    expect(after.inUse - after.cache).toBe(before.inUse - before.cache);
    expect(host.ctx.metrics.c[kOp.fault_retry]! - retries0).toBe(1);
    vm.pool.pt[p] = 0;
    expect(kvmTdpPageFault(vcpu, g, true)).toBe(RetPf.RET_PF_FIXED);
    expect(leafAt(vm, g) & Spte.SPTE_MMU_PRESENT_MASK).toBe(Spte.SPTE_MMU_PRESENT_MASK);
    expect(vm.getStats().pages_4k).toBe(before.stats.pages_4k + 1);
    expect(host.audit().violations).toEqual([]);
  });

  it('frozen non-leaf on the way down: RET_PF_RETRY before any table is allocated', () => {
    const { host, vm, vcpu } = fixture();
    // gfn in the next 2M region: its 2M-level SPTE (in the existing 2M table) is empty.
    const g = kBase + 512 + 9;
    const p = sptepAt(vm, g, PgLevel.PG_LEVEL_2M);
    expect(p).toBeGreaterThan(0);
    expect(vm.pool.pt[p]).toBe(0);
    vm.pool.pt[p] = Spte.FROZEN_SPTE;
    const before = snapshot(vm, vcpu);
    expect(kvmTdpPageFault(vcpu, g, false)).toBe(RetPf.RET_PF_RETRY);
    expect(vm.pool.pt[p]).toBe(Spte.FROZEN_SPTE);
    const after = snapshot(vm, vcpu);
    expect(after.stats).toEqual(before.stats);
    expect(after.inUse - after.cache).toBe(before.inUse - before.cache);
    vm.pool.pt[p] = 0;
    expect(kvmTdpPageFault(vcpu, g, false)).toBe(RetPf.RET_PF_FIXED);
    expect(vm.getStats().pages_4k).toBe(before.stats.pages_4k + 1);
    expect(host.audit().violations).toEqual([]);
  });
});
