// Address spaces follow the modelled host, as kvm_arch_nr_memslot_as_ids() does on x86: with
// SMM (CONFIG_KVM_SMM, the default) address space 1 (the SMM view) exists beside 0, without it
// only address space 0. KVM_SET_USER_MEMORY_REGION2, KVM_GET_DIRTY_LOG and KVM_CLEAR_DIRTY_LOG
// refuse an as_id (slot >> 16) at or past that number with EINVAL.
import { describe, expect, it } from 'vitest';
import { Host, KVM_MEM_LOG_DIRTY_PAGES, KvmError, type Errno } from '../src/index.js';

function errnoOf(fn: () => unknown): Errno | null {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(KvmError);
    return (e as KvmError).errno;
  }
  return null;
}

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
