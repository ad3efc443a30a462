// The audit's violation kinds, each provoked: a minimal corruption of otherwise consistent state
// (one SPTE, one count, one frame word), then exactly that kind must be reported — so a broken
// check (one that never fires, or fires for the wrong reason) fails here. Two corruptions cannot
// be made without a second kind firing too; the table says which and why.
import { describe, expect, it } from 'vitest';
import { Host } from '../src/index.js';
import type { BackingSource } from '../src/host/mm.js';
import { FrameLayout } from '../src/host/frame-table.js';
import { Lpage, gfnToIndex } from '../src/kvm/mmu/lpage.js';
import { PgLevel, Spte } from '../src/kvm/mmu/spte.js';
import { VmLayout, pageStatWord } from '../src/kvm/vm-layout.js';
import type { Vm } from '../src/kvm/vm.js';
import { span, sptepAt } from './fixtures/mmu.js';

const kBase = 1 << 18; // 1G-aligned gfn, so tables and huge pages line up with the slot
const kPages = 1024;

function fixture(backing: BackingSource = 'anonymous') {
  const host = Host.create({ memory: 64 * 2 ** 20, hugepages2m: 4 });
  const vm = host.createVm();
  const hva = vm.mmap({ size: kPages * 4096, backing });
  vm.setUserMemoryRegion2({ slot: 1, flags: 0, guestPhysAddr: kBase * 4096, memorySize: kPages * 4096, userspaceAddr: hva });
  const vcpu = vm.createVcpu();
  // Map the first 256 pages (4K backing) or the first 2M page (huge backings).
  expect(vcpu.run(span(kBase, kBase + 256), 1 << 20)).toBe(256);
  expect(host.audit().violations).toEqual([]);
  return { host, vm, slot: vm.slots.get(1)! };
}

type Fx = ReturnType<typeof fixture>;

/** Host pfn backing gfn (through the slot's VMA). */
function hostPfn(fx: Fx, gfn: number): number {
  return fx.slot.vma!.lookup(fx.slot.vmaOffset + (gfn - fx.slot.baseGfn));
}

function leafTable(vm: Vm, gfn: number): number {
  return vm.pool.pt[sptepAt(vm, gfn, PgLevel.PG_LEVEL_2M) + 1]!;
}

interface Case {
  kind: string;
  /** Kinds that must fire (default: exactly [kind]). */
  expect?: string[];
  backing?: BackingSource;
  corrupt(fx: Fx): void;
}

const g0 = kBase + 7;

const cases: Case[] = [
  { kind: 'pt-level', corrupt: ({ vm }) => vm.pool.setInfo(leafTable(vm, g0), PgLevel.PG_LEVEL_2M, kBase) },
  { kind: 'frozen-spte', corrupt: ({ vm }) => void (vm.pool.pt[sptepAt(vm, kBase + 300, PgLevel.PG_LEVEL_4K)] = Spte.FROZEN_SPTE) },
  {
    kind: 'spte-writable',
    corrupt: ({ vm }) => void (vm.pool.pt[sptepAt(vm, g0, PgLevel.PG_LEVEL_4K)]! &= ~Spte.SPTE_MMU_WRITABLE),
  },
  {
    // A leaf (a copy of a mapped one, made huge) in an empty 2M entry past the slot's end, with
    // pages_2m kept right so only the slot check can object.
    kind: 'spte-outside-slot',
    corrupt: ({ vm }) => {
      const from = sptepAt(vm, g0, PgLevel.PG_LEVEL_4K);
      const p2m = sptepAt(vm, kBase + 2048, PgLevel.PG_LEVEL_2M);
      expect(vm.pool.pt[p2m]).toBe(0);
      vm.pool.pt[p2m + 1] = vm.pool.pt[from + 1]!;
      vm.pool.pt[p2m] = vm.pool.pt[from]! | Spte.PT_PAGE_SIZE_MASK;
      Atomics.add(vm.w, pageStatWord(PgLevel.PG_LEVEL_2M), 1);
    },
  },
  {
    kind: 'huge-mixed-attributes', backing: 'anonymous_hugetlb_2mb',
    corrupt: ({ slot }) => void (slot.lpage[0]![gfnToIndex(kBase, slot.baseGfn, PgLevel.PG_LEVEL_2M)] = Lpage.KVM_LPAGE_MIXED_FLAG),
  },
  {
    kind: 'huge-disallowed', backing: 'anonymous_hugetlb_2mb',
    corrupt: ({ slot }) => void (slot.lpage[0]![gfnToIndex(kBase, slot.baseGfn, PgLevel.PG_LEVEL_2M)] = 1),
  },
  {
    // The frame's owner field names someone else: both the SPTE walk and the VMA walk see it.
    kind: 'foreign-frame',
    corrupt: (fx) => {
      const pfn = hostPfn(fx, g0);
      const f = fx.host.phys.frames;
      const c = f.chunk(pfn);
      const s = f.slot(pfn) + FrameLayout.kFrameMeta;
      c[s] = (c[s]! & 0xffff) | (99 << FrameLayout.kMetaOwnerShift);
    },
  },
  {
    // No host reference left on a mapped frame: the VMA still maps it once, so the refcount
    // check fires as well — a refcount of 0 under a live mapping is both.
    kind: 'freed-frame', expect: ['freed-frame', 'frame-refcount'],
    corrupt: (fx) => void fx.host.phys.frames.addRef(hostPfn(fx, g0), -1),
  },
  {
    // The leaf points at the frame of the next gfn: owned, referenced, but not what the host maps.
    kind: 'stale-spte',
    corrupt: (fx) => void (fx.vm.pool.pt[sptepAt(fx.vm, g0, PgLevel.PG_LEVEL_4K) + 1] = hostPfn(fx, g0 + 1)),
  },
  {
    // The host split its THP (no PMD mapping any more) but the 2M leaf stayed.
    kind: 'huge-beyond-host-mapping', backing: 'anonymous_thp',
    corrupt: ({ vm, slot }) => {
      expect(vm.getStats().pages_2m).toBe(1);
      slot.vma!.pmd![(slot.vmaOffset + 0) >>> 9] = 0;
    },
  },
  { kind: 'stale-write', corrupt: ({ vm }) => Atomics.store(vm.w, VmLayout.kVmStaleWrites, 1) },
  { kind: 'page-stats', corrupt: ({ vm }) => void Atomics.add(vm.w, pageStatWord(PgLevel.PG_LEVEL_4K), 1) },
  {
    // A page taken from the pool and never installed, cached or retired: a leak.
    kind: 'pt-pages',
    corrupt: ({ vm }) => expect(vm.pool.allocBatch(new Int32Array(1), 0, 1)).toBe(1),
  },
  { kind: 'frame-refcount', corrupt: (fx) => void fx.host.phys.frames.addRef(hostPfn(fx, g0), 1) },
  {
    // The host forgets a page it still accounts to the VM (the SPTE was zapped first, so only
    // the VMA recount sees it).
    kind: 'owner-accounting',
    corrupt: (fx) => {
      fx.vm.invalidateRange(g0, g0 + 1, { unmap: false });
      fx.slot.vma!.map[fx.slot.vmaOffset + (g0 - fx.slot.baseGfn)] = 0;
    },
  },
  {
    // A frame allocated for an owner that is no VM: free + owned + hugetlb no longer add up.
    kind: 'host-accounting',
    corrupt: (fx) => expect(fx.host.ctx.hostThread.allocFolio(0, 77, { mode: 'preferred', node: 0 }, 0)).toBeGreaterThanOrEqual(0),
  },
];

describe('every audit violation kind fires on its corruption', () => {
  it('the table covers all 16 kinds', () => {
    expect(new Set(cases.map((c) => c.kind)).size).toBe(16);
  });
  for (const c of cases) {
    it(`${c.kind}`, () => {
      const fx = fixture(c.backing);
      c.corrupt(fx);
      const r = fx.host.audit();
      expect(r.ok).toBe(false);
      expect([...new Set(r.violations.map((v) => v.kind))].sort()).toEqual((c.expect ?? [c.kind]).sort());
    });
  }
});
