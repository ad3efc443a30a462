// CLEAR_DIRTY_LOG (and legacy GET, ring reset) update SPTEs under mmu_lock held for write with a
// plain store unless the SPTE has volatile bits (tdp_mmu_clear_spte_bits(),
// kvm_tdp_mmu_spte_need_atomic_update()). A vCPU sets bits without mmu_lock — the fast page fault
// W|D|A on an MMU-writable SPTE without W, the EPT walker A (any access) and D (a store through W)
// — so exactly those SPTEs must get the atomic AND, else what the vCPU set between CLEAR's read
// and its update is lost.
//
// 1. The rule against the model's vCPU writers: for every combination of the flag bits, the
//    atomic path is chosen iff a vCPU could change the word (walk.ts, fast-pf.ts).
// 2. An injected interleaving: a vCPU's fast page fault makes a page writable in the window
//    between CLEAR's read of its SPTE and the update (PML: CLEAR clears D on the 4K children of a
//    write-protected 2M page, which are MMU-writable without W). The W the vCPU set survives and
//    the write is reported by the next GET; a plain store would drop the W.
import { afterEach, describe, expect, it } from 'vitest';
import { Host, KVM_MEM_LOG_DIRTY_PAGES } from '../src/index.js';
import { KVM_DIRTY_LOG_INITIALLY_SET, KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE } from '../src/kvm/dirty/strategy.js';
import { PgLevel, Spte, kvmTdpMmuSpteNeedAtomicUpdate, spteHasVolatileBits } from '../src/kvm/mmu/spte.js';
import { wrprotTestHooks } from '../src/kvm/mmu/tdp/wrprot.js';
import { leafAt, ops, setBits, span } from './fixtures/mmu.js';

const kBits = [Spte.PT_WRITABLE_MASK, Spte.SPTE_MMU_WRITABLE, Spte.SPTE_ACCESSED, Spte.SPTE_DIRTY] as const;
const kLeafBase = Spte.SPTE_MMU_PRESENT_MASK | Spte.PT_PRESENT_R | Spte.PT_EXEC | Spte.SPTE_HOST_WRITABLE;

/** What a vCPU of this model can write into a present leaf holding `f`, without mmu_lock. */
function vcpuWrites(f: number): number[] {
  const out: number[] = [];
  out.push(f | Spte.SPTE_ACCESSED); // EPT walker, a load (walkLeaf)
  if (f & Spte.PT_WRITABLE_MASK) out.push(f | Spte.SPTE_ACCESSED | Spte.SPTE_DIRTY); // walker, a store
  if (!(f & Spte.PT_WRITABLE_MASK) && f & Spte.SPTE_MMU_WRITABLE) {
    out.push(f | Spte.PT_WRITABLE_MASK | Spte.SPTE_DIRTY | Spte.SPTE_ACCESSED); // fast_page_fault()
  }
  return out.filter((want) => want !== f);
}

describe('kvm_tdp_mmu_spte_need_atomic_update()', () => {
  it('is true exactly for present leaves a vCPU can change', () => {
    for (let combo = 0; combo < 1 << kBits.length; combo++) {
      let f = kLeafBase;
      kBits.forEach((b, i) => { if (combo & (1 << i)) f |= b; });
      const racy = vcpuWrites(f).length > 0;
      expect(spteHasVolatileBits(f), `flags 0x${f.toString(16)}`).toBe(racy);
      expect(kvmTdpMmuSpteNeedAtomicUpdate(f, PgLevel.PG_LEVEL_4K), `4K flags 0x${f.toString(16)}`).toBe(racy);
      expect(kvmTdpMmuSpteNeedAtomicUpdate(f | Spte.PT_PAGE_SIZE_MASK, PgLevel.PG_LEVEL_2M)).toBe(racy);
      // Not a leaf (a table at 2M) or not present: no vCPU writes it, a plain store is fine.
      expect(kvmTdpMmuSpteNeedAtomicUpdate(f, PgLevel.PG_LEVEL_2M)).toBe(false);
      expect(kvmTdpMmuSpteNeedAtomicUpdate(f & ~Spte.SPTE_MMU_PRESENT_MASK, PgLevel.PG_LEVEL_4K)).toBe(false);
    }
  });
});

const kBase = 1 << 18; // 1 GiB: 2M-aligned
const kPages = 512;

describe('CLEAR_DIRTY_LOG keeps what a vCPU sets between its read and its update', () => {
  afterEach(() => {
    wrprotTestHooks.beforeClearSpteBits = null;
  });

  it('a fast page fault on an MMU-writable SPTE in the window (PML, split children of a wrprotected 2M page)', () => {
    const host = Host.create({ memory: 64 * 2 ** 20, hugepages2m: 4 });
    const vm = host.createVm({ strategy: { tracking: 'pml', huge: 'wrprot-huge', split: 'on-fault' } });
    vm.enableCap('KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2', KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE | KVM_DIRTY_LOG_INITIALLY_SET);
    const hva = vm.mmap({ size: kPages * 4096, backing: 'anonymous_hugetlb_2mb' });
    const region = { slot: 1, flags: 0, guestPhysAddr: kBase * 4096, memorySize: kPages * 4096, userspaceAddr: hva };
    vm.setUserMemoryRegion2(region);
    const vcpu = vm.createVcpu();
    expect(vcpu.run(span(kBase, kBase + kPages), 1 << 20)).toBe(kPages);
    expect(vm.getStats().pages_2m).toBe(1);
    // Enable (wrprot-huge): the 2M leaf loses W and keeps D and MMU-writable. A store to page 0
    // splits it on the fault path: every other child is MMU-writable without W, dirty, accessed.
    vm.setUserMemoryRegion2({ ...region, flags: KVM_MEM_LOG_DIRTY_PAGES });
    expect(vcpu.run(ops([[kBase, true]]), 10)).toBe(1);
    expect(vm.getStats().pages_4k).toBe(kPages);
    const target = kBase + 7;
    const before = leafAt(vm, target);
    expect(before & (Spte.PT_WRITABLE_MASK | Spte.SPTE_MMU_WRITABLE | Spte.SPTE_DIRTY)).toBe(Spte.SPTE_MMU_WRITABLE | Spte.SPTE_DIRTY);
    expect(spteHasVolatileBits(before)).toBe(true);

    let fired = 0;
    const fast0 = vcpu.getStats().pf_fast;
    wrprotTestHooks.beforeClearSpteBits = (gfn) => {
      if (gfn !== target || fired++ > 0) return;
      // The vCPU stores to the page now: its walk finds no W, fast_page_fault() sets W|D|A with
      // a cmpxchg (no mmu_lock) and marks the page dirty; CLEAR has read the SPTE already.
      expect(vcpu.run(ops([[target, true]]), 10)).toBe(1);
    };
    const all = new Uint32Array(kPages / 32).fill(0xffffffff);
    vm.clearDirtyLog({ slot: 1, firstPage: 0, numPages: kPages, bitmap: all });
    wrprotTestHooks.beforeClearSpteBits = null;
    expect(fired).toBe(1);
    expect(vcpu.getStats().pf_fast - fast0).toBe(1);
    const after = leafAt(vm, target);
    // CLEAR (PML) clears D only; the W the vCPU set must survive.
    expect(after & Spte.PT_WRITABLE_MASK).toBe(Spte.PT_WRITABLE_MASK);
    expect(after & Spte.SPTE_DIRTY).toBe(0);
    // The store is reported by the next GET.
    expect(setBits(vm.getDirtyLog(1))).toEqual([7]);
    expect(host.audit().violations).toEqual([]);
  });

  it('takes the plain store only on SPTEs without volatile bits (wrprot: W|D|A leaves)', () => {
    const host = Host.create({ memory: 64 * 2 ** 20 });
    const vm = host.createVm({ strategy: { tracking: 'wrprot' } });
    vm.enableCap('KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2', KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE);
    const hva = vm.mmap({ size: 64 * 4096, backing: 'anonymous' });
    const region = { slot: 1, flags: 0, guestPhysAddr: kBase * 4096, memorySize: 64 * 4096, userspaceAddr: hva };
    vm.setUserMemoryRegion2(region);
    const vcpu = vm.createVcpu();
    expect(vcpu.run(span(kBase, kBase + 64), 1 << 20)).toBe(64);
    vm.setUserMemoryRegion2({ ...region, flags: KVM_MEM_LOG_DIRTY_PAGES });
    expect(vcpu.run(span(kBase, kBase + 64), 1 << 20)).toBe(64);
    const seen: number[] = [];
    wrprotTestHooks.beforeClearSpteBits = (gfn) => seen.push(leafAt(vm, gfn));
    const bm = vm.getDirtyLog(1);
    expect(vm.clearDirtyLog({ slot: 1, firstPage: 0, numPages: 64, bitmap: bm })).toBe(64);
    expect(seen.length).toBe(64);
    for (const f of seen) expect(spteHasVolatileBits(f), `0x${f.toString(16)}`).toBe(false);
    for (let p = 0; p < 64; p++) expect(leafAt(vm, kBase + p) & (Spte.PT_WRITABLE_MASK | Spte.SPTE_MMU_WRITABLE)).toBe(Spte.SPTE_MMU_WRITABLE);
  });
});
