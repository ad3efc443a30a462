// PUNCH_HOLE of a 2M piece of a split 1G hugetlb guest_memfd folio: the piece is stranded (its
// memory stays with the file until the whole 1G page is free) and its pages come back one 4K
// page at a time, at their own place. The file must then say 4K for them: a stale "order 9"
// let the next fault map 2M over pages that were still holes (a leaf over frames the file does
// not hold, and stores through it that the file never sees).
import { describe, expect, it } from 'vitest';
import { Host } from '../src/host/host.js';
import { Vm } from '../src/kvm/vm.js';
import { KVM_X86_SW_PROTECTED_VM } from '../src/kvm/guest_memfd.js';
import { KVM_MEMORY_ATTRIBUTE_PRIVATE } from '../src/kvm/attributes.js';
import { KVM_MEM_GUEST_MEMFD } from '../src/kvm/memslot.js';
import { FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, GUEST_MEMFD_FLAG_INIT_SHARED, GUEST_MEMFD_FLAG_MMAP } from '../src/gmem/gmem-file.js';
import { audit } from '../src/kvm/audit.js';
import { accesses, kMiB, threadCtx } from './fixtures/vm-ctx.js';

describe('PUNCH_HOLE of a 2M piece of a split 1G hugetlb folio', () => {
  it('leaves its pages 4K: a later fault maps 4K and the audit is clean', () => {
    const host = Host.create({ memory: 1024 * kMiB + 64 * kMiB, hugepages1g: 1, stamps: true });
    const ctx = threadCtx(host);
    const t = ctx.hostThread;
    const vm = Vm.create(host, 0, ctx, { type: KVM_X86_SW_PROTECTED_VM, attributes: 'gmem' });
    const fd = vm.createGuestMemfd({ size: 1024 * kMiB, backing: 'hugetlb-1g', flags: GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED });
    vm.setUserMemoryRegion2({ slot: 0, flags: KVM_MEM_GUEST_MEMFD, guestPhysAddr: 0, memorySize: 1024 * kMiB, userspaceAddr: 0, guestMemfd: fd, guestMemfdOffset: 0 });
    fd.fallocate(t, FALLOC_FL_KEEP_SIZE, 0, 2 * kMiB);
    // [0, 2M) private, the rest shared: the 1G folio splits; [0, 2M) is whole and uniform, so it
    // merges back into a 2M folio.
    expect(fd.setMemoryAttributes2(t, { offset: 0, size: 2 * kMiB, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE })).toBe(-1);
    expect(fd.file.folioOrder(0)).toBe(9);
    fd.fallocate(t, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 0, 2 * kMiB);
    const vcpu = vm.createVcpu();
    expect(vcpu.run(accesses([0, 1]), 10, null)).toBe(2);
    expect(fd.file.folioOrder(0)).toBe(0);
    expect(vm.getStats()).toMatchObject({ pages_4k: 2, pages_2m: 0 });
    t.drain();
    expect(audit(host, [vm]).violations).toEqual([]);
    vm.destroy();
  });
});
