// __kvm_set_memory_region() checks `access_ok(userspace_addr, memory_size)` before anything
// else about the slot: on x86-64 with 4-level paging the range must end at or below
// USER_PTR_MAX = TASK_SIZE_MAX = 2^47 - 4096, else EINVAL (a delete, memory_size 0, included).
// A slot whose hva range no VMA covers is otherwise legal (KVM_RUN fails later, with EFAULT).
import { describe, expect, it } from 'vitest';
import { Host } from '../src/index.js';
import { TASK_SIZE_MAX } from '../src/kvm/memslot.js';
import { errnoOf } from './fixtures/errno.js';

describe('memslot userspace_addr below the user address limit (access_ok)', () => {
  it('TASK_SIZE_MAX is 2^47 - 4096', () => {
    expect(TASK_SIZE_MAX).toBe(0x7ffffffff000);
  });

  it('a range ending exactly at TASK_SIZE_MAX is accepted; one page further is EINVAL', () => {
    const vm = Host.create({ memory: 64 * 2 ** 20 }).createVm();
    const r = { slot: 1, flags: 0, guestPhysAddr: 2 ** 30, memorySize: 2 ** 21, userspaceAddr: TASK_SIZE_MAX - 2 ** 21 };
    expect(errnoOf(() => vm.setUserMemoryRegion2({ ...r, userspaceAddr: r.userspaceAddr + 4096 }))).toBe('EINVAL');
    expect(vm.slots.size).toBe(0);
    expect(errnoOf(() => vm.setUserMemoryRegion2({ ...r, userspaceAddr: TASK_SIZE_MAX }))).toBe('EINVAL');
    expect(errnoOf(() => vm.setUserMemoryRegion2({ ...r, userspaceAddr: 2 ** 47 }))).toBe('EINVAL');
    expect(errnoOf(() => vm.setUserMemoryRegion2({ ...r, userspaceAddr: 2 ** 52 }))).toBe('EINVAL');
    expect(errnoOf(() => vm.setUserMemoryRegion2(r))).toBe(null);
    expect(vm.slots.size).toBe(1);
  });

  it('a delete (memory_size 0) with userspace_addr above the limit is EINVAL, and deletes nothing', () => {
    const vm = Host.create({ memory: 64 * 2 ** 20 }).createVm();
    const hva = vm.mmap({ size: 2 ** 21, backing: 'anonymous' });
    vm.setUserMemoryRegion2({ slot: 1, flags: 0, guestPhysAddr: 2 ** 30, memorySize: 2 ** 21, userspaceAddr: hva });
    expect(errnoOf(() => vm.setUserMemoryRegion2({ slot: 1, flags: 0, guestPhysAddr: 0, memorySize: 0, userspaceAddr: TASK_SIZE_MAX + 4096 }))).toBe('EINVAL');
    expect(vm.slots.size).toBe(1);
    expect(errnoOf(() => vm.setUserMemoryRegion2({ slot: 1, flags: 0, guestPhysAddr: 0, memorySize: 0, userspaceAddr: TASK_SIZE_MAX }))).toBe(null);
    expect(vm.slots.size).toBe(0);
  });
});
