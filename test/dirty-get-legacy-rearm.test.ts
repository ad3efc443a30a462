// Legacy KVM_GET_DIRTY_LOG (no manual protect) harvests each 64-page word and re-arms tracking
// for exactly the pages it reported — a page in the high 32-bit half of a word included — so a
// store after the GET is caught and reported by the next one.
import { describe, expect, it } from 'vitest';
import { Host, KVM_MEM_LOG_DIRTY_PAGES } from '../src/index.js';
import type { DirtyStrategy } from '../src/kvm/dirty/strategy.js';
import { Spte } from '../src/kvm/mmu/spte.js';
import { leafAt, ops, setBits, span } from './fixtures/mmu.js';

const kBase = 1 << 18;

for (const tracking of ['wrprot', 'pml'] as DirtyStrategy['tracking'][]) {
  describe(`legacy GET re-arms what it reported (${tracking})`, () => {
    it('pages in the high half of a 64-page word only', () => {
      const host = Host.create({ memory: 64 * 2 ** 20 });
      const vm = host.createVm({ strategy: { tracking } });
      const hva = vm.mmap({ size: 2 ** 20, backing: 'anonymous' });
      const region = { slot: 1, flags: 0, guestPhysAddr: kBase * 4096, memorySize: 2 ** 20, userspaceAddr: hva };
      vm.setUserMemoryRegion2(region);
      const vcpu = vm.createVcpu();
      expect(vcpu.run(span(kBase, kBase + 256), 1 << 20)).toBe(256);
      vm.setUserMemoryRegion2({ ...region, flags: KVM_MEM_LOG_DIRTY_PAGES });
      const pages = [40, 63, 64 + 33];
      expect(vcpu.run(ops(pages.map((p) => [kBase + p, true] as const)), 10)).toBe(3);
      expect(setBits(vm.getDirtyLog(1))).toEqual(pages);
      const armed = tracking === 'wrprot' ? Spte.PT_WRITABLE_MASK : Spte.SPTE_DIRTY;
      for (const p of pages) expect(leafAt(vm, kBase + p) & armed).toBe(0);
      expect(setBits(vm.getDirtyLog(1))).toEqual([]);
      expect(vcpu.run(ops(pages.map((p) => [kBase + p, true] as const)), 10)).toBe(3);
      expect(setBits(vm.getDirtyLog(1))).toEqual(pages);
      expect(host.audit().violations).toEqual([]);
    });
  });
}
