// PML and the TLB: a load fills the vCPU's TLB from a writable 4K leaf whose D bit the enable
// cleared; a later store to that page must not be satisfied by that entry — the CPU walks to set
// D (EPT A/D), and that D 0->1 transition is what PML logs. Were the store to hit the TLB, the
// page would be written and never logged: a lost dirty page.
import { describe, expect, it } from 'vitest';
import { KVM_MEM_LOG_DIRTY_PAGES } from '../src/index.js';
import { Spte } from '../src/kvm/mmu/spte.js';
import { kOp } from '../src/metrics/ops.js';
import { leafAt, ops, setBits, span, oneSlotVm } from './fixtures/mmu.js';

const kBase = 4096;
const kPages = 256;

function fixture() {
  const { host, vm, vcpu, region } = oneSlotVm({ tracking: 'pml' }, kBase, kPages);
  expect(vcpu.run(span(kBase, kBase + kPages), 1 << 20)).toBe(kPages);
  vm.setUserMemoryRegion2({ ...region, flags: KVM_MEM_LOG_DIRTY_PAGES });
  return { host, vm, vcpu, c: host.ctx.metrics.c };
}

describe('PML: a store after a load to the same page', () => {
  it('is logged: the TLB entry filled by the load (D clear) does not satisfy the store', () => {
    const { vm, vcpu, c } = fixture();
    const g = kBase + 17;
    expect(leafAt(vm, g) & (Spte.PT_WRITABLE_MASK | Spte.SPTE_DIRTY)).toBe(Spte.PT_WRITABLE_MASK);
    const log0 = c[kOp.pml_log]!;
    const pf0 = vcpu.getStats().pf_taken;
    // One run: the load fills the TLB, the store comes right after with no flush in between.
    expect(vcpu.run(ops([[g, false], [g, false], [g, true]]), 100)).toBe(3);
    expect(c[kOp.pml_log]! - log0).toBe(1);
    expect(vcpu.getStats().pf_taken).toBe(pf0); // PML: no write fault, the leaf was writable
    expect(leafAt(vm, g) & Spte.SPTE_DIRTY).toBe(Spte.SPTE_DIRTY);
    expect(setBits(vm.getDirtyLog(1))).toEqual([17]);
  });

  it('a load alone logs nothing; stores after a logged store hit the TLB and log nothing more', () => {
    const { vm, vcpu, c } = fixture();
    const log0 = c[kOp.pml_log]!;
    expect(vcpu.run(ops([[kBase + 3, false], [kBase + 4, true], [kBase + 4, true], [kBase + 3, false]]), 100)).toBe(4);
    expect(c[kOp.pml_log]! - log0).toBe(1);
    expect(leafAt(vm, kBase + 3) & Spte.SPTE_DIRTY).toBe(0);
    expect(setBits(vm.getDirtyLog(1))).toEqual([4]);
  });
});
