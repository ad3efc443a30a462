// KVM_CLEAR_DIRTY_LOG at the slot's end, where num_pages need not be a multiple of 64
// (kvm_clear_dirty_log_protect): with num_pages % 64 == 32 the caller's bitmap has just one
// 32-bit half in its last word and that is enough; with num_pages % 64 > 32 the high half of the
// last 64-page word is cleared and re-armed too. Re-armed pages are write-protected, so the next
// store is seen (fast page fault) and reported by the next GET.
import { describe, expect, it } from 'vitest';
import { Host, KVM_MEM_LOG_DIRTY_PAGES } from '../src/index.js';
import { Spte } from '../src/kvm/mmu/spte.js';
import { leafAt, setBits, span } from './fixtures/mmu.js';

const kBase = 1 << 18;

function fixture(npages: number) {
  const host = Host.create({ memory: 64 * 2 ** 20 });
  const vm = host.createVm({ strategy: { tracking: 'wrprot' } });
  vm.enableCap('KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2', 1);
  const hva = vm.mmap({ size: 4 * 2 ** 20, backing: 'anonymous' });
  vm.setUserMemoryRegion2({ slot: 1, flags: KVM_MEM_LOG_DIRTY_PAGES, guestPhysAddr: kBase * 4096, memorySize: npages * 4096, userspaceAddr: hva });
  const vcpu = vm.createVcpu();
  expect(vcpu.run(span(kBase, kBase + npages), 1 << 20)).toBe(npages);
  expect(setBits(vm.getDirtyLog(1))).toHaveLength(npages);
  return { host, vm, vcpu };
}

const range = (a: number, b: number) => Array.from({ length: b - a }, (_, i) => a + i);

describe('CLEAR_DIRTY_LOG at the slot end', () => {
  it('num_pages % 64 == 32: a one-word (32-bit) bitmap is accepted and clears exactly those pages', () => {
    const n = 64 * 15 + 32;
    const { host, vm, vcpu } = fixture(n);
    const cleared = vm.clearDirtyLog({ slot: 1, firstPage: 960, numPages: 32, bitmap: new Uint32Array([0xffffffff]) });
    expect(cleared).toBe(32);
    expect(setBits(vm.getDirtyLog(1))).toEqual(range(0, 960));
    for (const off of [960, 975, 991]) expect(leafAt(vm, kBase + off) & Spte.PT_WRITABLE_MASK).toBe(0);
    expect(leafAt(vm, kBase + 959) & Spte.PT_WRITABLE_MASK).toBe(Spte.PT_WRITABLE_MASK);
    const fast0 = vcpu.getStats().pf_fast;
    expect(vcpu.run(span(kBase + 990, kBase + 992), 10)).toBe(2);
    expect(vcpu.getStats().pf_fast - fast0).toBe(2);
    expect(setBits(vm.getDirtyLog(1))).toEqual([...range(0, 960), 990, 991]);
    expect(host.audit().violations).toEqual([]);
  });

  it('num_pages % 64 == 40: the high half of the last word is cleared and re-armed', () => {
    const n = 1000;
    const { vm, vcpu } = fixture(n);
    const cleared = vm.clearDirtyLog({ slot: 1, firstPage: 960, numPages: 40, bitmap: new Uint32Array([0, 0xff]) });
    expect(cleared).toBe(8);
    expect(setBits(vm.getDirtyLog(1))).toEqual(range(0, 992));
    for (const off of [992, 999]) expect(leafAt(vm, kBase + off) & Spte.PT_WRITABLE_MASK).toBe(0);
    expect(vcpu.run(span(kBase + 999, kBase + 1000), 10)).toBe(1);
    expect(setBits(vm.getDirtyLog(1))).toEqual([...range(0, 992), 999]);
  });
});
