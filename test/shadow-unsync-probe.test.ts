// mmu_try_to_unsync_pages() (mmu.c): before a writable 4K SPTE is installed, KVM asks whether a
// shadow page write-tracks the gfn (kvm_gfn_is_write_tracked(): refused, no walk) and otherwise
// walks the gfn's whole mmu_page_hash bucket (for_each_gfn_valid_sp_with_gfn). The model keeps
// the count and prices the walk by the bucket's length: checked here against the chain itself.
import { describe, expect, it } from 'vitest';
import { audit, config, createMemstressVms, kOp } from './fixtures/dist.js';

describe('mmu_try_to_unsync_pages(): the bucket walk of a writable install', () => {
  it('a store to an untracked gfn prices every page of its bucket, and creates no shadow page', () => {
    const c = config({ vcpus: 1, bytesPerVcpu: 16 * 2 ** 20, backing: 'anonymous', workers: 1, mmu: 'shadow', guestPt: '4k' });
    const s = createMemstressVms(c);
    const vm = s.vms[0]!;
    const v = vm.vcpu(0);
    const base = s.layout.gpa / 4096;
    const n = (16 * 2 ** 20) / 4096;
    // The first page of every 2M region: every guest table over the test memory is shadowed.
    const firsts = Array.from({ length: n / 512 }, (_, k) => base + k * 512);
    let i = 0;
    expect(v.run({ write: true, iteration: 1, pte: null, next: () => (i < firsts.length ? firsts[i++]! : -1) }, 1 << 20)).toBe(firsts.length);
    const chain = (g: number): number => {
      let k = 0;
      for (let p = vm.sp.bucketHead(g); p !== 0; p = vm.sp.hashNext(p)) k++;
      return k;
    };
    // Data pages not touched yet whose bucket holds shadow pages (the hash is fixed: deterministic).
    const targets: number[] = [];
    for (let g = base; g < base + n && targets.length < 4; g++) if ((g - base) % 512 !== 0 && chain(g) > 0) targets.push(g);
    expect(targets.length).toBeGreaterThan(0);
    const m = vm.ctx.metrics.c;
    for (const g of targets) {
      const want = chain(g);
      const probes = m[kOp.mmu_hash_probe]!;
      const created = vm.getStats().mmu_cache_miss;
      let sent = false;
      expect(v.run({ write: true, iteration: 2, pte: null, next: () => (sent ? -1 : ((sent = true), g)) }, 10)).toBe(1);
      expect(vm.getStats().mmu_cache_miss).toBe(created);
      expect(m[kOp.mmu_hash_probe]! - probes, `gfn 0x${g.toString(16)}`).toBe(want);
    }
    vm.ctx.hostThread.drain();
    expect(audit(s.host, s.vms).violations).toEqual([]);
  });
});
