// vmx_flush_pml_buffer() runs on every VM exit, before the vCPU is seen outside guest mode: the
// gfns the CPU logged before an EPT-violation exit are in the dirty log by the time the exit is
// handled, so a VMM that reads the log while the vCPU is out (after an exit) sees them — not only
// at the end of KVM_RUN. The access stream reads the slot's dirty bitmap (what KVM_GET_DIRTY_LOG
// copies) right after the exit, before the next access.
import { describe, expect, it } from 'vitest';
import { KVM_MEM_LOG_DIRTY_PAGES } from '../src/index.js';
import { VcpuLayout } from '../src/kvm/vcpu-layout.js';
import { kOp } from '../src/metrics/ops.js';
import { ops, setBits, span, oneSlotVm } from './fixtures/mmu.js';

const kBase = 4096;
const kPages = 512;

describe('PML buffer drained on every exit', () => {
  it('an EPT-violation exit drains what was logged before it into the dirty bitmap', () => {
    const { host, vm, vcpu, region } = oneSlotVm({ tracking: 'pml' }, kBase, kPages);
    // Map the first half only; the second half will take EPT violations.
    expect(vcpu.run(span(kBase, kBase + 256), 1 << 20)).toBe(256);
    vm.setUserMemoryRegion2({ ...region, flags: KVM_MEM_LOG_DIRTY_PAGES });
    const slot = vm.slots.get(1)!;
    const c = host.ctx.metrics.c;
    const log0 = c[kOp.pml_log]!;
    const exits0 = vcpu.getStats().exits;
    const seen: number[][] = [];
    const pmlIndex: number[] = [];
    // Stores to 3 mapped pages (logged by PML, no exit), then a store to an unmapped page (an
    // exit), then a look at the bitmap and the PML index before the next access.
    const list: [number, boolean][] = [[kBase + 1, true], [kBase + 2, true], [kBase + 3, true], [kBase + 300, true], [kBase + 4, false]];
    const src = ops(list, (i) => {
      if (i === 4) {
        seen.push(setBits(new Uint32Array(slot.dirtyBitmap.buffer, slot.dirtyBitmap.byteOffset, 16)));
        pmlIndex.push(vcpu.w[VcpuLayout.kVcpuPmlIndex]!);
      }
    });
    expect(vcpu.run(src, 100)).toBe(5);
    expect(c[kOp.pml_log]! - log0).toBe(3);
    expect(vcpu.getStats().exits - exits0).toBe(1);
    // After the exit: the three PML-logged pages and the faulted one (make_spte marks it).
    expect(seen).toEqual([[1, 2, 3, 300]]);
    expect(pmlIndex).toEqual([0]);
    expect(setBits(vm.getDirtyLog(1))).toEqual([1, 2, 3, 300]);
  });
});
