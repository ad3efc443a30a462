// KVM_RESET_DIRTY_RINGS coalesces consecutive entries of one slot into one 64-page mask
// (kvm_dirty_ring_reset: an entry joins the mask only if its offset is within [cur, cur + 63]).
// An entry exactly 64 pages on starts a new mask: it must be re-armed itself, not folded onto
// bit 0 of the upper half (offset + 32) — else its next write is never reported.
import { describe, expect, it } from 'vitest';
import { Host, KVM_MEM_LOG_DIRTY_PAGES } from '../src/index.js';
import { Spte } from '../src/kvm/mmu/spte.js';
import { leafAt, ops } from './fixtures/mmu.js';

const kBase = 1 << 18;

describe('dirty ring reset: coalescing stops at 64 pages', () => {
  it('entries at offsets 0 and 64 (and 5 and 69) re-arm exactly those pages', () => {
    const host = Host.create({ memory: 64 * 2 ** 20 });
    const vm = host.createVm({ strategy: { tracking: 'wrprot' } });
    vm.enableCap('KVM_CAP_DIRTY_LOG_RING', 4096 * 16);
    const hva = vm.mmap({ size: 2 ** 20, backing: 'anonymous' });
    vm.setUserMemoryRegion2({ slot: 1, flags: KVM_MEM_LOG_DIRTY_PAGES, guestPhysAddr: kBase * 4096, memorySize: 2 ** 20, userspaceAddr: hva });
    const vcpu = vm.createVcpu();
    const offs = [0, 64, 5, 69, 32, 37];
    const stores = () => ops(offs.map((o) => [kBase + o, true] as const));
    expect(vcpu.run(stores(), 100)).toBe(offs.length);
    const seen: number[] = [];
    expect(vm.harvestDirtyRings((_s, o) => seen.push(o))).toBe(offs.length);
    expect(seen).toEqual(offs);
    expect(vm.resetDirtyRings()).toBe(offs.length);
    for (const o of offs) expect(leafAt(vm, kBase + o) & Spte.PT_WRITABLE_MASK).toBe(0);
    // Every page was re-armed: rewriting each pushes one entry again.
    expect(vcpu.run(stores(), 100)).toBe(offs.length);
    const again: number[] = [];
    vm.harvestDirtyRings((_s, o) => again.push(o));
    expect(again).toEqual(offs);
    expect(vm.resetDirtyRings()).toBe(offs.length);
    expect(host.audit().violations).toEqual([]);
  });
});
