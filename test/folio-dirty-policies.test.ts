// When the host folio behind a guest page is marked dirty (folio_mark_dirty), under the two
// policies KVM has had:
//   on-create (6.13+): when a writable SPTE is created by a fault (make_spte), read faults
//     included (the SPTE is writable when the host mapping is); the lockless fast path only
//     restores W on an SPTE whose folio was marked at creation, and zapping marks nothing;
//   on-zap (before): when a dirty SPTE goes away or loses W or D (zap, write-protect, D clear),
//     and never for a clean one.
// The test clears a folio's dirty flag by hand (as writeback would) to see each mark on its own.
import { describe, expect, it } from 'vitest';
import { Host, KVM_MEM_LOG_DIRTY_PAGES } from '../src/index.js';
import { FrameLayout } from '../src/host/frame-table.js';
import type { DirtyStrategy } from '../src/kvm/dirty/strategy.js';
import { Spte } from '../src/kvm/mmu/spte.js';
import { kOp } from '../src/metrics/ops.js';
import { leafAt, ops, span } from './fixtures/mmu.js';

const kBase = 1 << 18;
const kPages = 512;

function fixture(strategy: Partial<DirtyStrategy>) {
  const host = Host.create({ memory: 64 * 2 ** 20 });
  const vm = host.createVm({ strategy });
  const hva = vm.mmap({ size: kPages * 4096, backing: 'anonymous' });
  const region = { slot: 1, flags: 0, guestPhysAddr: kBase * 4096, memorySize: kPages * 4096, userspaceAddr: hva };
  vm.setUserMemoryRegion2(region);
  const vcpu = vm.createVcpu();
  const slot = vm.slots.get(1)!;
  const frames = host.phys.frames;
  const pfn = (gfn: number) => slot.vma!.lookup(slot.vmaOffset + (gfn - kBase));
  const dirty = (gfn: number) => frames.isDirty(pfn(gfn));
  /** folio_clear_dirty() by hand: writeback cleaned it. */
  const clean = (gfn: number) => {
    const p = pfn(gfn);
    const c = frames.chunk(p);
    c[frames.slot(p) + FrameLayout.kFrameMeta]! &= ~FrameLayout.kMetaDirty;
  };
  const enableLogging = () => vm.setUserMemoryRegion2({ ...region, flags: KVM_MEM_LOG_DIRTY_PAGES });
  return { host, vm, vcpu, dirty, clean, enableLogging, marks: () => host.ctx.metrics.c[kOp.folio_mark_dirty]! };
}

describe('folio-dirty policy on-create', () => {
  it('a fault creating a writable SPTE marks the folio (store or load); a zap marks nothing', () => {
    const f = fixture({ folioDirty: 'on-create', tracking: 'wrprot' });
    expect(f.vcpu.run(ops([[kBase + 1, true], [kBase + 2, false]]), 10)).toBe(2);
    expect(f.dirty(kBase + 1)).toBe(true);
    expect(f.dirty(kBase + 2)).toBe(true);
    expect(f.marks()).toBe(2);
    f.clean(kBase + 1);
    f.vm.invalidateRange(kBase + 1, kBase + 2, { unmap: false });
    expect(f.dirty(kBase + 1)).toBe(false);
    expect(f.marks()).toBe(2);
  });

  it('write-protect at enable and the fast page fault that restores W mark nothing', () => {
    const f = fixture({ folioDirty: 'on-create', tracking: 'wrprot' });
    expect(f.vcpu.run(span(kBase, kBase + 4), 10)).toBe(4);
    f.clean(kBase + 3);
    f.enableLogging();
    expect(leafAt(f.vm, kBase + 3) & Spte.PT_WRITABLE_MASK).toBe(0);
    const fast0 = f.vcpu.getStats().pf_fast;
    expect(f.vcpu.run(span(kBase + 3, kBase + 4), 10)).toBe(1);
    expect(f.vcpu.getStats().pf_fast - fast0).toBe(1);
    expect(f.dirty(kBase + 3)).toBe(false);
    expect(f.marks()).toBe(4);
  });
});

describe('folio-dirty policy on-zap', () => {
  it('faults mark nothing; zapping a dirty SPTE marks its folio', () => {
    const f = fixture({ folioDirty: 'on-zap', tracking: 'wrprot' });
    expect(f.vcpu.run(span(kBase, kBase + 4), 10)).toBe(4);
    expect([0, 1, 2, 3].map((i) => f.dirty(kBase + i))).toEqual([false, false, false, false]);
    expect(f.marks()).toBe(0);
    f.vm.invalidateRange(kBase + 1, kBase + 2, { unmap: false });
    expect(f.dirty(kBase + 1)).toBe(true);
    expect(f.dirty(kBase + 2)).toBe(false);
  });

  it('write-protecting a dirty SPTE (enable, wrprot) marks it', () => {
    const f = fixture({ folioDirty: 'on-zap', tracking: 'wrprot' });
    expect(f.vcpu.run(span(kBase, kBase + 4), 10)).toBe(4);
    f.enableLogging();
    expect([0, 1, 2, 3].map((i) => f.dirty(kBase + i))).toEqual([true, true, true, true]);
  });

  it('PML: clearing D marks the folio; a zap of a clean SPTE marks nothing, of a re-dirtied one does', () => {
    const f = fixture({ folioDirty: 'on-zap', tracking: 'pml' });
    expect(f.vcpu.run(span(kBase, kBase + 4), 10)).toBe(4);
    f.enableLogging(); // D cleared on every 4K leaf: each dirty folio marked
    expect([0, 1, 2, 3].map((i) => f.dirty(kBase + i))).toEqual([true, true, true, true]);
    f.clean(kBase + 1);
    f.clean(kBase + 2);
    // The guest stores to gfn 2 again (D 0->1, logged by PML), not to gfn 1.
    expect(f.vcpu.run(span(kBase + 2, kBase + 3), 10)).toBe(1);
    expect(leafAt(f.vm, kBase + 1) & Spte.SPTE_DIRTY).toBe(0);
    f.vm.invalidateRange(kBase + 1, kBase + 3, { unmap: false });
    expect(f.dirty(kBase + 1)).toBe(false);
    expect(f.dirty(kBase + 2)).toBe(true);
  });

  it('CLEAR_DIRTY_LOG re-arming a dirty SPTE (masked write-protect) marks it', () => {
    const f = fixture({ folioDirty: 'on-zap', tracking: 'wrprot' });
    f.vm.enableCap('KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2', 1);
    f.enableLogging();
    expect(f.vcpu.run(span(kBase, kBase + 2), 10)).toBe(2); // fast faults: W + D again
    f.clean(kBase);
    f.clean(kBase + 1);
    expect(f.vm.clearDirtyLog({ slot: 1, firstPage: 0, numPages: 64, bitmap: new Uint32Array([1, 0]) })).toBe(1);
    expect(f.dirty(kBase)).toBe(true);
    expect(f.dirty(kBase + 1)).toBe(false);
  });
});
