// PML dirty tracking: enabling logging (no manual caps) leaves 4K leaves writable with D
// cleared; the CPU's D 0->1 transitions are logged in the vCPU's 512-entry buffer, a full buffer
// is a PML-full exit, and GET (after draining) reports exactly the pages written — with no write
// faults taken for them.
import { describe, expect, it } from 'vitest';
import { KVM_MEM_LOG_DIRTY_PAGES, type Vm } from '../src/index.js';
import { leafTableFor } from '../src/kvm/mmu/tdp/wrprot.js';
import { Spte, PtLayout } from '../src/kvm/mmu/spte.js';
import { kOp } from '../src/metrics/ops.js';
import { oneSlotVm } from './fixtures/mmu.js';

const kBase = 4096;
const kPages = 2048;

function span(start: number, end: number) {
  let g = start;
  return { iteration: 1, write: true, next: () => (g < end ? g++ : -1) };
}

/** The 4K leaf's flags word for gfn (fails the test if no 4K table maps it). */
function leafFlags(vm: Vm, gfn: number): number {
  const table = leafTableFor(vm, gfn);
  expect(table).toBeGreaterThan(0);
  return vm.pool.pt[table * PtLayout.kPtPageWords + (gfn & 511) * PtLayout.kSpteWords]!;
}

function setBits(bm: Uint32Array): number[] {
  const out: number[] = [];
  for (let i = 0; i < bm.length * 32; i++) if ((bm[i >>> 5]! >>> (i & 31)) & 1) out.push(i);
  return out;
}

/** 2048 4K pages, every one written before logging starts, then logging on (flags-only). */
function fixture() {
  const { host, vm, vcpu, region } = oneSlotVm({ tracking: 'pml' }, kBase, kPages);
  expect(vcpu.run(span(kBase, kBase + kPages), 1 << 20)).toBe(kPages);
  for (let g = kBase; g < kBase + kPages; g++) expect(leafFlags(vm, g) & Spte.SPTE_DIRTY).toBe(Spte.SPTE_DIRTY);
  vm.setUserMemoryRegion2({ ...region, flags: KVM_MEM_LOG_DIRTY_PAGES });
  return { host, vm, vcpu };
}

describe('PML dirty tracking', () => {
  it('enable leaves 4K leaves writable (and MMU-writable) with D cleared', () => {
    const { host, vm } = fixture();
    expect(vm.lastApplyFlags).toEqual({ splits: 0, tlbFlushes: 1 });
    for (let g = kBase; g < kBase + kPages; g++) {
      const f = leafFlags(vm, g);
      expect(f & (Spte.SPTE_MMU_PRESENT_MASK | Spte.PT_WRITABLE_MASK | Spte.SPTE_MMU_WRITABLE | Spte.SPTE_DIRTY)).toBe(Spte.SPTE_MMU_PRESENT_MASK | Spte.PT_WRITABLE_MASK | Spte.SPTE_MMU_WRITABLE);
    }
    expect(host.audit().ok).toBe(true);
  });

  it('writes set D and are logged without faults; a full buffer is a PML-full exit; GET reports exactly them', () => {
    const { host, vm, vcpu } = fixture();
    const s0 = vcpu.getStats();
    const h0 = vcpu.harnessStats();
    const m = host.ctx.metrics.c;
    const logged0 = m[kOp.pml_log]!;
    // 1300 pages in one run: two full buffers (1024 entries) and 276 drained when the run ends.
    const first = 100;
    const n = 1300;
    expect(vcpu.run(span(kBase + first, kBase + first + n), 1 << 20)).toBe(n);
    const s1 = vcpu.getStats();
    // PML-full exits are a harness counter (not a KVM stat).
    expect(vcpu.harnessStats().pml_full_exits - h0.pml_full_exits).toBe(Math.floor(n / 512));
    expect(s1.pf_taken).toBe(s0.pf_taken);
    expect(s1.pf_fast).toBe(s0.pf_fast);
    expect(m[kOp.pml_log]! - logged0).toBe(n);
    for (let g = kBase; g < kBase + kPages; g++) {
      const written = g >= kBase + first && g < kBase + first + n;
      expect(leafFlags(vm, g) & Spte.SPTE_DIRTY).toBe(written ? Spte.SPTE_DIRTY : 0);
    }
    const expected = Array.from({ length: n }, (_, i) => first + i);
    expect(setBits(vm.getDirtyLog(1))).toEqual(expected);
    // Legacy GET re-armed them: D cleared again, W kept.
    for (let g = kBase + first; g < kBase + first + n; g++) {
      expect(leafFlags(vm, g) & (Spte.PT_WRITABLE_MASK | Spte.SPTE_DIRTY)).toBe(Spte.PT_WRITABLE_MASK);
    }
    expect(setBits(vm.getDirtyLog(1))).toEqual([]);
    expect(host.audit().ok).toBe(true);
  });

  it('rewriting a page already dirty in this round logs nothing more; re-armed pages log again', () => {
    const { vm, vcpu } = fixture();
    const s0 = vcpu.getStats();
    const h0 = vcpu.harnessStats();
    // 600 distinct pages written twice in one run: 600 D transitions, one PML-full exit.
    let i = 0;
    const twice = { iteration: 1, write: true, next: () => (i < 1200 ? kBase + (i++ % 600) : -1) };
    expect(vcpu.run(twice, 1 << 20)).toBe(1200);
    expect(vcpu.harnessStats().pml_full_exits - h0.pml_full_exits).toBe(1);
    expect(setBits(vm.getDirtyLog(1))).toHaveLength(600);
    // After GET (D cleared), 1024 rewrites of re-armed pages fill the buffer exactly twice.
    expect(vcpu.run(span(kBase, kBase + 1024), 1 << 20)).toBe(1024);
    expect(vcpu.harnessStats().pml_full_exits - h0.pml_full_exits).toBe(3);
    expect(vcpu.getStats().pf_taken).toBe(s0.pf_taken);
    expect(setBits(vm.getDirtyLog(1))).toEqual(Array.from({ length: 1024 }, (_, k) => k));
  });
});
