// Eager page splitting when dirty logging is enabled (no manual caps), and huge page recovery when
// it is disabled: in place (6.13+, batched flushes) or by zapping collapsible tables (one flush
// per table, huge mappings come back on the next fault) — the page stats
// dirty_log_page_splitting_test.c asserts, plus the counters and TLB flushes.
import { describe, expect, it } from 'vitest';
import { Host, KVM_MEM_LOG_DIRTY_PAGES, type VmOptions } from '../src/index.js';
import { kOp } from '../src/metrics/ops.js';

const kBase = 2 ** 20; // gfn of 4 GiB
const N = 8; // 2M pages in the slot

function span(start: number, end: number, step = 1) {
  let g = start;
  return { iteration: 1, write: true, next: () => { if (g >= end) return -1; const r = g; g += step; return r; } };
}

function fixture(strategy: VmOptions['strategy']) {
  const host = Host.create({ memory: 96 * 2 ** 20, hugepages2m: 2 * N });
  const vm = host.createVm({ strategy });
  const hva = vm.mmap({ size: N * 2 ** 21, backing: 'anonymous_hugetlb_2mb' });
  const region = { slot: 1, flags: 0, guestPhysAddr: kBase * 4096, memorySize: N * 2 ** 21, userspaceAddr: hva };
  vm.setUserMemoryRegion2(region);
  const vcpu = vm.createVcpu();
  expect(vcpu.run(span(kBase, kBase + N * 512), 1 << 20)).toBe(N * 512);
  expect(vm.getStats()).toMatchObject({ pages_2m: N, pages_4k: 0, pages_1g: 0 });
  const c = host.ctx.metrics.c;
  const enable = () => vm.setUserMemoryRegion2({ ...region, flags: KVM_MEM_LOG_DIRTY_PAGES });
  const disable = () => vm.setUserMemoryRegion2({ ...region, flags: 0 });
  return { host, vm, vcpu, c, enable, disable };
}

describe('eager split at enable, huge page recovery at disable', () => {
  it('enable splits N 2M pages into N*512 4K pages with N split ops and one remote TLB flush', () => {
    const { host, vm, c, enable } = fixture({});
    const splits0 = c[kOp.split_huge]!;
    const flush0 = vm.getStats().remote_tlb_flush;
    enable();
    expect(c[kOp.split_huge]! - splits0).toBe(N);
    expect(vm.lastApplyFlags).toEqual({ splits: N, tlbFlushes: 1 });
    expect(vm.getStats()).toMatchObject({ pages_2m: 0, pages_4k: N * 512, pages_1g: 0 });
    expect(vm.getStats().remote_tlb_flush - flush0).toBe(1);
    expect(host.audit().ok).toBe(true);
  });

  it("disable with 'in-place' rebuilds the huge mappings with at most ceil(N/1024)+1 flushes", () => {
    const { host, vm, vcpu, c, enable, disable } = fixture({ recover: 'in-place' });
    enable();
    // Dirty some pages while logging (4K writes, logged by PML).
    expect(vcpu.run(span(kBase + 3, kBase + N * 512, 97), 1 << 20)).toBeGreaterThan(0);
    expect(host.audit().ok).toBe(true);
    const rec0 = c[kOp.recover_huge]!;
    const flush0 = vm.getStats().remote_tlb_flush;
    disable();
    const flushes = vm.getStats().remote_tlb_flush - flush0;
    expect(flushes).toBeLessThanOrEqual(Math.ceil(N / 1024) + 1);
    expect(flushes).toBe(1); // 8 recoveries, below one yield batch: a single flush at the end
    expect(vm.lastApplyFlags.tlbFlushes).toBe(1);
    expect(c[kOp.recover_huge]! - rec0).toBe(N);
    expect(vm.getStats()).toMatchObject({ pages_2m: N, pages_4k: 0 });
    expect(host.audit().ok).toBe(true);
    // Mapped huge and writable already: touching everything takes no fault.
    const s = vcpu.getStats();
    expect(vcpu.run(span(kBase, kBase + N * 512), 1 << 20)).toBe(N * 512);
    expect(vcpu.getStats().pf_taken).toBe(s.pf_taken);
    expect(vm.getStats()).toMatchObject({ pages_2m: N, pages_4k: 0 });
  });

  it("'in-place' over more than one yield batch (1100 tables): flushes stay within ceil(N/1024)+1", () => {
    const n = 1100;
    const host = Host.create({ memory: n * 2 ** 21 + 64 * 2 ** 20, hugepages2m: n });
    const vm = host.createVm({ strategy: { recover: 'in-place' } });
    const hva = vm.mmap({ size: n * 2 ** 21, backing: 'anonymous_hugetlb_2mb' });
    const region = { slot: 1, flags: 0, guestPhysAddr: kBase * 4096, memorySize: n * 2 ** 21, userspaceAddr: hva };
    vm.setUserMemoryRegion2(region);
    const vcpu = vm.createVcpu();
    expect(vcpu.run(span(kBase, kBase + n * 512, 512), 1 << 20)).toBe(n);
    const splits0 = host.ctx.metrics.c[kOp.split_huge]!;
    const flush0 = vm.getStats().remote_tlb_flush;
    vm.setUserMemoryRegion2({ ...region, flags: KVM_MEM_LOG_DIRTY_PAGES });
    expect(host.ctx.metrics.c[kOp.split_huge]! - splits0).toBe(n);
    expect(vm.getStats()).toMatchObject({ pages_2m: 0, pages_4k: n * 512 });
    expect(vm.getStats().remote_tlb_flush - flush0).toBe(1);
    vm.setUserMemoryRegion2({ ...region, flags: 0 });
    const flushes = vm.getStats().remote_tlb_flush - flush0 - 1;
    expect(flushes).toBeLessThanOrEqual(Math.ceil(n / 1024) + 1);
    expect(flushes).toBe(2); // one at the yield point after 1024 recoveries, one at the end
    expect(vm.getStats()).toMatchObject({ pages_2m: n, pages_4k: 0 });
    expect(host.audit().ok).toBe(true);
  });

  it("disable with 'zap-collapsible' zaps every table (one flush each); faults rebuild 2M mappings", () => {
    const { host, vm, vcpu, enable, disable } = fixture({ recover: 'zap-collapsible' });
    enable();
    expect(vm.getStats()).toMatchObject({ pages_2m: 0, pages_4k: N * 512 });
    const flush0 = vm.getStats().remote_tlb_flush;
    disable();
    expect(vm.getStats().remote_tlb_flush - flush0).toBe(N);
    expect(vm.lastApplyFlags.tlbFlushes).toBe(N);
    expect(vm.getStats()).toMatchObject({ pages_2m: 0, pages_4k: 0 });
    expect(host.audit().ok).toBe(true);
    // Nothing comes back until re-touched: re-touching half the 2M ranges maps those huge.
    const s = vcpu.getStats();
    expect(vcpu.run(span(kBase, kBase + (N / 2) * 512, 512), 100)).toBe(N / 2);
    expect(vcpu.getStats().pf_fixed - s.pf_fixed).toBe(N / 2);
    expect(vm.getStats()).toMatchObject({ pages_2m: N / 2, pages_4k: 0 });
    expect(vcpu.run(span(kBase, kBase + N * 512), 1 << 20)).toBe(N * 512);
    expect(vcpu.getStats().pf_fixed - s.pf_fixed).toBe(N);
    expect(vm.getStats()).toMatchObject({ pages_2m: N, pages_4k: 0 });
    expect(vm.getStats().remote_tlb_flush - flush0).toBe(N);
    expect(host.audit().ok).toBe(true);
  });
});
