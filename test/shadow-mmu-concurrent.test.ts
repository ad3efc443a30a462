// The shadow MMU under concurrent faults from two workers: every fault takes mmu_lock for write,
// shadow pages for the guest's own tables are found or created once (mmu_page_hash), and the
// audit's recount holds — every rmap entry is a present leaf of its gfn and every leaf is in its
// rmap, no guest page table is mapped writable, page stats equal the recount. Then a guest store
// to its own page table traps: it is emulated (pf_emulate, mmu_pte_write), the shadow SPTE it
// invalidates is dropped, and the gva maps the new gfn afterwards.
import { describe, expect, it } from 'vitest';
import { Runner, audit as auditAll, config, createMemstressVms, memstressStream, trackWorkerThreads, expectBothWorkersRan, kOp } from './fixtures/dist.js';
import type { Host, Vm } from './fixtures/dist.js';

// The host thread's frame caches are published before a recount (the vCPU ran on this thread).
function audit(host: Host, vms: Vm[]) {
  vms[0]!.ctx.hostThread.drain();
  return auditAll(host, vms);
}
import { gptHi, gptLo, GPT_P, GPT_RW, GPT_US } from '../dist/src/kvm/mmu/shadow/gpte.js';
import { GuestWalk, guestWalk } from '../dist/src/kvm/mmu/shadow/paging_tmpl.js';

async function race(backing: 'anonymous' | 'anonymous_thp', guestPt: '4k' | '2m', overlap: boolean) {
  const bytes = 16 * 2 ** 20;
  const c = config({ vcpus: 4, bytesPerVcpu: bytes, overlap, backing, workers: 2, mmu: 'shadow', guestPt });
  const s = createMemstressVms(c);
  const runner = new Runner(s.host, s.vms, { workers: 2, cost: s.cost, sliceAccesses: 256 });
  try {
    const threads = trackWorkerThreads(runner);
    const p = await runner.phase('race', (ref) => ({ ...memstressStream(c, s.layout, ref, 0, 'permute', 100, 1), seed: 100 + ref.vcpu }));
    const vm = s.vms[0]!;
    return { s, vm, p, threads, a: audit(s.host, s.vms), stats: vm.getStats(), vcpus: vm.vcpuStats(), pages: (overlap ? bytes : 4 * bytes) / 4096 };
  } finally {
    await runner.close();
  }
}

describe('shadow MMU: concurrent faults from two workers', () => {
  for (const [backing, guestPt, overlap] of [['anonymous', '4k', false], ['anonymous', '4k', true], ['anonymous_thp', '2m', true], ['anonymous_thp', '4k', false]] as const) {
    it(`${backing}, guest ${guestPt} leaves, ${overlap ? 'overlapping' : 'own'} regions: audit clean, every page mapped once`, async () => {
      const r = await race(backing, guestPt, overlap);
      expectBothWorkersRan(r.threads);
      expect(r.a.violations).toEqual([]);
      const mapped = r.stats.pages_4k + 512 * r.stats.pages_2m;
      // Slot 0 (code + page tables) is not touched by the guest's data stream.
      expect(mapped).toBe(r.pages);
      if (backing === 'anonymous' || guestPt === '4k') expect(r.stats.pages_2m).toBe(0);
      else expect(r.stats.pages_2m).toBeGreaterThan(0);
      const fixed = r.vcpus.reduce((n, v) => n + v.pf_fixed, 0);
      if (!overlap) expect(fixed).toBe(r.stats.pages_4k + r.stats.pages_2m);
      expect(r.vcpus.every((v) => v.pf_fast === 0)).toBe(true);
      // Every fault took mmu_lock for write; the shadow pages were created once each.
      expect(r.p.counters[kOp.lock_read]).toBe(0);
      expect(r.stats.mmu_cache_miss).toBeGreaterThan(0);
      expect(r.stats.max_mmu_rmap_size).toBe(1);
    });
  }
});

describe('shadow MMU: a guest store to its own page table', () => {
  it('traps, is emulated, drops the shadow SPTE it invalidates, and the gva maps the new gfn', () => {
    const c = config({ vcpus: 1, bytesPerVcpu: 4 * 2 ** 20, backing: 'anonymous', workers: 1, mmu: 'shadow', guestPt: '4k' });
    const s = createMemstressVms(c);
    const vm = s.vms[0]!;
    const v = vm.vcpu(0);
    const base = s.layout.gpa / 4096;
    const pages = s.layout.guestPages;
    // Touch every page: each maps through the guest's 4K PTEs.
    let i = 0;
    const touch = { write: true, iteration: 1, pte: null, next: () => (i < pages ? base + i++ : -1) };
    expect(v.run(touch, 1 << 20)).toBe(pages);
    expect(audit(s.host, s.vms).violations).toEqual([]);
    // The leaf PTE of gva `base` lives in a guest page table (slot 0): find it with KVM's walk.
    const w = new GuestWalk();
    expect(guestWalk(w, vm.guestMem, v.cr3Gfn, base, false)).toBe(0);
    const ptGfn = w.tableGfn[0]!;
    const idx = w.index[0]!;
    const before = { stats: vm.getStats(), emulate: v.getStats().pf_emulate, pages4k: vm.getStats().pages_4k };
    // The guest rewrites that PTE: gva `base` now maps gfn base + 1 (a store to a shadowed table).
    const newGfn = base + 1;
    let sent = false;
    const store = {
      write: true, iteration: -1, pte: { idx, lo: gptLo(newGfn, GPT_P | GPT_RW | GPT_US), hi: gptHi(newGfn) },
      next: () => (sent ? -1 : ((sent = true), ptGfn)),
    };
    expect(v.run(store, 10)).toBe(1);
    const after = vm.getStats();
    expect(v.getStats().pf_emulate).toBe(before.emulate + 1);
    expect(after.mmu_pte_write).toBe(before.stats.mmu_pte_write + 1);
    // The shadow SPTE for gva `base` went with the guest's PTE, and the table's own page is now
    // mapped (read-only: it is shadowed) for the store's gva: one leaf out, one in.
    expect(after.pages_4k).toBe(before.pages4k);
    const taken = v.getStats().pf_taken;
    expect(audit(s.host, s.vms).violations).toEqual([]);
    // The next access to gva `base` faults, walks the new PTE and maps gfn base + 1's frame.
    let again = false;
    const reread = { write: true, iteration: 2, pte: null, next: () => (again ? -1 : ((again = true), base)) };
    expect(v.run(reread, 10)).toBe(1);
    expect(v.getStats().pf_taken).toBe(taken + 1);
    expect(v.fault.gfn).toBe(newGfn);
    const slot = vm.slots.get(1)!;
    expect(v.fault.leafPfn).toBe(slot.vma!.lookup(slot.vmaOffset + (newGfn - slot.baseGfn)));
    expect(audit(s.host, s.vms).violations).toEqual([]);
    // Three more stores to the table without using it: write flooding zaps the shadow page.
    for (let k = 0; k < 3; k++) {
      sent = false;
      expect(v.run(store, 10)).toBe(1);
    }
    expect(vm.getStats().mmu_flooded).toBeGreaterThan(0);
    expect(vm.getStats().mmu_shadow_zapped).toBeGreaterThan(0);
    expect(audit(s.host, s.vms).violations).toEqual([]);
    s.ctx.hostThread.drain();
  });
});
