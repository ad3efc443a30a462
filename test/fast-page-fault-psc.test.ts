// fast_page_fault() starts at the 4K table the vCPU's paging-structure cache holds for the gfn's
// 2M region, but only an entry of the current PSC generation: an older one (from before a TLB
// flush or a newer epoch) may name a table that was freed and reused, so the walk goes to the
// root. A decoy table stands in for such a reused page.
import { describe, expect, it } from 'vitest';
import { KVM_MEM_LOG_DIRTY_PAGES } from '../src/index.js';
import { leafTableFor } from '../src/kvm/mmu/tdp/wrprot.js';
import { fastPageFault } from '../src/kvm/mmu/tdp/fast-pf.js';
import { RetPf } from '../src/kvm/mmu/tdp/fault.js';
import { Spte, PtLayout } from '../src/kvm/mmu/spte.js';
import { VcpuLayout } from '../src/kvm/vcpu-layout.js';
import { oneSlotVm } from './fixtures/mmu.js';

const kBase = 4096;

describe('fast page fault and the paging-structure cache', () => {
  it('uses a cached table of the current generation and never a stale one', () => {
    const { vm, vcpu, region } = oneSlotVm({ tracking: 'wrprot' }, kBase, 1024);
    let g = kBase;
    expect(vcpu.run({ iteration: 1, write: true, next: () => (g < kBase + 8 ? g++ : -1) }, 100)).toBe(8);
    vm.setUserMemoryRegion2({ ...region, flags: KVM_MEM_LOG_DIRTY_PAGES }); // write-protects the leaves
    const slot = vm.memslots[0]!;
    const pt = vm.pool.pt;
    const real = leafTableFor(vm, kBase);
    const spte = (table: number, gfn: number) => table * PtLayout.kPtPageWords + (gfn & 511) * PtLayout.kSpteWords;
    expect(pt[spte(real, kBase)]! & Spte.PT_WRITABLE_MASK).toBe(0);
    // A decoy "table" with a write-protected, MMU-writable leaf for the same gfn.
    const decoy = new Int32Array(1);
    expect(vm.pool.allocBatch(decoy, 0, 1)).toBe(1);
    pt[spte(decoy[0]!, kBase)] = pt[spte(real, kBase)]!;
    pt[spte(decoy[0]!, kBase) + 1] = 12345;
    const w = vcpu.w;
    const e = VcpuLayout.kPscBase + ((kBase >>> 9) & (VcpuLayout.kPscEntries - 1)) * VcpuLayout.kPscWords;
    w[e + VcpuLayout.kPscTag] = (kBase >>> 9) + 1;
    w[e + VcpuLayout.kPscTable] = decoy[0]!;
    w[e + VcpuLayout.kPscGen] = w[VcpuLayout.kVcpuPscGen]! - 1; // cached before the last flush
    vcpu.fault.leafFlags = 0;
    expect(fastPageFault(vcpu, slot, kBase, true)).toBe(RetPf.RET_PF_FIXED);
    expect(pt[spte(real, kBase)]! & Spte.PT_WRITABLE_MASK).toBe(Spte.PT_WRITABLE_MASK);
    expect(pt[spte(decoy[0]!, kBase)]! & Spte.PT_WRITABLE_MASK).toBe(0);
    expect(vcpu.fault.leafPfn).toBe(pt[spte(real, kBase) + 1]);
    // An entry of the current generation is trusted (that is what makes it worth having): the
    // decoy, made current, is where the walk goes now.
    w[e + VcpuLayout.kPscGen] = w[VcpuLayout.kVcpuPscGen]!;
    expect(fastPageFault(vcpu, slot, kBase, true)).toBe(RetPf.RET_PF_FIXED);
    expect(pt[spte(decoy[0]!, kBase)]! & Spte.PT_WRITABLE_MASK).toBe(Spte.PT_WRITABLE_MASK);
    expect(vcpu.fault.leafPfn).toBe(12345);
  });
});
