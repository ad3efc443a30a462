// mmu_invalidate_retry_gfn(): while an invalidation of [start, end) is in progress, a fault on a
// gfn in that range (start included, end excluded) backs off with RET_PF_RETRY and installs
// nothing; a fault just outside proceeds. After kvm_mmu_invalidate_end() the range is free again.
// The invalidation is opened and closed by hand around the faults (single thread, no luck).
import { describe, expect, it } from 'vitest';
import { Host } from '../src/index.js';
import { RetPf, kvmTdpPageFault } from '../src/kvm/mmu/tdp/fault.js';
import { kvmMmuInvalidateBegin, kvmMmuInvalidateEnd, kvmMmuInvalidateRangeAdd } from '../src/kvm/invalidate.js';
import { VmLayout } from '../src/kvm/vm-layout.js';
import { span } from './fixtures/mmu.js';

const kBase = 1 << 18;

describe('faults during an in-progress invalidation', () => {
  it('[start, end) retries; start - 1 and end proceed; after end() all proceed', () => {
    const host = Host.create({ memory: 64 * 2 ** 20 });
    const vm = host.createVm();
    const hva = vm.mmap({ size: 2 ** 20, backing: 'anonymous' });
    vm.setUserMemoryRegion2({ slot: 1, flags: 0, guestPhysAddr: kBase * 4096, memorySize: 2 ** 20, userspaceAddr: hva });
    const vcpu = vm.createVcpu();
    expect(vcpu.run(span(kBase + 100, kBase + 101), 10)).toBe(1);
    const start = kBase + 10;
    const end = kBase + 20;
    vm.withMmuWriteLock(() => {
      kvmMmuInvalidateBegin(vm);
      kvmMmuInvalidateRangeAdd(vm, start, end);
    });
    const pages0 = vm.getStats().pages_4k;
    expect(kvmTdpPageFault(vcpu, start, true)).toBe(RetPf.RET_PF_RETRY);
    expect(kvmTdpPageFault(vcpu, end - 1, false)).toBe(RetPf.RET_PF_RETRY);
    expect(vm.getStats().pages_4k).toBe(pages0);
    expect(kvmTdpPageFault(vcpu, start - 1, true)).toBe(RetPf.RET_PF_FIXED);
    expect(kvmTdpPageFault(vcpu, end, true)).toBe(RetPf.RET_PF_FIXED);
    const seq = vm.w[VmLayout.kVmInvSeq]!;
    vm.withMmuWriteLock(() => kvmMmuInvalidateEnd(vm));
    expect(vm.w[VmLayout.kVmInvSeq]).toBe(seq + 1);
    expect(kvmTdpPageFault(vcpu, start, true)).toBe(RetPf.RET_PF_FIXED);
    expect(kvmTdpPageFault(vcpu, end - 1, true)).toBe(RetPf.RET_PF_FIXED);
    expect(vm.getStats().pages_4k).toBe(pages0 + 4);
    expect(host.audit().violations).toEqual([]);
  });

  it('an invalidation flushes the TLB: the next store to the zapped page faults on the new page', () => {
    const host = Host.create({ memory: 64 * 2 ** 20, stamps: true });
    const vm = host.createVm();
    const hva = vm.mmap({ size: 2 ** 20, backing: 'anonymous' });
    vm.setUserMemoryRegion2({ slot: 1, flags: 0, guestPhysAddr: kBase * 4096, memorySize: 2 ** 20, userspaceAddr: hva });
    const vcpu = vm.createVcpu();
    expect(vcpu.run(span(kBase, kBase + 2), 10)).toBe(2);
    const flush0 = vm.getStats().remote_tlb_flush;
    vm.invalidateRange(kBase, kBase + 1);
    expect(vm.getStats().remote_tlb_flush).toBe(flush0 + 1);
    const pf0 = vcpu.getStats().pf_taken;
    expect(vcpu.run(span(kBase, kBase + 2), 10)).toBe(2);
    expect(vcpu.getStats().pf_taken - pf0).toBe(1);
    expect(host.audit().violations).toEqual([]);
  });
});
