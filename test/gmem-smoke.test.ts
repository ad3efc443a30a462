import { describe, expect, it } from 'vitest';
import { Host } from '../src/host/host.js';
import { audit } from '../src/kvm/audit.js';
import { Vm } from '../src/kvm/vm.js';
import { KVM_X86_SW_PROTECTED_VM } from '../src/kvm/guest_memfd.js';
import { KVM_MEMORY_ATTRIBUTE_PRIVATE } from '../src/kvm/attributes.js';
import { KVM_MEM_GUEST_MEMFD } from '../src/kvm/memslot.js';
import { FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, GUEST_MEMFD_FLAG_MMAP, GUEST_MEMFD_FLAG_INIT_SHARED } from '../src/gmem/gmem-file.js';
import { KvmExit } from '../src/kvm/vcpu-layout.js';
import { accesses, kMiB, threadCtx } from './fixtures/vm-ctx.js';

describe('gmem smoke', () => {
  it('vm path: private faults through gmem at 2M, conversion zaps and goes 4K where mixed', () => {
    const host = Host.create({ memory: 64 * kMiB, hugepages2m: 4, stamps: true });
    const ctx = threadCtx(host);
    const vm = Vm.create(host, 0, ctx, { type: KVM_X86_SW_PROTECTED_VM });
    const hva = vm.mmap({ size: 4 * kMiB, backing: 'anonymous' });
    const fd = vm.createGuestMemfd({ size: 4 * kMiB, backing: 'hugetlb-2m' });
    vm.setUserMemoryRegion2({ slot: 0, flags: KVM_MEM_GUEST_MEMFD, guestPhysAddr: 0, memorySize: 4 * kMiB, userspaceAddr: hva, guestMemfd: fd, guestMemfdOffset: 0 });
    vm.setMemoryAttributes({ address: 0, size: 4 * kMiB, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE });
    const vcpu = vm.createVcpu();
    expect(vcpu.run(accesses([0, 1, 512]), 10, null)).toBe(3);
    expect(vm.getStats()).toMatchObject({ pages_4k: 0, pages_2m: 2 });
    ctx.hostThread.drain();
    expect(audit(host, [vm]).violations).toEqual([]);
    vm.setMemoryAttributes({ address: 4096, size: 4096, attributes: 0 });
    expect(vm.getStats()).toMatchObject({ pages_2m: 1 });
    expect(vcpu.run(accesses([0, 1]), 10, null)).toBe(2);
    expect(vm.getStats()).toMatchObject({ pages_4k: 2, pages_2m: 1 });
    ctx.hostThread.drain();
    expect(audit(host, [vm]).violations).toEqual([]);
    fd.fallocate(ctx.hostThread, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 0, 2 * kMiB);
    ctx.hostThread.drain();
    expect(audit(host, [vm]).violations).toEqual([]);
  });

  it('gmem path: in-place 1G split and merge; memory fault exit on a non-gmem private slot', () => {
    const host = Host.create({ memory: 3 * 1024 * kMiB, hugepages1g: 1, stamps: true });
    const ctx = threadCtx(host);
    const vm = Vm.create(host, 0, ctx, { type: KVM_X86_SW_PROTECTED_VM, attributes: 'gmem' });
    const fd = vm.createGuestMemfd({ size: 1024 * kMiB, backing: 'hugetlb-1g', flags: GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED });
    const hva = vm.mmap({ size: 1024 * kMiB, backing: 'anonymous' });
    vm.setUserMemoryRegion2({ slot: 0, flags: KVM_MEM_GUEST_MEMFD, guestPhysAddr: 0, memorySize: 1024 * kMiB, userspaceAddr: hva, guestMemfd: fd, guestMemfdOffset: 0 });
    const vcpu = vm.createVcpu();
    expect(vcpu.run(accesses([0, 5]), 10, null)).toBe(2);
    expect(vm.getStats()).toMatchObject({ pages_1g: 1 });
    expect(fd.setMemoryAttributes2(ctx.hostThread, { offset: 4096, size: 4096, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE })).toBe(-1);
    expect(vm.getStats()).toMatchObject({ pages_1g: 0 });
    expect(vcpu.run(accesses([0, 1, 600]), 10, null)).toBe(3);
    expect(vm.getStats()).toMatchObject({ pages_4k: 3, pages_1g: 0 });
    ctx.hostThread.drain();
    expect(audit(host, [vm]).violations).toEqual([]);
    expect(fd.setMemoryAttributes2(ctx.hostThread, { offset: 4096, size: 4096, attributes: 0 })).toBe(-1);
    expect(vcpu.run(accesses([0, 1, 600]), 10, null)).toBe(3);
    expect(vm.getStats()).toMatchObject({ pages_4k: 0, pages_1g: 1 });
    ctx.hostThread.drain();
    expect(audit(host, [vm]).violations).toEqual([]);
    // A pinned host-mapped shared page refuses shared -> private with EAGAIN (a plain host
    // mapping does not: the conversion unmaps it, test/gmem-convert-unmaps-host.test.ts).
    fd.mmap({ shared: true });
    fd.hostAccess(ctx.hostThread, 8192, true, 7);
    fd.pin(8192);
    expect(fd.setMemoryAttributes2(ctx.hostThread, { offset: 0, size: 16384, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE })).toBe(8192);
    expect(fd.file.isPrivate(0)).toBe(false);
    fd.unpin(8192);
    fd.munmap(8192, 4096);
    expect(fd.setMemoryAttributes2(ctx.hostThread, { offset: 0, size: 16384, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE })).toBe(-1);
    expect(fd.hostAccess(ctx.hostThread, 8192, false)).toBe('SIGBUS');
    vm.destroy();
  });

  it('private attribute on a slot without guest_memfd exits KVM_EXIT_MEMORY_FAULT', () => {
    const host = Host.create({ memory: 64 * kMiB });
    const ctx = threadCtx(host);
    const vm = Vm.create(host, 0, ctx, { type: KVM_X86_SW_PROTECTED_VM });
    const hva = vm.mmap({ size: 4 * kMiB, backing: 'anonymous' });
    vm.setUserMemoryRegion2({ slot: 0, flags: 0, guestPhysAddr: 0, memorySize: 4 * kMiB, userspaceAddr: hva });
    vm.setMemoryAttributes({ address: 0, size: 4096, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE });
    const vcpu = vm.createVcpu();
    expect(vcpu.run(accesses([1, 0, 2]), 10, null)).toBe(1);
    expect(vcpu.exitReason).toBe(KvmExit.KVM_EXIT_MEMORY_FAULT);
    expect(vcpu.memoryFault).toMatchObject({ gpa: 0, size: 4096, flags: 8 });
  });
});

describe('guest_memfd slots: binding rules', () => {
  const mk = () => {
    const host = Host.create({ memory: 64 * kMiB, hugepages2m: 4 });
    const ctx = threadCtx(host);
    const vm = Vm.create(host, 0, ctx, { type: KVM_X86_SW_PROTECTED_VM });
    const hva = vm.mmap({ size: 4 * kMiB, backing: 'anonymous' });
    const fd = vm.createGuestMemfd({ size: 8 * kMiB, backing: 'hugetlb-2m' });
    return { host, ctx, vm, hva, fd };
  };
  it('a gfn/offset misalignment disallows huge mappings (the folio is 2M, the mapping stays 4K)', () => {
    const { host, ctx, vm, hva, fd } = mk();
    vm.setUserMemoryRegion2({ slot: 0, flags: KVM_MEM_GUEST_MEMFD, guestPhysAddr: 0, memorySize: 4 * kMiB, userspaceAddr: hva, guestMemfd: fd, guestMemfdOffset: 4096 });
    vm.setMemoryAttributes({ address: 0, size: 4 * kMiB, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE });
    const vcpu = vm.createVcpu();
    expect(vcpu.run(accesses([0, 600]), 10, null)).toBe(2);
    expect(vm.getStats()).toMatchObject({ pages_4k: 2, pages_2m: 0 });
    ctx.hostThread.drain();
    expect(audit(host, [vm]).violations).toEqual([]);
  });
  it('refuses dirty logging, READONLY, a foreign or missing file, an offset past the end, and pages bound twice (EINVAL)', () => {
    const { vm, hva, fd } = mk();
    const r = { slot: 0, flags: KVM_MEM_GUEST_MEMFD, guestPhysAddr: 0, memorySize: 4 * kMiB, userspaceAddr: hva, guestMemfd: fd, guestMemfdOffset: 0 };
    expect(() => vm.setUserMemoryRegion2({ ...r, flags: KVM_MEM_GUEST_MEMFD | 1 })).toThrow(/EINVAL.*dirty logging/);
    expect(() => vm.setUserMemoryRegion2({ ...r, flags: KVM_MEM_GUEST_MEMFD | 2 })).toThrow(/EINVAL.*READONLY/);
    expect(() => vm.setUserMemoryRegion2({ ...r, guestMemfd: undefined })).toThrow(/EINVAL/);
    expect(() => vm.setUserMemoryRegion2({ ...r, guestMemfdOffset: 6 * kMiB })).toThrow(/EINVAL.*inside the file/);
    expect(() => vm.setUserMemoryRegion2({ ...r, guestMemfdOffset: 100 })).toThrow(/EINVAL/);
    const other = Vm.create(vm.host, 1, vm.ctx, { type: KVM_X86_SW_PROTECTED_VM }).createGuestMemfd({ size: 4 * kMiB });
    expect(() => vm.setUserMemoryRegion2({ ...r, guestMemfd: other })).toThrow(/EINVAL.*this VM/);
    vm.setUserMemoryRegion2(r);
    expect(() => vm.setUserMemoryRegion2({ ...r, slot: 1, guestPhysAddr: 8 * kMiB, guestMemfdOffset: 2 * kMiB })).toThrow(/EINVAL.*already bound/);
    vm.setUserMemoryRegion2({ ...r, slot: 1, guestPhysAddr: 8 * kMiB, guestMemfdOffset: 4 * kMiB });
    expect(() => vm.setUserMemoryRegion2({ ...r, flags: 0 })).toThrow(/EINVAL.*cannot change/);
  });
});

describe('mixed-attribute flags', () => {
  it('a change covering a whole 2M page clears its mixed flag: it maps 2M again, and the recount agrees', () => {
    const host = Host.create({ memory: 64 * kMiB, hugepages2m: 4 });
    const ctx = threadCtx(host);
    const vm = Vm.create(host, 0, ctx, { type: KVM_X86_SW_PROTECTED_VM });
    const hva = vm.mmap({ size: 4 * kMiB, backing: 'anonymous' });
    const fd = vm.createGuestMemfd({ size: 4 * kMiB, backing: 'hugetlb-2m' });
    vm.setUserMemoryRegion2({ slot: 0, flags: KVM_MEM_GUEST_MEMFD, guestPhysAddr: 0, memorySize: 4 * kMiB, userspaceAddr: hva, guestMemfd: fd, guestMemfdOffset: 0 });
    vm.setMemoryAttributes({ address: 0, size: 4 * kMiB, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE });
    // One 4K page shared: the 2M page at 0 is mixed (the head-page rule).
    vm.setMemoryAttributes({ address: 4096, size: 4096, attributes: 0 });
    expect(vm.memslots[0]!.lpage[0]![0]! & (1 << 31)).not.toBe(0);
    // The whole 2M private again: wholly covered, so the flag is cleared without a scan.
    vm.setMemoryAttributes({ address: 0, size: 2 * kMiB, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE });
    expect(vm.memslots[0]!.lpage[0]![0]! & (1 << 31)).toBe(0);
    const vcpu = vm.createVcpu();
    expect(vcpu.run(accesses([1]), 10, null)).toBe(1);
    expect(vm.getStats()).toMatchObject({ pages_4k: 0, pages_2m: 1 });
    ctx.hostThread.drain();
    expect(audit(host, [vm]).violations).toEqual([]);
  });
});
