// Splitting a 1G leaf (tdp_mmu_split_huge_page at level 3): the 512 children are 2M leaves
// (make_small_spte keeps the huge bit above 4K) mapping pfn + i * 512, so every 4K page under
// them is still the page the host maps. Here a write to a write-protected 1G page in a logging
// slot (split on fault) splits 1G -> 2M -> 4K down to the faulting gfn only.
import { describe, expect, it } from 'vitest';
import { Host, KVM_MEM_LOG_DIRTY_PAGES } from '../src/index.js';
import { PgLevel, Spte } from '../src/kvm/mmu/spte.js';
import { leafAt, ops, setBits, span } from './fixtures/mmu.js';

const kBase = 1 << 18; // 1G-aligned

describe('1G split', () => {
  it('on fault: 511 2M leaves + 512 4K leaves, all mapping the host pages', () => {
    const host = Host.create({ memory: 2 ** 30 + 16 * 2 ** 20, hugepages1g: 1 });
    const vm = host.createVm({ strategy: { tracking: 'wrprot', split: 'on-fault' } });
    const hva = vm.mmap({ size: 2 ** 30, backing: 'anonymous_hugetlb_1gb' });
    const region = { slot: 1, flags: 0, guestPhysAddr: kBase * 4096, memorySize: 2 ** 30, userspaceAddr: hva };
    vm.setUserMemoryRegion2(region);
    const vcpu = vm.createVcpu();
    expect(vcpu.run(span(kBase, kBase + 1), 10)).toBe(1);
    expect(vm.getStats()).toMatchObject({ pages_1g: 1, pages_2m: 0, pages_4k: 0 });
    vm.setUserMemoryRegion2({ ...region, flags: KVM_MEM_LOG_DIRTY_PAGES });
    const g = kBase + 3 * 512 + 7;
    expect(vcpu.run(span(g, g + 1), 10)).toBe(1);
    expect(vm.getStats()).toMatchObject({ pages_1g: 0, pages_2m: 511, pages_4k: 512 });
    const slot = vm.slots.get(1)!;
    const host0 = slot.vma!.lookup(slot.vmaOffset);
    // A 2M child far from the fault: huge, mapping pfn + 200 * 512, write-protected (as its parent).
    const c = leafAt(vm, kBase + 200 * 512, PgLevel.PG_LEVEL_2M);
    expect(c & (Spte.SPTE_MMU_PRESENT_MASK | Spte.PT_PAGE_SIZE_MASK | Spte.PT_WRITABLE_MASK)).toBe(Spte.SPTE_MMU_PRESENT_MASK | Spte.PT_PAGE_SIZE_MASK);
    expect(vm.pool.pt[sptepAtPfn(vm, kBase + 200 * 512)]).toBe(host0 + 200 * 512);
    // Loads under the children translate to the host's pages; the store was logged.
    expect(vcpu.run(ops([[kBase + 200 * 512 + 9, false], [kBase + 511 * 512 + 511, false]]), 10)).toBe(2);
    expect(setBits(vm.getDirtyLog(1))).toEqual([3 * 512 + 7]);
    expect(host.audit().violations).toEqual([]);
  });
});

function sptepAtPfn(vm: Parameters<typeof leafAt>[0], gfn: number): number {
  const pt = vm.pool.pt;
  let page = vm.root;
  for (let l = PgLevel.PT64_ROOT_4LEVEL; l > PgLevel.PG_LEVEL_2M; l--) page = pt[page * 1024 + ((gfn >>> ((l - 1) * 9)) & 511) * 2 + 1]!;
  return page * 1024 + ((gfn >>> 9) & 511) * 2 + 1;
}
