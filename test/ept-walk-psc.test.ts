// The walker's paging-structure cache (x86's PDE cache): a walk that reaches a 4K table caches
// it for the 2M region; later walks read only the leaf. Like a PDE-cache entry it may go stale
// when the table is replaced, until a TLB flush (INVEPT) drops it; here it is also dropped when
// the vCPU publishes a newer epoch, since only its old epoch kept an unlinked table from being
// freed and reused. A frozen leaf in a cached table sends the walk back to the root.
import { describe, expect, it } from 'vitest';
import { eptWalk, WalkResult, walkOut } from '../dist/src/kvm/mmu/tdp/walk.js';
import { tlbFlushAll } from '../dist/src/kvm/mmu/tlb.js';
import { Spte, PtLayout, makeSpteFlags } from '../dist/src/kvm/mmu/spte.js';
import { VcpuLayout } from '../dist/src/kvm/vcpu-layout.js';
import { Host } from '../dist/src/host/host.js';
import { Vm } from '../dist/src/kvm/vm.js';
import { Metrics } from '../dist/src/metrics/counters.js';
import { kOpCount } from '../dist/src/metrics/ops.js';

const gfn = 0x12345;
const idx = (level: number) => ((gfn >>> ((level - 1) * 9)) & 511) * PtLayout.kSpteWords;

/** Root 1 -> 2 -> 3 -> 4K table 4 (leaf pfn 1000); a second 4K table 6 (leaf pfn 2000). */
function tables(): Int32Array {
  const pt = new Int32Array(new SharedArrayBuffer(8 * PtLayout.kPtPageWords * 4));
  const set = (page: number, level: number, flags: number, pfn: number) => {
    pt[page * PtLayout.kPtPageWords + idx(level)] = flags;
    pt[page * PtLayout.kPtPageWords + idx(level) + 1] = pfn;
  };
  set(1, 4, Spte.kNonLeafFlags, 2);
  set(2, 3, Spte.kNonLeafFlags, 3);
  set(3, 2, Spte.kNonLeafFlags, 4);
  const leaf = makeSpteFlags(1, false, true);
  set(4, 1, leaf, 1000);
  set(6, 1, leaf, 2000);
  return pt;
}

function walkPfn(pt: Int32Array, w: Int32Array): number {
  expect(eptWalk(pt, 1, gfn, false, w)).toBe(WalkResult.kWalkOk);
  expect(walkOut.steps).toBe(4); // priced as the full hardware walk either way
  return walkOut.pfn;
}

describe('paging-structure cache in the EPT walk', () => {
  it('serves the cached table until a flush or a newer epoch, and leaves a frozen leaf to the root walk', () => {
    const pt = tables();
    const w = new Int32Array(new SharedArrayBuffer(VcpuLayout.kVcpuBytes));
    expect(walkPfn(pt, w)).toBe(1000);
    // The 2M entry now points at table 6 (table 4 unlinked, not yet frozen): the cache still
    // hits table 4, as a stale PDE-cache entry would before INVEPT.
    pt[3 * PtLayout.kPtPageWords + idx(2) + 1] = 6;
    expect(walkPfn(pt, w)).toBe(1000);
    tlbFlushAll(w);
    expect(walkPfn(pt, w)).toBe(2000); // refilled with table 6
    // Back to table 4, and table 6's leaf frozen (handle_removed_pt): the cached table 6 is not
    // trusted, the walk starts at the root and finds table 4.
    pt[3 * PtLayout.kPtPageWords + idx(2) + 1] = 4;
    pt[6 * PtLayout.kPtPageWords + idx(1)] = Spte.FROZEN_SPTE;
    expect(walkPfn(pt, w)).toBe(1000);
    // A generation bump (what a newer epoch does) drops it as well.
    pt[3 * PtLayout.kPtPageWords + idx(2) + 1] = 6;
    pt[6 * PtLayout.kPtPageWords + idx(1)] = makeSpteFlags(1, false, true);
    expect(walkPfn(pt, w)).toBe(1000);
    w[VcpuLayout.kVcpuPscGen]!++;
    expect(walkPfn(pt, w)).toBe(2000);
  });

  it('a vCPU entering guest mode in a newer epoch drops its cached tables', () => {
    const host = Host.create({ memory: 64 * 2 ** 20 });
    const vm = Vm.create(host, 0, { metrics: new Metrics(new Float64Array(kOpCount)), hostThread: host.thread() }, { maxVcpus: 2 });
    const vcpu = vm.createVcpu(0);
    vcpu.enterGuest();
    const g0 = vcpu.w[VcpuLayout.kVcpuPscGen]!;
    vcpu.exitGuest();
    vcpu.enterGuest(); // idle in between: a newer epoch is published
    const g1 = vcpu.w[VcpuLayout.kVcpuPscGen]!;
    expect(g1).not.toBe(g0);
    vm.epoch.advance(); // a table was retired meanwhile
    vcpu.enterGuest();
    expect(vcpu.w[VcpuLayout.kVcpuPscGen]).not.toBe(g1);
    const g2 = vcpu.w[VcpuLayout.kVcpuPscGen]!;
    vcpu.enterGuest(); // nothing moved: the cache stays
    expect(vcpu.w[VcpuLayout.kVcpuPscGen]).toBe(g2);
    vcpu.exitGuest();
  });
});
