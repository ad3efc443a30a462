// kvm_tdp_mmu_map() for a 4K goal starts in the table the violation's walk cached (walk.ts), as
// if it had just walked there, unless a remote TLB flush is pending for the vCPU: a table that
// mmu_lock's write side unlinked keeps its non-present entries unfrozen, and every such unlink
// requests a flush before the lock is dropped. A decoy table stands in for the unlinked one.
import { describe, expect, it } from 'vitest';
import { Host } from '../src/index.js';
import { leafTableFor } from '../src/kvm/mmu/tdp/wrprot.js';
import { kvmTdpPageFault, RetPf } from '../src/kvm/mmu/tdp/fault.js';
import { Spte, PtLayout } from '../src/kvm/mmu/spte.js';
import { VcpuLayout, KvmReq } from '../src/kvm/vcpu-layout.js';

const kBase = 4096;

describe('fault path and the walker\'s cached 4K table', () => {
  it('installs through the cached table, but walks from the root while a TLB flush is pending', () => {
    const host = Host.create({ memory: 64 * 2 ** 20 });
    const vm = host.createVm();
    const hva = vm.mmap({ size: 4 * 2 ** 20, backing: 'anonymous' });
    vm.setUserMemoryRegion2({ slot: 1, flags: 0, guestPhysAddr: kBase * 4096, memorySize: 4 * 2 ** 20, userspaceAddr: hva });
    const vcpu = vm.createVcpu();
    let g = kBase;
    expect(vcpu.run({ iteration: 1, write: true, next: () => (g < kBase + 1 ? g++ : -1) }, 10)).toBe(1);
    const real = leafTableFor(vm, kBase);
    const pt = vm.pool.pt;
    const spte = (table: number, gfn: number) => table * PtLayout.kPtPageWords + (gfn & 511) * PtLayout.kSpteWords;
    const decoy = new Int32Array(1);
    expect(vm.pool.allocBatch(decoy, 0, 1)).toBe(1);
    const w = vcpu.w;
    const e = VcpuLayout.kPscBase + ((kBase >>> 9) & (VcpuLayout.kPscEntries - 1)) * VcpuLayout.kPscWords;
    w[e + VcpuLayout.kPscTag] = (kBase >>> 9) + 1;
    w[e + VcpuLayout.kPscTable] = decoy[0]!;
    w[e + VcpuLayout.kPscGen] = w[VcpuLayout.kVcpuPscGen]!;
    // A flush is pending (a table was unlinked under the write lock): the root walk is used.
    Atomics.or(w, VcpuLayout.kVcpuRequests, KvmReq.KVM_REQ_TLB_FLUSH);
    expect(kvmTdpPageFault(vcpu, kBase + 1, true)).toBe(RetPf.RET_PF_FIXED);
    expect(pt[spte(real, kBase + 1)]! & Spte.SPTE_MMU_PRESENT_MASK).not.toBe(0);
    expect(pt[spte(decoy[0]!, kBase + 1)]).toBe(0);
    // No flush pending: the cached table is where the install goes (what makes it worth having).
    Atomics.and(w, VcpuLayout.kVcpuRequests, ~KvmReq.KVM_REQ_TLB_FLUSH);
    expect(kvmTdpPageFault(vcpu, kBase + 2, true)).toBe(RetPf.RET_PF_FIXED);
    expect(pt[spte(decoy[0]!, kBase + 2)]! & Spte.SPTE_MMU_PRESENT_MASK).not.toBe(0);
    expect(pt[spte(real, kBase + 2)]).toBe(0);
  });
});
