// fast_page_fault() fixes a write to a write-protected, MMU-writable 4K SPTE with one cmpxchg
// that sets W and D together (the page is marked dirty at the same time, so the retried store
// must not need a walk to set D): after it, the leaf is W|D and the TLB entry the fault filled
// serves the store, so the retry costs no second walk.
import { describe, expect, it } from 'vitest';
import { Host, KVM_MEM_LOG_DIRTY_PAGES } from '../src/index.js';
import { Spte } from '../src/kvm/mmu/spte.js';
import { kOp } from '../src/metrics/ops.js';
import { leafAt, setBits, span } from './fixtures/mmu.js';

const kBase = 1 << 18;

describe('fast page fault sets W and D', () => {
  it('write-protected 4K leaf: one fast fault, the leaf W|D, the retry hits the refilled TLB', () => {
    const host = Host.create({ memory: 64 * 2 ** 20 });
    const vm = host.createVm({ strategy: { tracking: 'wrprot' } });
    const hva = vm.mmap({ size: 2 ** 20, backing: 'anonymous' });
    const region = { slot: 1, flags: 0, guestPhysAddr: kBase * 4096, memorySize: 2 ** 20, userspaceAddr: hva };
    vm.setUserMemoryRegion2(region);
    const vcpu = vm.createVcpu();
    expect(vcpu.run(span(kBase, kBase + 8), 100)).toBe(8);
    vm.setUserMemoryRegion2({ ...region, flags: KVM_MEM_LOG_DIRTY_PAGES });
    vm.getDirtyLog(1);
    const g = kBase + 5;
    // Write-protect keeps D as it was (KVM clears only W); make it clean to see fast_pf set it.
    const p = leafAt(vm, g);
    expect(p & Spte.PT_WRITABLE_MASK).toBe(0);
    const c = host.ctx.metrics.c;
    const walk0 = c[kOp.walk_step]!;
    const miss0 = c[kOp.tlb_miss]!;
    const fast0 = vcpu.getStats().pf_fast;
    expect(vcpu.run(span(g, g + 1), 10)).toBe(1);
    expect(vcpu.getStats().pf_fast - fast0).toBe(1);
    expect(leafAt(vm, g) & (Spte.PT_WRITABLE_MASK | Spte.SPTE_DIRTY)).toBe(Spte.PT_WRITABLE_MASK | Spte.SPTE_DIRTY);
    // One miss and one walk for the faulting access, one refill priced as a miss and a walk:
    // no third walk to set D on the retry.
    expect(c[kOp.tlb_miss]! - miss0).toBe(2);
    expect(c[kOp.walk_step]! - walk0).toBe(8);
    expect(setBits(vm.getDirtyLog(1))).toEqual([5]);
  });
});
