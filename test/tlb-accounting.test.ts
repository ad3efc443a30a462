// TLB counters: an access is a hit, or a miss and its walk. The access retried after a fault
// that filled the TLB is priced as that miss and walk inside the fault; it must not also count
// as a hit, or tlb_hit would report one phantom hit per fault.
import { describe, expect, it } from 'vitest';
import { Host } from '../src/index.js';
import { kOp } from '../src/metrics/ops.js';

const kBase = 4096;
const kPages = 512;

function fixture() {
  const host = Host.create({ memory: 64 * 2 ** 20 });
  const vm = host.createVm();
  const hva = vm.mmap({ size: kPages * 4096, backing: 'anonymous' });
  vm.setUserMemoryRegion2({ slot: 1, flags: 0, guestPhysAddr: kBase * 4096, memorySize: kPages * 4096, userspaceAddr: hva });
  return { vm, vcpu: vm.createVcpu(), c: host.ctx.metrics.c };
}

function pass(write: boolean) {
  let g = kBase;
  return { iteration: 1, write, next: () => (g < kBase + kPages ? g++ : -1) };
}

describe('TLB hit/miss accounting around faults', () => {
  it('demand paging: every access misses twice (violation, retry) and never hits', () => {
    const { vm, vcpu, c } = fixture();
    expect(vcpu.run(pass(true), 1 << 20)).toBe(kPages);
    expect(vcpu.getStats().pf_fixed).toBe(kPages);
    expect(c[kOp.tlb_hit]).toBe(0);
    expect(c[kOp.tlb_miss]).toBe(2 * kPages);
    expect(c[kOp.guest_access]).toBe(kPages);
    expect(vm.getStats().pages_4k).toBe(kPages);
  });

  it('a second pass over mapped pages hits only where the TLB still holds the entry', () => {
    const { vcpu, c } = fixture();
    vcpu.run(pass(true), 1 << 20);
    const hit0 = c[kOp.tlb_hit]!;
    const miss0 = c[kOp.tlb_miss]!;
    expect(vcpu.run(pass(true), 1 << 20)).toBe(kPages);
    // Every access of the second pass is either a hit or a miss that walks to a present leaf.
    expect(c[kOp.tlb_hit]! - hit0 + (c[kOp.tlb_miss]! - miss0)).toBe(kPages);
    expect(vcpu.getStats().pf_taken).toBe(kPages);
  });
});
