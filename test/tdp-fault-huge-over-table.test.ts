// tdp_mmu_map_handle_target_level(): a fault that maps a huge page where a (now empty) page
// table still hangs — dirty logging mapped the range at 4K, an invalidation zapped the leaves,
// logging was turned off — replaces a present non-leaf SPTE with a huge leaf. The old table is
// removed (handle_removed_pt, retired for the epoch) and remote TLBs are flushed before the
// fault returns (kvm_flush_remote_tlbs_gfn), since vCPUs may still cache walks through it.
import { describe, expect, it } from 'vitest';
import { Host, KVM_MEM_LOG_DIRTY_PAGES } from '../src/index.js';
import { PgLevel, Spte } from '../src/kvm/mmu/spte.js';
import { RetPf, kvmTdpPageFault } from '../src/kvm/mmu/tdp/fault.js';
import { leafAt, span } from './fixtures/mmu.js';

const kBase = 1 << 18;

describe('a huge leaf replaces a page table in the fault path', () => {
  it('the table is removed and remote TLBs are flushed once', () => {
    const host = Host.create({ memory: 64 * 2 ** 20, hugepages2m: 4 });
    const vm = host.createVm({ strategy: { tracking: 'wrprot' } });
    const hva = vm.mmap({ size: 2 * 2 ** 20, backing: 'anonymous_hugetlb_2mb' });
    const region = { slot: 1, flags: KVM_MEM_LOG_DIRTY_PAGES, guestPhysAddr: kBase * 4096, memorySize: 2 * 2 ** 20, userspaceAddr: hva };
    vm.setUserMemoryRegion2(region);
    const vcpu = vm.createVcpu();
    expect(vcpu.run(span(kBase, kBase + 512), 1 << 20)).toBe(512);
    expect(vm.getStats()).toMatchObject({ pages_4k: 512, pages_2m: 0 });
    vm.invalidateRange(kBase, kBase + 512, { unmap: false });
    vm.setUserMemoryRegion2({ ...region, flags: 0 });
    // The 2M-level SPTE is still a present non-leaf: the empty 4K table.
    const nonleaf = leafAt(vm, kBase, PgLevel.PG_LEVEL_2M);
    expect(nonleaf & (Spte.SPTE_MMU_PRESENT_MASK | Spte.PT_PAGE_SIZE_MASK)).toBe(Spte.SPTE_MMU_PRESENT_MASK);
    const retired0 = vm.pool.retiredCount();
    const flush0 = vm.getStats().remote_tlb_flush;
    expect(kvmTdpPageFault(vcpu, kBase + 3, true)).toBe(RetPf.RET_PF_FIXED);
    expect(leafAt(vm, kBase, PgLevel.PG_LEVEL_2M) & Spte.PT_PAGE_SIZE_MASK).toBe(Spte.PT_PAGE_SIZE_MASK);
    expect(vm.getStats()).toMatchObject({ pages_4k: 0, pages_2m: 1, remote_tlb_flush: flush0 + 1 });
    expect(vm.pool.retiredCount()).toBe(retired0 + 1);
    expect(host.audit().violations).toEqual([]);
  });
});
