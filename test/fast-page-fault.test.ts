// fast_page_fault() with write-protect dirty tracking: a write to a write-protected, MMU-writable
// 4K SPTE is fixed locklessly (pf_fast, no mmu_lock) and marks the page dirty; a read fault never
// takes the fast path; a huge SPTE in a logging slot is left to the slow path, which splits it.
import { describe, expect, it } from 'vitest';
import { Host, KVM_MEM_LOG_DIRTY_PAGES, type Vm } from '../src/index.js';
import { leafTableFor } from '../src/kvm/mmu/tdp/wrprot.js';
import { Spte, PtLayout } from '../src/kvm/mmu/spte.js';
import { kOp } from '../src/metrics/ops.js';
import { oneSlotVm } from './fixtures/mmu.js';

const kBase = 4096;

function accesses(gfns: readonly number[], write = true) {
  let i = 0;
  return { iteration: 1, write, next: () => (i < gfns.length ? gfns[i++]! : -1) };
}

function setBits(bm: Uint32Array): number[] {
  const out: number[] = [];
  for (let i = 0; i < bm.length * 32; i++) if ((bm[i >>> 5]! >>> (i & 31)) & 1) out.push(i);
  return out;
}

function leafFlags(vm: Vm, gfn: number): number {
  const table = leafTableFor(vm, gfn);
  expect(table).toBeGreaterThan(0);
  return vm.pool.pt[table * PtLayout.kPtPageWords + (gfn & 511) * PtLayout.kSpteWords]!;
}

/** 1024 4K pages; the first 512 written before logging, then logging on with wrprot tracking. */
function fixture() {
  const { host, vm, vcpu, region } = oneSlotVm({ tracking: 'wrprot' }, kBase, 1024);
  let g = kBase;
  expect(vcpu.run({ iteration: 1, write: true, next: () => (g < kBase + 512 ? g++ : -1) }, 1 << 20)).toBe(512);
  vm.setUserMemoryRegion2({ ...region, flags: KVM_MEM_LOG_DIRTY_PAGES });
  return { host, vm, vcpu, c: host.ctx.metrics.c };
}

describe('fast page fault', () => {
  it('a write to a write-protected, MMU-writable 4K SPTE is fixed without mmu_lock and logged', () => {
    const { host, vm, vcpu, c } = fixture();
    const gfn = kBase + 77;
    const f0 = leafFlags(vm, gfn);
    expect(f0 & (Spte.PT_WRITABLE_MASK | Spte.SPTE_MMU_WRITABLE)).toBe(Spte.SPTE_MMU_WRITABLE);
    const s0 = vcpu.getStats();
    const lockRead0 = c[kOp.lock_read]!;
    const lockWrite0 = c[kOp.lock_write]!;
    expect(vcpu.run(accesses([gfn]), 10)).toBe(1);
    const s1 = vcpu.getStats();
    expect(s1.pf_taken - s0.pf_taken).toBe(1);
    expect(s1.pf_fast - s0.pf_fast).toBe(1);
    expect(s1.pf_fixed - s0.pf_fixed).toBe(1);
    expect(c[kOp.lock_read]!).toBe(lockRead0);
    expect(c[kOp.lock_write]!).toBe(lockWrite0);
    expect(leafFlags(vm, gfn) & (Spte.PT_WRITABLE_MASK | Spte.SPTE_DIRTY | Spte.SPTE_MMU_WRITABLE)).toBe(Spte.PT_WRITABLE_MASK | Spte.SPTE_DIRTY | Spte.SPTE_MMU_WRITABLE);
    // A second write goes straight through the now-writable SPTE.
    expect(vcpu.run(accesses([gfn]), 10)).toBe(1);
    expect(vcpu.getStats().pf_taken).toBe(s1.pf_taken);
    // The page (only it) is dirty in the bitmap. This legacy GET re-protects it, so the next
    // write is a fast page fault again.
    expect(setBits(vm.getDirtyLog(1))).toEqual([77]);
    expect(vcpu.run(accesses([gfn]), 10)).toBe(1);
    expect(vcpu.getStats().pf_fast - s1.pf_fast).toBe(1);
    expect(c[kOp.lock_read]!).toBe(lockRead0);
    expect(host.audit().ok).toBe(true);
  });

  it('a read fault does not use the fast path', () => {
    const { vm, vcpu, c } = fixture();
    const s0 = vcpu.getStats();
    const lockRead0 = c[kOp.lock_read]!;
    // A read of a write-protected page is allowed: no fault at all.
    expect(vcpu.run(accesses([kBase + 5], false), 10)).toBe(1);
    expect(vcpu.getStats().pf_taken).toBe(s0.pf_taken);
    // A read of a page never mapped faults, and takes the slow path under mmu_lock.
    expect(vcpu.run(accesses([kBase + 600, kBase + 601], false), 10)).toBe(2);
    const s1 = vcpu.getStats();
    expect(s1.pf_taken - s0.pf_taken).toBe(2);
    expect(s1.pf_fixed - s0.pf_fixed).toBe(2);
    expect(s1.pf_fast).toBe(s0.pf_fast);
    expect(c[kOp.lock_read]! - lockRead0).toBe(2);
    expect(vm.getStats().pages_4k).toBe(514);
  });

  it('a huge SPTE in a logging slot is not fixed by the fast path: the slow path splits it', () => {
    const host = Host.create({ memory: 64 * 2 ** 20, hugepages2m: 4 });
    const vm = host.createVm({ strategy: { tracking: 'wrprot', split: 'on-fault' } });
    vm.enableCap('KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2', 3); // MANUAL_PROTECT | INITIALLY_SET
    const hva = vm.mmap({ size: 2 * 2 ** 21, backing: 'anonymous_hugetlb_2mb' });
    const region = { slot: 1, flags: 0, guestPhysAddr: 2 ** 32, memorySize: 2 * 2 ** 21, userspaceAddr: hva };
    vm.setUserMemoryRegion2(region);
    const base = 2 ** 20;
    const vcpu = vm.createVcpu();
    expect(vcpu.run(accesses([base, base + 512]), 10)).toBe(2);
    expect(vm.getStats()).toMatchObject({ pages_2m: 2, pages_4k: 0 });
    // INITIALLY_SET: enabling touches nothing, the huge pages stay writable.
    vm.setUserMemoryRegion2({ ...region, flags: KVM_MEM_LOG_DIRTY_PAGES });
    expect(vm.lastApplyFlags).toEqual({ splits: 0, tlbFlushes: 0 });
    expect(vm.getStats()).toMatchObject({ pages_2m: 2, pages_4k: 0 });
    // CLEAR of the first 64 pages write-protects the first huge page (split on-fault: no split).
    const ones = new Uint32Array(2).fill(0xffffffff);
    expect(vm.clearDirtyLog({ slot: 1, firstPage: 0, numPages: 64, bitmap: ones })).toBe(64);
    expect(vm.getStats()).toMatchObject({ pages_2m: 2, pages_4k: 0 });
    expect(leafTableFor(vm, base + 10)).toBe(-1); // still a huge leaf
    const c = host.ctx.metrics.c;
    const s0 = vcpu.getStats();
    const splits0 = c[kOp.split_huge]!;
    const lockRead0 = c[kOp.lock_read]!;
    expect(vcpu.run(accesses([base + 10]), 10)).toBe(1);
    const s1 = vcpu.getStats();
    expect(s1.pf_taken - s0.pf_taken).toBe(1);
    expect(s1.pf_fast).toBe(s0.pf_fast);
    expect(s1.pf_fixed - s0.pf_fixed).toBe(1);
    expect(c[kOp.lock_read]! - lockRead0).toBe(1);
    expect(c[kOp.split_huge]! - splits0).toBe(1);
    expect(vm.getStats()).toMatchObject({ pages_2m: 1, pages_4k: 512 });
    expect(leafFlags(vm, base + 10) & Spte.PT_WRITABLE_MASK).toBe(Spte.PT_WRITABLE_MASK);
    // Its neighbours are 4K now and still write-protected (MMU-writable): the next write to one
    // is a fast page fault.
    expect(leafFlags(vm, base + 11) & (Spte.PT_WRITABLE_MASK | Spte.SPTE_MMU_WRITABLE)).toBe(Spte.SPTE_MMU_WRITABLE);
    expect(vcpu.run(accesses([base + 11]), 10)).toBe(1);
    expect(vcpu.getStats().pf_fast - s1.pf_fast).toBe(1);
    expect(c[kOp.lock_read]! - lockRead0).toBe(1);
    // The second huge page was never cleared: still writable, no fault.
    expect(vcpu.run(accesses([base + 600]), 10)).toBe(1);
    expect(vcpu.getStats().pf_taken - s1.pf_taken).toBe(1);
    expect(vm.getStats()).toMatchObject({ pages_2m: 1, pages_4k: 512 });
    expect(host.audit().ok).toBe(true);
  });
});
