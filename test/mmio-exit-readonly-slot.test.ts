// A store to a KVM_MEM_READONLY slot exits to the VMM as KVM_EXIT_MMIO (the documented uAPI:
// "writes ... will be posted to userspace as KVM_EXIT_MMIO exits"): __gfn_to_hva_many() returns
// KVM_HVA_ERR_RO_BAD for a write, the pfn is KVM_PFN_ERR_RO_FAULT, kvm_handle_error_pfn() returns
// RET_PF_EMULATE without caching an MMIO SPTE ("Do not cache the mmio info caused by writing the
// readonly gfn ... otherwise read access on readonly gfn also can caused mmio page fault"), and
// the emulated write finds the gfn read-only -> KVM_EXIT_MMIO. A load of the slot maps read-only.
import { describe, expect, it } from 'vitest';
import { Host, KVM_MEM_READONLY } from '../src/index.js';
import { KvmExit } from '../src/kvm/vcpu-layout.js';
import { accesses } from './fixtures/vm-ctx.js';

const kBase = 2 ** 18;

function fixture() {
  const host = Host.create({ memory: 64 * 2 ** 20 });
  const vm = host.createVm();
  const hva = vm.mmap({ size: 2 ** 21, backing: 'anonymous' });
  vm.setUserMemoryRegion2({ slot: 1, flags: KVM_MEM_READONLY, guestPhysAddr: kBase * 4096, memorySize: 2 ** 21, userspaceAddr: hva });
  return { host, vm, vcpu: vm.createVcpu() };
}

describe('KVM_EXIT_MMIO for a store to a read-only memslot', () => {
  it('a store exits MMIO and maps nothing; a load maps the page read-only', () => {
    const { vm, vcpu } = fixture();
    expect(vcpu.run(accesses([kBase + 5], true), 10)).toBe(0);
    expect(vcpu.exitReason).toBe(KvmExit.KVM_EXIT_MMIO);
    expect(vcpu.mmio).toMatchObject({ physAddr: (kBase + 5) * 4096, len: 8, isWrite: true });
    expect(vm.getStats().pages_4k).toBe(0);
    expect(vcpu.getStats()).toMatchObject({ pf_taken: 1, pf_emulate: 1, mmio_exits: 1, pf_fixed: 0 });
    expect(vcpu.run(accesses([kBase + 6], false), 10)).toBe(2); // completes the store, then the load maps
    expect(vcpu.exitReason).toBe(0);
    expect(vm.getStats().pages_4k).toBe(1);
    expect(vcpu.getStats()).toMatchObject({ pf_taken: 2, pf_fixed: 1, mmio_exits: 1 });
  });

  it('a store after a load of the same page exits again, each time through the full fault path', () => {
    const { vcpu } = fixture();
    expect(vcpu.run(accesses([kBase + 1], false), 10)).toBe(1);
    for (let i = 1; i <= 2; i++) {
      expect(vcpu.run(accesses([kBase + 1], true), 10)).toBe(i === 1 ? 0 : 1);
      expect(vcpu.exitReason).toBe(KvmExit.KVM_EXIT_MMIO);
      // No MMIO SPTE for a read-only gfn: every store is a page fault that emulates.
      expect(vcpu.getStats()).toMatchObject({ pf_taken: 1 + i, pf_emulate: i, mmio_exits: i });
    }
    // Loads of the page still hit the read-only mapping: no exit.
    expect(vcpu.run(accesses([kBase + 1], false), 10)).toBe(2);
    expect(vcpu.exitReason).toBe(0);
    expect(vcpu.getStats().mmio_exits).toBe(2);
  });
});
