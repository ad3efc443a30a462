// clear_dirty_pt_masked() takes a 64-page mask in runs of consecutive set bits. On a slot whose
// base_gfn is not 32-aligned a run crosses the end of a 4K page table: the pages past it are
// re-armed in the next table, never past the end of the first (CLEAR and legacy GET alike).
import { describe, expect, it } from 'vitest';
import { KVM_MEM_LOG_DIRTY_PAGES } from '../src/index.js';
import { KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE } from '../src/kvm/dirty/strategy.js';
import { Spte } from '../src/kvm/mmu/spte.js';
import { leafAt, oneSlotVm, setBits, span } from './fixtures/mmu.js';

// base_gfn = 2M-aligned + 500: slot words [500, 564), [564, 628), ... so the first word's low
// half, gfns 500..531, crosses the table boundary at 512.
const kBase = (1 << 18) + 500;
const kPages = 128;

for (const how of ['clear', 'legacy-get'] as const) {
  describe(`a run of dirty pages across a page table's end (${how})`, () => {
    it('re-arms every page in its own table', () => {
      const { host, vm, vcpu, region } = oneSlotVm({ tracking: 'wrprot' }, kBase, kPages);
      if (how === 'clear') vm.enableCap('KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2', KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE);
      expect(vcpu.run(span(kBase, kBase + kPages), 1 << 20)).toBe(kPages);
      vm.setUserMemoryRegion2({ ...region, flags: KVM_MEM_LOG_DIRTY_PAGES });
      if (how === 'legacy-get') expect(setBits(vm.getDirtyLog(1))).toEqual([]);
      const all = Array.from({ length: kPages }, (_, i) => i);
      for (let round = 0; round < 2; round++) {
        expect(vcpu.run(span(kBase, kBase + kPages), 1 << 20)).toBe(kPages);
        for (const p of all) expect(leafAt(vm, kBase + p) & Spte.PT_WRITABLE_MASK).toBe(Spte.PT_WRITABLE_MASK);
        const bm = vm.getDirtyLog(1);
        expect(setBits(bm)).toEqual(all);
        if (how === 'clear') expect(vm.clearDirtyLog({ slot: 1, firstPage: 0, numPages: kPages, bitmap: bm })).toBe(kPages);
        for (const p of all) expect(leafAt(vm, kBase + p) & (Spte.PT_WRITABLE_MASK | Spte.SPTE_MMU_WRITABLE), `page ${p}`).toBe(Spte.SPTE_MMU_WRITABLE);
      }
      expect(host.audit().violations).toEqual([]);
    });
  });
}
