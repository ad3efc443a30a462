import { describe, expect, it } from 'vitest';
import { KvmError, type Errno } from '../src/host/errno.js';
import { Host } from '../src/host/host.js';
import { KVM_MEM_GUEST_MEMFD, KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_READONLY } from '../src/kvm/memslot.js';
import type { UserspaceMemoryRegion2, Vm } from '../src/kvm/vm.js';
import { accesses, kMiB, range, vmWithMapping } from './fixtures/vm-ctx.js';

const kErrnoCode: Partial<Record<Errno, number>> = { EINVAL: -22, EEXIST: -17 };

/**
 * A VM with slot 0 = gfns [512, 1536) backed by the first 4 MiB of an 8 MiB anonymous mapping,
 * all of it faulted in, and slot 1 = gfns [4096, 4608) on the next 2 MiB of it.
 */
function fixture() {
  const host = Host.create({ memory: 64 * kMiB });
  const { vm, hva } = vmWithMapping(host, 8 * kMiB, 'anonymous');
  vm.setUserMemoryRegion2({ slot: 0, flags: 0, guestPhysAddr: 2 * kMiB, memorySize: 4 * kMiB, userspaceAddr: hva });
  vm.setUserMemoryRegion2({ slot: 1, flags: 0, guestPhysAddr: 16 * kMiB, memorySize: 2 * kMiB, userspaceAddr: hva + 4 * kMiB });
  const vcpu = vm.createVcpu();
  expect(vcpu.run(range(512, 1536), 2000, null)).toBe(1024);
  return { host, vm, hva, vcpu };
}

/** Everything a failed ioctl must leave alone. */
function snapshot(vm: Vm) {
  return {
    generation: vm.generation,
    slots: [...vm.slots.values()]
      .map((s) => ({ slot: s.slotId, flags: s.flags, baseGfn: s.baseGfn, npages: s.npages, hva: s.userspaceAddr, log: s.dirtyBitmap !== null }))
      .sort((a, b) => a.slot - b.slot),
    search: vm.memslots.map((s) => s.slotId),
    stats: vm.getStats(),
  };
}

function expectErrno(vm: Vm, r: UserspaceMemoryRegion2, errno: Errno): void {
  const before = snapshot(vm);
  let err: unknown = null;
  try {
    vm.setUserMemoryRegion2(r);
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(KvmError);
  expect((err as KvmError).errno).toBe(errno);
  expect((err as KvmError).code).toBe(kErrnoCode[errno]);
  expect(snapshot(vm)).toEqual(before);
}

describe('KVM_SET_USER_MEMORY_REGION2 errors leave the VM unchanged', () => {
  it('EINVAL for sizes and addresses that are not page aligned', () => {
    const { vm, hva } = fixture();
    const r = { slot: 2, flags: 0, guestPhysAddr: 32 * kMiB, memorySize: kMiB, userspaceAddr: hva + 6 * kMiB };
    expectErrno(vm, { ...r, memorySize: kMiB + 1 }, 'EINVAL');
    expectErrno(vm, { ...r, memorySize: kMiB + 2048 }, 'EINVAL');
    expectErrno(vm, { ...r, guestPhysAddr: 32 * kMiB + 0x800 }, 'EINVAL');
    expectErrno(vm, { ...r, userspaceAddr: hva + 6 * kMiB + 8 }, 'EINVAL');
    // The well-formed region is accepted.
    vm.setUserMemoryRegion2(r);
    expect(vm.slots.size).toBe(3);
  });

  it('EINVAL for slot ids past KVM_USER_MEM_SLOTS and address spaces past 1', () => {
    const { vm, hva } = fixture();
    const r = { slot: 2, flags: 0, guestPhysAddr: 32 * kMiB, memorySize: kMiB, userspaceAddr: hva + 6 * kMiB };
    expectErrno(vm, { ...r, slot: 32764 }, 'EINVAL');
    expectErrno(vm, { ...r, slot: 65535 }, 'EINVAL');
    expectErrno(vm, { ...r, slot: (2 << 16) | 2 }, 'EINVAL');
    expectErrno(vm, { ...r, slot: -1 }, 'EINVAL');
    expectErrno(vm, { ...r, slot: 2.5 }, 'EINVAL');
    // The last user slot and address space 1 (SMM) are valid; address space 1 may reuse gfns.
    vm.setUserMemoryRegion2({ ...r, slot: 32763 });
    vm.setUserMemoryRegion2({ ...r, slot: (1 << 16) | 0, guestPhysAddr: 2 * kMiB });
    expect([...vm.slots.values()].map((s) => s.slotId).sort((a, b) => a - b)).toEqual([0, 1, 32763, 65536]);
    expect(vm.memslots.map((s) => s.slotId)).toEqual([0, 1, 32763]);
  });

  it('EINVAL for invalid flags (KVM_MEM_GUEST_MEMFD without a guest_memfd, unknown bits)', () => {
    const { vm, hva } = fixture();
    const r = { slot: 2, flags: 0, guestPhysAddr: 32 * kMiB, memorySize: kMiB, userspaceAddr: hva + 6 * kMiB };
    expectErrno(vm, { ...r, flags: KVM_MEM_GUEST_MEMFD }, 'EINVAL');
    expectErrno(vm, { ...r, flags: 1 << 3 }, 'EINVAL');
    expectErrno(vm, { ...r, flags: KVM_MEM_READONLY + 2 ** 31 }, 'EINVAL');
  });

  it('EINVAL for a guest range past the modelled guest physical address space', () => {
    const { vm, hva } = fixture();
    expectErrno(vm, { slot: 2, flags: 0, guestPhysAddr: 2 ** 42 - kMiB, memorySize: 2 * kMiB, userspaceAddr: hva + 6 * kMiB }, 'EINVAL');
  });

  it('EEXIST for a new slot overlapping an existing one in the same address space', () => {
    const { vm, hva } = fixture();
    const r = { slot: 2, flags: 0, memorySize: kMiB, userspaceAddr: hva + 6 * kMiB };
    expectErrno(vm, { ...r, guestPhysAddr: 2 * kMiB - 4096 }, 'EEXIST'); // straddles the start
    expectErrno(vm, { ...r, guestPhysAddr: 6 * kMiB - 4096 }, 'EEXIST'); // straddles the end
    expectErrno(vm, { ...r, guestPhysAddr: 3 * kMiB }, 'EEXIST'); // inside
    expectErrno(vm, { ...r, guestPhysAddr: 0, memorySize: 32 * kMiB }, 'EEXIST'); // covers both
    // Adjacent on either side is fine.
    vm.setUserMemoryRegion2({ ...r, guestPhysAddr: kMiB });
    vm.setUserMemoryRegion2({ ...r, slot: 3, guestPhysAddr: 6 * kMiB, userspaceAddr: hva + 7 * kMiB });
    expect(vm.memslots.map((s) => [s.slotId, s.baseGfn, s.npages])).toEqual([[2, 256, 256], [0, 512, 1024], [3, 1536, 256], [1, 4096, 512]]);
  });

  it('EINVAL when deleting a slot that does not exist', () => {
    const { vm, hva } = fixture();
    expectErrno(vm, { slot: 7, flags: 0, guestPhysAddr: 0, memorySize: 0, userspaceAddr: hva }, 'EINVAL');
    expectErrno(vm, { slot: (1 << 16) | 0, flags: 0, guestPhysAddr: 0, memorySize: 0, userspaceAddr: 0 }, 'EINVAL');
  });

  it('EINVAL when changing the size, host address or read-only flag of an existing slot', () => {
    const { vm, hva } = fixture();
    const cur = { slot: 0, flags: 0, guestPhysAddr: 2 * kMiB, memorySize: 4 * kMiB, userspaceAddr: hva };
    expectErrno(vm, { ...cur, memorySize: 2 * kMiB }, 'EINVAL');
    expectErrno(vm, { ...cur, memorySize: 4 * kMiB + 4096 }, 'EINVAL');
    expectErrno(vm, { ...cur, userspaceAddr: hva + 4096 }, 'EINVAL');
    expectErrno(vm, { ...cur, flags: KVM_MEM_READONLY }, 'EINVAL');
    // Moving and resizing at once is still a size change.
    expectErrno(vm, { ...cur, guestPhysAddr: 64 * kMiB, memorySize: 2 * kMiB }, 'EINVAL');
    // Re-setting the same region is a no-op.
    const before = snapshot(vm);
    vm.setUserMemoryRegion2(cur);
    expect(snapshot(vm)).toEqual(before);
  });

  it('EEXIST when moving a slot onto another; a free move zaps the old mappings', () => {
    const { vm, hva, vcpu } = fixture();
    const cur = { slot: 0, flags: 0, guestPhysAddr: 2 * kMiB, memorySize: 4 * kMiB, userspaceAddr: hva };
    expectErrno(vm, { ...cur, guestPhysAddr: 14 * kMiB }, 'EEXIST'); // [3584, 4608) hits slot 1
    expect(vm.getStats().pages_4k).toBe(1024);
    // The failed move did not zap anything: the same accesses take no new fault.
    expect(vcpu.run(range(512, 1536), 2000, null)).toBe(1024);
    expect(vcpu.getStats().pf_taken).toBe(1024);
    vm.setUserMemoryRegion2({ ...cur, guestPhysAddr: 32 * kMiB });
    expect(vm.memslots.map((s) => [s.slotId, s.baseGfn])).toEqual([[1, 4096], [0, 8192]]);
    expect(vm.getStats().pages_4k).toBe(0);
    expect(vm.getStats().remote_tlb_flush).toBe(1);
    // The host pages stayed: the moved slot maps the same memory at the new gfns.
    expect(vcpu.run(accesses([8192, 8192 + 1023]), 10, null)).toBe(2);
    expect(vm.getStats().pages_4k).toBe(2);
  });

  it('deleting a slot zaps its mappings and frees the id', () => {
    const { vm, hva } = fixture();
    vm.setUserMemoryRegion2({ slot: 0, flags: 0, guestPhysAddr: 0, memorySize: 0, userspaceAddr: 0 });
    expect(vm.memslots.map((s) => s.slotId)).toEqual([1]);
    expect(vm.getStats().pages_4k).toBe(0);
    expectErrno(vm, { slot: 0, flags: 0, guestPhysAddr: 0, memorySize: 0, userspaceAddr: 0 }, 'EINVAL');
    vm.setUserMemoryRegion2({ slot: 0, flags: 0, guestPhysAddr: 0, memorySize: 4 * kMiB, userspaceAddr: hva });
    expect(vm.memslots.map((s) => [s.slotId, s.baseGfn])).toEqual([[0, 0], [1, 4096]]);
  });

  it('EINVAL for an unknown flag bit on a new slot creates no slot', () => {
    const { vm, hva } = fixture();
    expectErrno(vm, { slot: 2, flags: KVM_MEM_LOG_DIRTY_PAGES | (1 << 7), guestPhysAddr: 32 * kMiB, memorySize: kMiB, userspaceAddr: hva + 6 * kMiB }, 'EINVAL');
  });

  it('KVM_MEM_LOG_DIRTY_PAGES on a new slot and as a flags-only change both log', () => {
    const { vm, hva } = fixture();
    vm.setUserMemoryRegion2({ slot: 2, flags: KVM_MEM_LOG_DIRTY_PAGES, guestPhysAddr: 32 * kMiB, memorySize: kMiB, userspaceAddr: hva + 6 * kMiB });
    expect(vm.getDirtyLog(2).every((x) => x === 0)).toBe(true);
    vm.setUserMemoryRegion2({ slot: 0, flags: KVM_MEM_LOG_DIRTY_PAGES, guestPhysAddr: 2 * kMiB, memorySize: 4 * kMiB, userspaceAddr: hva });
    expect(vm.getDirtyLog(0)).toHaveLength(32);
  });
});
