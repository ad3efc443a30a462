// The package root's API, in the order a KVM selftest would call it.
import { describe, expect, it } from 'vitest';
import { Host, KvmError } from '../src/index.js';

describe('library API', () => {
  it('create, map, run, stats, invalidate, audit', () => {
    const host = Host.create({ memory: 2 ** 30, hugepages2m: 64 });
    const vm = host.createVm();
    const hva = vm.mmap({ size: 2 ** 27, backing: 'anonymous_hugetlb_2mb' });
    vm.setUserMemoryRegion2({ slot: 1, flags: 0, guestPhysAddr: 2 ** 32, memorySize: 2 ** 27, userspaceAddr: hva });
    const vcpu = vm.createVcpu();
    const base = 2 ** 32 / 4096;
    let i = 0;
    const stream = { iteration: 1, write: true, next: () => (i < 2 ** 15 ? base + i++ : -1) };
    expect(vcpu.run(stream, 1 << 20)).toBe(2 ** 15);
    expect(vm.getStats()).toMatchObject({ pages_2m: 64, pages_4k: 0 });
    expect(vcpu.getStats().pf_fixed).toBe(64);
    vm.invalidateRange(base, base + 1);
    expect(vm.getStats().pages_2m).toBe(63);
    expect(vm.getStats().remote_tlb_flush).toBe(1);
    expect(host.audit().ok).toBe(true);
    expect(() => vm.setUserMemoryRegion2({ slot: 2, flags: 0, guestPhysAddr: 2 ** 32, memorySize: 4096, userspaceAddr: hva })).toThrow(KvmError);
    try {
      vm.setUserMemoryRegion2({ slot: 2, flags: 0, guestPhysAddr: 2 ** 32, memorySize: 4096, userspaceAddr: hva });
    } catch (e) {
      expect((e as KvmError).errno).toBe('EEXIST');
      expect((e as KvmError).code).toBe(-17);
    }
  });
});
