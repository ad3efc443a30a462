// KVM accepts the dirty ring together with KVM_DIRTY_LOG_INITIALLY_SET (neither
// KVM_ENABLE_CAP path checks the other), and that combination silently loses writes: under
// INITIALLY_SET, kvm_mmu_slot_apply_flags() returns before write-protecting (or, with PML,
// D-clearing) anything, because the bitmap is assumed to start all ones, but with the ring there
// is no bitmap. A page mapped writable before logging was enabled is then written without a
// fault and without a D-bit transition, so no ring entry is ever pushed for it.
//
// The nothing-lost oracle (written since enable minus reported) must therefore report exactly
// the pages that were mapped before enable, no more and no fewer, and the same sequence through
// the bitmap (no ring) loses nothing.
import { describe, expect, it } from 'vitest';
import { Host, KVM_MEM_LOG_DIRTY_PAGES, type BackingSource, type Vm } from '../src/index.js';
import type { DirtyTracking } from '../src/kvm/dirty/strategy.js';

const kBase = 0x100000; // gfn of the slot (4 GiB)
const kPages = 1024; // 4 MiB: two 2M pages

function writes(gfns: readonly number[]) {
  let i = 0;
  return { iteration: 1, write: true, next: () => (i < gfns.length ? gfns[i++]! : -1) };
}
const span = (lo: number, hi: number) => Array.from({ length: hi - lo }, (_, i) => lo + i);

/**
 * Map `populated` (slot offsets) writable, enable logging with MANUAL_PROTECT | INITIALLY_SET,
 * write every page, collect what the ring (or the bitmap) reports; returns the lost offsets.
 */
function run(tracking: DirtyTracking, backing: BackingSource, populated: readonly number[], ring: boolean) {
  const host = Host.create({ memory: 64 * 2 ** 20, hugepages2m: backing === 'anonymous_hugetlb_2mb' ? 2 : 0 });
  const vm: Vm = host.createVm({ strategy: { tracking, split: 'on-fault' } });
  vm.enableCap('KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2', 3);
  if (ring) vm.enableCap('KVM_CAP_DIRTY_LOG_RING', 4096 * 16);
  const hva = vm.mmap({ size: kPages * 4096, backing });
  const region = { slot: 1, flags: 0, guestPhysAddr: kBase * 4096, memorySize: kPages * 4096, userspaceAddr: hva };
  vm.setUserMemoryRegion2(region);
  const vcpu = vm.createVcpu();
  expect(vcpu.run(writes(populated.map((o) => kBase + o)), 1 << 20)).toBe(populated.length);
  vm.setUserMemoryRegion2({ ...region, flags: KVM_MEM_LOG_DIRTY_PAGES });
  expect(vcpu.run(writes(span(kBase, kBase + kPages)), 1 << 20)).toBe(kPages);
  const reported = new Set<number>();
  if (ring) {
    const n = vm.harvestDirtyRings((slot, off) => {
      expect(slot).toBe(1);
      reported.add(off);
    });
    expect(vm.resetDirtyRings()).toBe(n);
  } else {
    const bm = vm.getDirtyLog(1);
    for (let p = 0; p < kPages; p++) if ((bm[p >>> 5]! >>> (p & 31)) & 1) reported.add(p);
  }
  expect(host.audit().violations).toEqual([]);
  // Every page was written after enable: the oracle's lost set is everything not reported.
  return span(0, kPages).filter((p) => !reported.has(p));
}

describe('dirty ring + KVM_DIRTY_LOG_INITIALLY_SET loses the writes to pages mapped before enable (as KVM does)', () => {
  const half = span(0, kPages / 2).filter((p) => p % 3 !== 1); // a sparse set inside the first 2M

  for (const tracking of ['wrprot', 'pml'] as const) {
    it(`4K pages, ${tracking}: lost = exactly the pages mapped writable before logging was enabled`, () => {
      expect(run(tracking, 'anonymous', half, true)).toEqual(half);
    });
  }

  it('2M hugetlb: the huge page mapped before enable stays writable and huge, all 512 of its pages are lost; the other 2M faults at 4K and is reported', () => {
    expect(run('wrprot', 'anonymous_hugetlb_2mb', [0], true)).toEqual(span(0, 512));
  });

  it('nothing mapped before enable: nothing lost (every first write faults and pushes an entry)', () => {
    expect(run('wrprot', 'anonymous', [], true)).toEqual([]);
    expect(run('pml', 'anonymous', [], true)).toEqual([]);
  });

  it('the same sequence through the bitmap loses nothing: INITIALLY_SET starts it all ones', () => {
    expect(run('wrprot', 'anonymous', half, false)).toEqual([]);
    expect(run('pml', 'anonymous_hugetlb_2mb', [0], false)).toEqual([]);
  });
});
