// Dirty logging on a KVM_MEM_READONLY slot. A read-only slot can never be dirtied: KVM maps it
// without W (__gfn_to_pfn_memslot() clears *writable for a read-only slot), so make_spte() never
// calls mark_page_dirty_in_slot() for it, and kvm_mmu_slot_apply_flags() returns before splitting
// or write-protecting anything ("Nothing more to do for RO slots", reference §3.6).
//
// BUG (src/kvm/mmu/tdp/fault.ts:45 `mapWritable = true`, never cleared; used at :186 and :191):
// every fault maps a writable SPTE, read-only slots included, so
//   - a write after a read goes through the writable SPTE instead of exiting to the VMM (a store
//     to a read-only slot is emulated and becomes KVM_EXIT_MMIO: kvm_handle_error_pfn() on
//     KVM_PFN_ERR_RO_FAULT returns RET_PF_EMULATE; see test/mmio-exit-readonly-slot.test.ts),
//   - a read fault in a logging read-only slot marks the page dirty.
// BUG (src/kvm/vm.ts commitFlagsOnly -> src/kvm/dirty/apply-flags.ts kvmMmuSlotApplyFlags): the
// READONLY check is missing, so enabling logging on a read-only slot eagerly splits its huge pages
// (and disabling flushes); KVM only updates the PML count for such a slot.
import { describe, expect, it } from 'vitest';
import { Host, KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_READONLY } from '../src/index.js';
import { KvmExit } from '../src/kvm/vcpu-layout.js';

const base = 2 ** 20; // gfn of 4 GiB

function reads(gfns: readonly number[], write = false) {
  let i = 0;
  return { iteration: 1, write, next: () => (i < gfns.length ? gfns[i++]! : -1) };
}

function fixture(flags: number) {
  const host = Host.create({ memory: 64 * 2 ** 20, hugepages2m: 4 });
  const vm = host.createVm({ strategy: { tracking: 'wrprot' } });
  const hva = vm.mmap({ size: 2 * 2 ** 21, backing: 'anonymous_hugetlb_2mb' });
  const region = { slot: 1, flags, guestPhysAddr: base * 4096, memorySize: 2 * 2 ** 21, userspaceAddr: hva };
  vm.setUserMemoryRegion2(region);
  const vcpu = vm.createVcpu();
  return { host, vm, vcpu, region };
}

describe('dirty logging on a read-only slot', () => {
  it('a write to a read-only slot that was never mapped exits with KVM_EXIT_MMIO and maps nothing', () => {
    const { vm, vcpu } = fixture(KVM_MEM_READONLY);
    expect(vcpu.run(reads([base + 1], true), 10)).toBe(0);
    expect(vcpu.exitReason).toBe(KvmExit.KVM_EXIT_MMIO);
    expect(vm.getStats()).toMatchObject({ pages_2m: 0, pages_4k: 0 });
  });

  it('a write after a read still exits: the read fault must not map the page writable', () => {
    const { vcpu } = fixture(KVM_MEM_READONLY);
    expect(vcpu.run(reads([base + 1]), 10)).toBe(1);
    expect(vcpu.exitReason).toBe(0);
    expect(vcpu.run(reads([base + 1], true), 10)).toBe(0);
    expect(vcpu.exitReason).toBe(KvmExit.KVM_EXIT_MMIO);
    expect(vcpu.mmio).toMatchObject({ physAddr: (base + 1) * 4096, len: 8, isWrite: true });
  });

  it('a read fault in a logging read-only slot does not mark the page dirty', () => {
    const { vm, vcpu } = fixture(KVM_MEM_READONLY | KVM_MEM_LOG_DIRTY_PAGES);
    expect(vcpu.run(reads([base + 3, base + 700]), 10)).toBe(2);
    expect([...vm.getDirtyLog(1)].every((w) => w === 0)).toBe(true);
  });

  it('enabling and disabling logging on a read-only slot neither splits nor flushes', () => {
    const { vm, vcpu, region } = fixture(KVM_MEM_READONLY);
    expect(vcpu.run(reads([base, base + 512]), 10)).toBe(2);
    expect(vm.getStats()).toMatchObject({ pages_2m: 2, pages_4k: 0, remote_tlb_flush: 0 });
    vm.setUserMemoryRegion2({ ...region, flags: KVM_MEM_READONLY | KVM_MEM_LOG_DIRTY_PAGES });
    expect(vm.getStats()).toMatchObject({ pages_2m: 2, pages_4k: 0, remote_tlb_flush: 0 });
    vm.setUserMemoryRegion2({ ...region, flags: KVM_MEM_READONLY });
    expect(vm.getStats()).toMatchObject({ pages_2m: 2, pages_4k: 0, remote_tlb_flush: 0 });
  });
});
