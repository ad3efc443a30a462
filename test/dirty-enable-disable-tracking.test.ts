// kvm_mmu_slot_apply_flags() seen from the guest:
//  - enable write-protects and then flushes remote TLBs (kvm_flush_remote_tlbs_memslot), and a
//    vCPU serves that flush request at its next entry (vcpu_enter_guest) — so translations it
//    cached while writing before the enable cannot let later stores bypass tracking;
//  - with PML, enable write-protects huge leaves (>= 2M) so a store splits them to 4K;
//  - disabling the last logging slot turns PML off: later stores are not logged;
//  - a read-only slot is left alone ("nothing more to do for RO slots"): no split, no wrprot.
import { describe, expect, it } from 'vitest';
import { Host, KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_READONLY } from '../src/index.js';
import type { DirtyStrategy } from '../src/kvm/dirty/strategy.js';
import type { BackingSource } from '../src/host/mm.js';
import { PgLevel, Spte } from '../src/kvm/mmu/spte.js';
import { kOp } from '../src/metrics/ops.js';
import { leafAt, ops, setBits, span } from './fixtures/mmu.js';

const kBase = 1 << 18;

function fixture(strategy: Partial<DirtyStrategy>, backing: BackingSource = 'anonymous', flags = 0) {
  const host = Host.create({ memory: 64 * 2 ** 20, hugepages2m: 4 });
  const vm = host.createVm({ strategy });
  const hva = vm.mmap({ size: 2 * 2 ** 20, backing });
  const region = { slot: 1, flags, guestPhysAddr: kBase * 4096, memorySize: 2 * 2 ** 20, userspaceAddr: hva };
  vm.setUserMemoryRegion2(region);
  const vcpu = vm.createVcpu();
  return { host, vm, vcpu, region, c: host.ctx.metrics.c };
}

describe('enabling and disabling dirty logging, seen by a running guest', () => {
  it('wrprot: stores cached in the TLB before enable fault after it and are logged', () => {
    const { host, vm, vcpu, region } = fixture({ tracking: 'wrprot' });
    // Twice each: the second store of each page hits the TLB (W|D cached).
    expect(vcpu.run(ops([[kBase, true], [kBase + 1, true], [kBase, true], [kBase + 1, true]]), 10)).toBe(4);
    const flush0 = vcpu.getStats().tlb_flush;
    vm.setUserMemoryRegion2({ ...region, flags: KVM_MEM_LOG_DIRTY_PAGES });
    const fast0 = vcpu.getStats().pf_fast;
    expect(vcpu.run(ops([[kBase, true], [kBase + 1, true]]), 10)).toBe(2);
    expect(vcpu.getStats().tlb_flush - flush0).toBe(1);
    expect(vcpu.getStats().pf_fast - fast0).toBe(2);
    expect(setBits(vm.getDirtyLog(1))).toEqual([0, 1]);
    expect(host.audit().violations).toEqual([]);
  });

  it('PML: the TLB entries of the pre-enable stores (D set) are dropped, so the stores are logged', () => {
    const { vm, vcpu, region, c } = fixture({ tracking: 'pml' });
    expect(vcpu.run(ops([[kBase + 2, true], [kBase + 2, true]]), 10)).toBe(2);
    vm.setUserMemoryRegion2({ ...region, flags: KVM_MEM_LOG_DIRTY_PAGES });
    const log0 = c[kOp.pml_log]!;
    expect(vcpu.run(ops([[kBase + 2, true]]), 10)).toBe(1);
    expect(c[kOp.pml_log]! - log0).toBe(1);
    expect(setBits(vm.getDirtyLog(1))).toEqual([2]);
  });

  it('PML, split on fault: enable write-protects a 2M leaf; a store splits it and is logged', () => {
    const { host, vm, vcpu, region } = fixture({ tracking: 'pml', split: 'on-fault' }, 'anonymous_hugetlb_2mb');
    expect(vcpu.run(span(kBase, kBase + 1), 10)).toBe(1);
    expect(vm.getStats()).toMatchObject({ pages_2m: 1, pages_4k: 0 });
    vm.setUserMemoryRegion2({ ...region, flags: KVM_MEM_LOG_DIRTY_PAGES });
    expect(leafAt(vm, kBase, PgLevel.PG_LEVEL_2M) & Spte.PT_WRITABLE_MASK).toBe(0);
    expect(vcpu.run(span(kBase + 9, kBase + 10), 10)).toBe(1);
    expect(vm.getStats()).toMatchObject({ pages_2m: 0, pages_4k: 512 });
    expect(setBits(vm.getDirtyLog(1))).toEqual([9]);
    expect(host.audit().violations).toEqual([]);
  });

  it('PML: after the last logging slot is disabled, stores are no longer logged', () => {
    const { vm, vcpu, region, c } = fixture({ tracking: 'pml' });
    expect(vcpu.run(span(kBase, kBase + 8), 10)).toBe(8);
    vm.setUserMemoryRegion2({ ...region, flags: KVM_MEM_LOG_DIRTY_PAGES });
    vm.setUserMemoryRegion2({ ...region, flags: 0 });
    const log0 = c[kOp.pml_log]!;
    expect(vcpu.run(span(kBase, kBase + 8), 10)).toBe(8);
    expect(c[kOp.pml_log]! - log0).toBe(0);
    // Logging on again: PML is back.
    vm.setUserMemoryRegion2({ ...region, flags: KVM_MEM_LOG_DIRTY_PAGES });
    expect(vcpu.run(span(kBase, kBase + 8), 10)).toBe(8);
    expect(c[kOp.pml_log]! - log0).toBe(8);
  });

  it('INITIALLY_SET with wrprot-huge: write-protecting huge leaves at enable flushes the TLB', () => {
    const { host, vm, vcpu, region } = fixture({ tracking: 'wrprot', huge: 'wrprot-huge', split: 'on-fault' }, 'anonymous_hugetlb_2mb');
    vm.enableCap('KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2', 3);
    // Two stores: the second hits the TLB entry (W|D) the first one's fault filled.
    expect(vcpu.run(ops([[kBase + 4, true], [kBase + 4, true]]), 10)).toBe(2);
    vm.setUserMemoryRegion2({ ...region, flags: KVM_MEM_LOG_DIRTY_PAGES });
    expect(leafAt(vm, kBase, PgLevel.PG_LEVEL_2M) & Spte.PT_WRITABLE_MASK).toBe(0);
    expect(vm.lastApplyFlags.tlbFlushes).toBe(1);
    const s0 = vcpu.getStats();
    expect(vcpu.run(ops([[kBase + 4, true]]), 10)).toBe(1);
    const s1 = vcpu.getStats();
    expect(s1.tlb_flush - s0.tlb_flush).toBe(1);
    expect(s1.pf_taken - s0.pf_taken).toBe(1);
    expect(vm.getStats()).toMatchObject({ pages_2m: 0, pages_4k: 512 });
    expect(host.audit().violations).toEqual([]);
  });

  it('a read-only slot: enabling logging neither splits nor write-protects its huge pages', () => {
    const { host, vm, vcpu, region } = fixture({ tracking: 'wrprot', split: 'eager' }, 'anonymous_hugetlb_2mb', KVM_MEM_READONLY);
    expect(vcpu.run(span(kBase, kBase + 1, false), 10)).toBe(1);
    expect(vm.getStats()).toMatchObject({ pages_2m: 1, pages_4k: 0 });
    const leaf = leafAt(vm, kBase, PgLevel.PG_LEVEL_2M);
    const flush0 = vm.getStats().remote_tlb_flush;
    vm.setUserMemoryRegion2({ ...region, flags: KVM_MEM_READONLY | KVM_MEM_LOG_DIRTY_PAGES });
    expect(vm.lastApplyFlags).toEqual({ splits: 0, tlbFlushes: 0 });
    expect(vm.getStats()).toMatchObject({ pages_2m: 1, pages_4k: 0, remote_tlb_flush: flush0 });
    expect(leafAt(vm, kBase, PgLevel.PG_LEVEL_2M)).toBe(leaf);
    expect(host.audit().violations).toEqual([]);
  });
});
