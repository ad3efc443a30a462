// mmu_topup_memory_caches() runs outside any RCU read-side section. When the page-table pool is
// empty because its pages wait out an epoch — here the faulting vCPU's own — the top-up leaves
// the epoch, lets reclaim free them, and the fault goes on instead of failing with ENOMEM.
import { describe, expect, it } from 'vitest';
import { Host } from '../src/host/host.js';
import { threadCtx } from './fixtures/vm-ctx.js';
import { Vm } from '../src/kvm/vm.js';

describe('page-table top-up with the pool full of retired tables', () => {
  it('reclaims them from a quiescent point instead of failing the fault', () => {
    const host = Host.create({ memory: 64 * 2 ** 20 });
    const vm = Vm.create(host, 0, threadCtx(host));
    const hva = vm.mmap({ size: 4 * 2 ** 20, backing: 'anonymous' });
    vm.setUserMemoryRegion2({ slot: 0, flags: 0, guestPhysAddr: 2 ** 32, memorySize: 4 * 2 ** 20, userspaceAddr: hva });
    const vcpu = vm.createVcpu(0);
    const base = 2 ** 32 / 4096;
    let step = 0;
    const src = {
      iteration: 1, write: true,
      next: () => {
        if (step++ > 0) return -1;
        // Inside KVM_RUN, in the vCPU's epoch: every free table is taken and retired now, so
        // none can be reclaimed while this vCPU stays in the epoch it entered with.
        const pages = new Int32Array(vm.pool.capacity);
        const n = vm.pool.allocBatch(pages, 0, pages.length);
        for (let i = 0; i < n; i++) vm.pool.retire(pages[i]!);
        expect(vm.pool.freeCount()).toBe(0);
        return base;
      },
    };
    expect(vcpu.run(src, 10)).toBe(1);
    expect(vm.getStats().pages_4k).toBe(1);
    expect(vm.pool.retiredCount()).toBeLessThan(vm.pool.capacity / 2);
  });
});
