// detect_write_flooding (mmu.c): a shadow page is zapped after three emulated stores to its guest
// table *without the table being used in between*. FNAME(fetch) clears the count of every shadow
// page its walk passes (clear_sp_write_flooding_count), so a guest that rewrites a PTE and then
// uses the new mapping, three times, keeps its shadow page; three stores with no use zap it.
import { describe, expect, it } from 'vitest';
import { audit as auditAll, config, createMemstressVms } from './fixtures/dist.js';
import type { Host, Vm } from './fixtures/dist.js';
import { gptHi, gptLo, GPT_P, GPT_RW, GPT_US } from '../dist/src/kvm/mmu/shadow/gpte.js';
import { GuestWalk, guestWalk } from '../dist/src/kvm/mmu/shadow/paging_tmpl.js';

function audit(host: Host, vms: Vm[]) {
  vms[0]!.ctx.hostThread.drain();
  return auditAll(host, vms);
}

/** A shadow VM whose one vCPU has touched every data page through the guest's 4K PTEs. */
function populated() {
  const c = config({ vcpus: 1, bytesPerVcpu: 2 * 2 ** 20, backing: 'anonymous', workers: 1, mmu: 'shadow', guestPt: '4k' });
  const s = createMemstressVms(c);
  const vm = s.vms[0]!;
  const v = vm.vcpu(0);
  const base = s.layout.gpa / 4096;
  let i = 0;
  expect(v.run({ write: true, iteration: 1, pte: null, next: () => (i < 512 ? base + i++ : -1) }, 1 << 20)).toBe(512);
  const w = new GuestWalk();
  expect(guestWalk(w, vm.guestMem, v.cr3Gfn, base, false)).toBe(0);
  return { s, vm, v, base, ptGfn: w.tableGfn[0]!, idx: w.index[0]! };
}

/** One access (a store with `pte` to a page table, or a plain load). */
function one(gva: number, pte: { idx: number; lo: number; hi: number } | null) {
  let sent = false;
  return { write: pte !== null, iteration: -1, pte, next: () => (sent ? -1 : ((sent = true), gva)) };
}

describe('shadow MMU write flooding (detect_write_flooding)', () => {
  it('three stores to a guest table with no use in between zap its shadow page', () => {
    const { s, vm, v, base, ptGfn, idx } = populated();
    const zapped = vm.getStats().mmu_shadow_zapped;
    const pte = { idx, lo: gptLo(base + 1, GPT_P | GPT_RW | GPT_US), hi: gptHi(base + 1) };
    for (let k = 0; k < 3; k++) expect(v.run(one(ptGfn, pte), 10)).toBe(1);
    const st = vm.getStats();
    expect(st.mmu_pte_write).toBe(3);
    expect(st.mmu_flooded).toBe(1);
    expect(st.mmu_shadow_zapped).toBe(zapped + 1);
    // The zapped table's 512 leaves went with it (the store's own read-only leaf stays).
    expect(st.pages_4k).toBe(1);
    expect(audit(s.host, s.vms).violations).toEqual([]);
  });

  it('a table that is used between its stores (a fault walks through its shadow page) is not flooded', () => {
    const { s, vm, v, base, ptGfn, idx } = populated();
    for (let k = 1; k <= 3; k++) {
      // Remap gva `base` to base + k, then use it: the fault walks the shadow page of ptGfn.
      const pte = { idx, lo: gptLo(base + k, GPT_P | GPT_RW | GPT_US), hi: gptHi(base + k) };
      expect(v.run(one(ptGfn, pte), 10)).toBe(1);
      const taken = v.getStats().pf_taken;
      expect(v.run(one(base, null), 10)).toBe(1);
      expect(v.getStats().pf_taken).toBe(taken + 1);
      expect(v.fault.gfn).toBe(base + k);
    }
    const st = vm.getStats();
    expect(st.mmu_pte_write).toBe(3);
    expect(st.mmu_flooded).toBe(0);
    expect(st.mmu_shadow_zapped).toBe(0);
    expect(audit(s.host, s.vms).violations).toEqual([]);
  });
});
