// KVM_MR_MOVE of a memslot (base_gfn changes, userspace_addr and size stay), after
// virt/kvm/kvm_main.c kvm_set_memslot() / kvm_prepare_memory_region() and x86.c
// kvm_arch_prepare_memory_region():
//  - the dirty bitmap is the old slot's (`new->dirty_bitmap = old->dirty_bitmap` when the slot
//    logs before and after): GET after the move reports what was dirtied before it, and under
//    KVM_DIRTY_LOG_INITIALLY_SET the moved slot is NOT set to all ones again; only a CREATE, or
//    a change that turns logging on, allocates a bitmap (all ones under INITIALLY_SET);
//  - the old range is zapped (kvm_arch_flush_shadow_memslot() on the invalidated old slot) and
//    the new range faults in again;
//  - lpage_info is allocated afresh for the new base (kvm_alloc_memslot_metadata() runs for
//    KVM_MR_MOVE), so huge mappings follow the new base's alignment.
import { describe, expect, it } from 'vitest';
import { Host, KVM_MEM_LOG_DIRTY_PAGES } from '../src/index.js';
import { KvmExit } from '../src/kvm/vcpu-layout.js';
import { accesses } from './fixtures/vm-ctx.js';

const kOld = 4096; // gfn of the slot's base before the move
const kNew = 65536; // after it
const kPages = 256;

function setBits(bm: Uint32Array): number[] {
  const out: number[] = [];
  for (let i = 0; i < bm.length * 32; i++) if ((bm[i >>> 5]! >>> (i & 31)) & 1) out.push(i);
  return out;
}

/** Slot 1 = kPages 4K pages at gfn kOld, with dirty logging from creation (and the given caps). */
function fixture(caps: number, flags = KVM_MEM_LOG_DIRTY_PAGES) {
  const host = Host.create({ memory: 64 * 2 ** 20 });
  const vm = host.createVm({ strategy: { tracking: 'wrprot' } });
  if (caps !== 0) vm.enableCap('KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2', caps);
  const hva = vm.mmap({ size: kPages * 4096, backing: 'anonymous' });
  const region = { slot: 1, flags, guestPhysAddr: kOld * 4096, memorySize: kPages * 4096, userspaceAddr: hva };
  vm.setUserMemoryRegion2(region);
  const vcpu = vm.createVcpu();
  const move = (base: number, f = region.flags) => vm.setUserMemoryRegion2({ ...region, flags: f, guestPhysAddr: base * 4096 });
  return { host, vm, vcpu, region, move };
}

const all = Array.from({ length: kPages }, (_, i) => i);

describe('KVM_MR_MOVE keeps the dirty bitmap (new->dirty_bitmap = old->dirty_bitmap)', () => {
  it('legacy GET after a move reports the pages dirtied before it, then they are harvested', () => {
    const { vm, vcpu, move } = fixture(0);
    expect(vcpu.run(accesses([kOld + 3, kOld + 5, kOld + 200]), 10)).toBe(3);
    move(kNew);
    expect(setBits(vm.getDirtyLog(1))).toEqual([3, 5, 200]);
    // Legacy GET cleared what it reported: a write at the new base dirties page 7 only.
    expect(vcpu.run(accesses([kNew + 7]), 10)).toBe(1);
    expect(setBits(vm.getDirtyLog(1))).toEqual([7]);
  });

  it('manual protect: GET after a move reports the old dirty pages until CLEAR clears them', () => {
    const { vm, vcpu, move } = fixture(1);
    expect(vcpu.run(accesses([kOld + 1, kOld + 64]), 10)).toBe(2);
    move(kNew);
    expect(setBits(vm.getDirtyLog(1))).toEqual([1, 64]);
    expect(setBits(vm.getDirtyLog(1))).toEqual([1, 64]); // GET only copies with manual protect
    const bitmap = new Uint32Array(kPages / 32).fill(0xffffffff);
    vm.clearDirtyLog({ slot: 1, firstPage: 0, numPages: kPages, bitmap });
    expect(setBits(vm.getDirtyLog(1))).toEqual([]);
  });

  it('INITIALLY_SET: a moved slot is not re-initialised to all ones', () => {
    const { vm, vcpu, move } = fixture(3);
    // Created with logging under INITIALLY_SET: all ones (kvm_prepare_memory_region(), CREATE).
    expect(setBits(vm.getDirtyLog(1))).toEqual(all);
    vm.clearDirtyLog({ slot: 1, firstPage: 0, numPages: kPages, bitmap: new Uint32Array(kPages / 32).fill(0xffffffff) });
    expect(vcpu.run(accesses([kOld + 9]), 10)).toBe(1);
    move(kNew);
    expect(setBits(vm.getDirtyLog(1))).toEqual([9]);
    // CLEAR works on the kept bitmap at the new base; a store there dirties its page again.
    const one = new Uint32Array(2);
    one[0] = 1 << 9;
    expect(vm.clearDirtyLog({ slot: 1, firstPage: 0, numPages: 64, bitmap: one })).toBe(1);
    expect(setBits(vm.getDirtyLog(1))).toEqual([]);
    expect(vcpu.run(accesses([kNew + 9]), 10)).toBe(1);
    expect(setBits(vm.getDirtyLog(1))).toEqual([9]);
  });

  it('INITIALLY_SET: a move that turns logging on allocates a fresh bitmap, all ones', () => {
    const { vm, move } = fixture(3, 0);
    move(kNew, KVM_MEM_LOG_DIRTY_PAGES);
    expect(setBits(vm.getDirtyLog(1))).toEqual(all);
  });

  it('a move that turns logging off and a later flags-only enable start from a clean bitmap', () => {
    const { vm, vcpu, move } = fixture(0);
    expect(vcpu.run(accesses([kOld + 2]), 10)).toBe(1);
    move(kNew, 0);
    vm.setUserMemoryRegion2({ slot: 1, flags: KVM_MEM_LOG_DIRTY_PAGES, guestPhysAddr: kNew * 4096, memorySize: kPages * 4096, userspaceAddr: vm.slots.get(1)!.userspaceAddr });
    expect(setBits(vm.getDirtyLog(1))).toEqual([]);
  });
});

describe('KVM_MR_MOVE zaps the old range and faults in the new one', () => {
  it('no SPTE maps the old gfns; the new gfns fault in again on the same host pages', () => {
    const { vm, vcpu, move } = fixture(0, 0);
    expect(vcpu.run(accesses([kOld, kOld + 1]), 10)).toBe(2);
    expect(vm.getStats().pages_4k).toBe(2);
    move(kNew);
    expect(vm.getStats().pages_4k).toBe(0);
    const taken = vcpu.getStats().pf_taken;
    expect(vcpu.run(accesses([kNew, kNew + 1]), 10)).toBe(2);
    expect(vcpu.getStats().pf_taken).toBe(taken + 2);
    expect(vm.getStats().pages_4k).toBe(2);
    // The old gfns are outside every memslot now: the vCPU's last-used-slot cache must not find
    // the old slot again (KVM's LRU slot belongs to the memslot set that was swapped out).
    expect(vcpu.run(accesses([kOld + 1]), 10)).toBe(0);
    expect(vcpu.exitReason).toBe(KvmExit.KVM_EXIT_MMIO);
    expect(vcpu.mmio.physAddr).toBe((kOld + 1) * 4096);
    expect(vm.getStats().pages_4k).toBe(2);
  });

  it('lpage_info follows the new base: 2M mappings, 4K after a move off 2M alignment, 2M again', () => {
    const host = Host.create({ memory: 64 * 2 ** 20, hugepages2m: 4 });
    const vm = host.createVm();
    const hva = vm.mmap({ size: 2 * 2 ** 21, backing: 'anonymous_hugetlb_2mb' });
    const region = { slot: 1, flags: 0, guestPhysAddr: 2 ** 30, memorySize: 2 * 2 ** 21, userspaceAddr: hva };
    vm.setUserMemoryRegion2(region);
    const vcpu = vm.createVcpu();
    const base = 2 ** 30 / 4096;
    expect(vcpu.run(accesses([base, base + 512]), 10)).toBe(2);
    expect(vm.getStats()).toMatchObject({ pages_2m: 2, pages_4k: 0 });
    // base_gfn - userspace_addr >> 12 is no longer 2M aligned: every 2M entry is disallowed.
    vm.setUserMemoryRegion2({ ...region, guestPhysAddr: 2 ** 30 + 4096 });
    expect(vm.getStats()).toMatchObject({ pages_2m: 0, pages_4k: 0 });
    expect(vcpu.run(accesses([base + 1, base + 513]), 10)).toBe(2);
    expect(vm.getStats()).toMatchObject({ pages_2m: 0, pages_4k: 2 });
    vm.setUserMemoryRegion2({ ...region, guestPhysAddr: 2 ** 31 });
    expect(vcpu.run(accesses([2 * base, 2 * base + 512]), 10)).toBe(2);
    expect(vm.getStats()).toMatchObject({ pages_2m: 2, pages_4k: 0 });
  });
});
