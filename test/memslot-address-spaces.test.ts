// Address spaces follow the modelled host, as kvm_arch_nr_memslot_as_ids() does on x86: with
// SMM (CONFIG_KVM_SMM, the default) address space 1 (the SMM view) exists beside 0, without it
// only address space 0. KVM_SET_USER_MEMORY_REGION2, KVM_GET_DIRTY_LOG and KVM_CLEAR_DIRTY_LOG
// refuse an as_id (slot >> 16) at or past that number with EINVAL.
import { describe, expect, it } from 'vitest';
import { Host, KVM_MEM_LOG_DIRTY_PAGES, KVM_X86_QUIRK_SLOT_ZAP_ALL } from '../src/index.js';
import { errnoOf } from './fixtures/errno.js';


function vmOn(smm?: boolean) {
  const host = Host.create({ memory: 16 * 2 ** 20, ...(smm === undefined ? {} : { smm }) });
  const vm = host.createVm();
  const hva = vm.mmap({ size: 2 ** 20, backing: 'anonymous' });
  const region = (asId: number, id: number, flags = KVM_MEM_LOG_DIRTY_PAGES) =>
    ({ slot: (asId << 16) | id, flags, guestPhysAddr: 0, memorySize: 2 ** 20, userspaceAddr: hva });
  return { vm, region };
}

describe('memslot address spaces follow SMM', () => {
  it('SMM on (default): address space 1 takes slots (the same gfns as space 0), 2 is EINVAL', () => {
    const { vm, region } = vmOn();
    expect(errnoOf(() => vm.setUserMemoryRegion2(region(0, 3)))).toBe(null);
    // Same gfn range in the other address space: no overlap.
    expect(errnoOf(() => vm.setUserMemoryRegion2(region(1, 3)))).toBe(null);
    expect(errnoOf(() => vm.setUserMemoryRegion2(region(2, 3)))).toBe('EINVAL');
    expect(errnoOf(() => vm.getDirtyLog((1 << 16) | 3))).toBe(null);
    expect(errnoOf(() => vm.getDirtyLog((2 << 16) | 3))).toBe('EINVAL');
    expect(vm.checkExtension('KVM_CAP_MULTI_ADDRESS_SPACE')).toBe(2);
  });

  it('SMM off: only address space 0; as_id 1 is EINVAL for SET_USER_MEMORY_REGION2, GET and CLEAR_DIRTY_LOG', () => {
    const { vm, region } = vmOn(false);
    expect(errnoOf(() => vm.setUserMemoryRegion2(region(0, 3)))).toBe(null);
    expect(errnoOf(() => vm.setUserMemoryRegion2(region(1, 3)))).toBe('EINVAL');
    expect(errnoOf(() => vm.getDirtyLog((1 << 16) | 3))).toBe('EINVAL');
    vm.enableCap('KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2', 1);
    const clear = (slot: number) => vm.clearDirtyLog({ slot, firstPage: 0, numPages: 64, bitmap: new Uint32Array(2) });
    expect(errnoOf(() => clear(3))).toBe(null);
    expect(errnoOf(() => clear((1 << 16) | 3))).toBe('EINVAL');
    // A missing slot in an existing address space is ENOENT, not EINVAL.
    expect(errnoOf(() => vm.getDirtyLog(4))).toBe('ENOENT');
  });
});

// The TDP MMU walks only the roots of a slot's address space (kvm_mmu_page_as_id(root) ==
// slot->as_id). No vCPU enters SMM here, so an SMM slot has no SPTEs: enabling logging on it,
// clearing its log or deleting it must leave address space 0's mappings of the same gfns alone.
// (Deleting it does so only with KVM_X86_QUIRK_SLOT_ZAP_ALL disabled: with the quirk, KVM's
// default, a delete zaps every SPTE of every address space — memslot-delete-zap-all-quirk.test.ts.)
describe('an SMM (as_id 1) slot never touches address space 0 mappings', () => {
  it('enable logging, CLEAR under INITIALLY_SET, and delete on the SMM slot keep the as 0 leaves writable and mapped', () => {
    const host = Host.create({ memory: 32 * 2 ** 20 });
    const vm = host.createVm({ strategy: { tracking: 'wrprot' } });
    vm.enableCap('KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2', 3);
    vm.enableCap('KVM_CAP_DISABLE_QUIRKS2', KVM_X86_QUIRK_SLOT_ZAP_ALL);
    const a = vm.mmap({ size: 2 ** 20, backing: 'anonymous' });
    const b = vm.mmap({ size: 2 ** 20, backing: 'anonymous' });
    vm.setUserMemoryRegion2({ slot: 0, flags: 0, guestPhysAddr: 0, memorySize: 2 ** 20, userspaceAddr: a });
    const smm = { slot: 1 << 16, flags: 0, guestPhysAddr: 0, memorySize: 2 ** 20, userspaceAddr: b };
    vm.setUserMemoryRegion2(smm);
    const vcpu = vm.createVcpu();
    const writeAll = () => {
      let g = 0;
      return vcpu.run({ iteration: 1, write: true, next: () => (g < 256 ? g++ : -1) }, 1000);
    };
    expect(writeAll()).toBe(256);
    const s0 = vcpu.getStats();
    expect(vm.getStats().pages_4k).toBe(256);
    vm.setUserMemoryRegion2({ ...smm, flags: KVM_MEM_LOG_DIRTY_PAGES });
    // INITIALLY_SET: the SMM slot's bitmap is all ones; CLEAR re-arms nothing in address space 0.
    expect(vm.clearDirtyLog({ slot: 1 << 16, firstPage: 0, numPages: 256, bitmap: vm.getDirtyLog(1 << 16) })).toBeGreaterThanOrEqual(0);
    expect(writeAll()).toBe(256);
    // No write faulted: address space 0 was neither write-protected nor zapped.
    expect(vcpu.getStats().pf_taken).toBe(s0.pf_taken);
    vm.setUserMemoryRegion2({ ...smm, flags: KVM_MEM_LOG_DIRTY_PAGES, memorySize: 0 });
    expect(vm.getStats().pages_4k).toBe(256);
    // CLEAR flushes whenever it cleared bits (kvm_clear_dirty_log_protect), even with nothing mapped.
    expect(vm.getStats().remote_tlb_flush).toBe(1);
    expect(host.audit().violations).toEqual([]);
  });
});
