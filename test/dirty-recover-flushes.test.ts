// Huge-page recovery at disable (kvm_mmu_recover_huge_pages) flushes remote TLBs before
// mmu_lock is dropped: in place, once at the end even for a single recovered page
// (recover_huge_pages_range); by zapping collapsible tables, once per table, before the frozen
// table is cleared (tdp_mmu_zap_spte_atomic). The flushes reported are flushes really made
// (remote_tlb_flush), and a huge page ending exactly at the slot's end is recovered too.
import { describe, expect, it } from 'vitest';
import { Host, KVM_MEM_LOG_DIRTY_PAGES } from '../src/index.js';
import type { DirtyStrategy } from '../src/kvm/dirty/strategy.js';
import { span } from './fixtures/mmu.js';

const kBase = 1 << 18;

function cycle(strategy: Partial<DirtyStrategy>, hugePages: number) {
  const host = Host.create({ memory: 64 * 2 ** 20, hugepages2m: hugePages + 1 });
  const vm = host.createVm({ strategy });
  const hva = vm.mmap({ size: hugePages * 2 ** 21, backing: 'anonymous_hugetlb_2mb' });
  const region = { slot: 1, flags: 0, guestPhysAddr: kBase * 4096, memorySize: hugePages * 2 ** 21, userspaceAddr: hva };
  vm.setUserMemoryRegion2(region);
  const vcpu = vm.createVcpu();
  expect(vcpu.run(span(kBase, kBase + hugePages * 512, true), 1 << 20)).toBe(hugePages * 512);
  vm.setUserMemoryRegion2({ ...region, flags: KVM_MEM_LOG_DIRTY_PAGES });
  expect(vm.getStats()).toMatchObject({ pages_2m: 0, pages_4k: hugePages * 512 });
  const flush0 = vm.getStats().remote_tlb_flush;
  vm.setUserMemoryRegion2({ ...region, flags: 0 });
  return { host, vm, vcpu, flushes: vm.getStats().remote_tlb_flush - flush0, reported: vm.lastApplyFlags.tlbFlushes };
}

describe('huge-page recovery flushes TLBs', () => {
  it('in place, one huge page (the slot ends with it): recovered, one flush', () => {
    const r = cycle({ recover: 'in-place' }, 1);
    expect(r.vm.getStats()).toMatchObject({ pages_2m: 1, pages_4k: 0 });
    expect(r.reported).toBe(1);
    expect(r.flushes).toBe(1);
    expect(r.host.audit().violations).toEqual([]);
  });

  it('in place, three huge pages: all recovered, one batched flush', () => {
    const r = cycle({ recover: 'in-place' }, 3);
    expect(r.vm.getStats()).toMatchObject({ pages_2m: 3, pages_4k: 0 });
    expect([r.reported, r.flushes]).toEqual([1, 1]);
  });

  it('zap-collapsible: one flush per zapped table, each a real remote flush; faults bring 2M back', () => {
    const r = cycle({ recover: 'zap-collapsible' }, 3);
    expect(r.vm.getStats()).toMatchObject({ pages_2m: 0, pages_4k: 0 });
    expect([r.reported, r.flushes]).toEqual([3, 3]);
    expect(r.vcpu.run(span(kBase, kBase + 3 * 512, false), 1 << 20)).toBe(3 * 512);
    expect(r.vm.getStats()).toMatchObject({ pages_2m: 3, pages_4k: 0 });
    expect(r.host.audit().violations).toEqual([]);
  });
});
