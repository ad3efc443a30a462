// KVM_SET_MEMORY_ATTRIBUTES2 shared -> private on a guest_memfd the host has mmap()ed: the
// in-place series' kvm_gmem_convert_should_proceed() calls unmap_mapping_pages() on the range
// before it checks refcounts, so a page the host merely touched through its mapping converts
// (the mapping is gone, a later host access SIGBUSes); only an extra reference, a pin, refuses
// the conversion with EAGAIN and error_offset. private_mem_conversions_test relies on this: its
// host writes a pattern through the mapping, then the guest maps the page private.
import { describe, expect, it } from 'vitest';
import { Host } from '../src/host/host.js';
import { Vm } from '../src/kvm/vm.js';
import { KVM_X86_SW_PROTECTED_VM, gmemCounters } from '../src/kvm/guest_memfd.js';
import { KVM_MEMORY_ATTRIBUTE_PRIVATE } from '../src/kvm/attributes.js';
import { GUEST_MEMFD_FLAG_INIT_SHARED, GUEST_MEMFD_FLAG_MMAP } from '../src/gmem/gmem-file.js';
import { audit } from '../src/kvm/audit.js';
import { kMiB, threadCtx } from './fixtures/vm-ctx.js';

describe('KVM_SET_MEMORY_ATTRIBUTES2 to private unmaps the host', () => {
  it('converts host-mapped pages, refuses only pinned ones', () => {
    const host = Host.create({ memory: 64 * kMiB, stamps: true });
    const ctx = threadCtx(host);
    const t = ctx.hostThread;
    const vm = Vm.create(host, 0, ctx, { type: KVM_X86_SW_PROTECTED_VM, attributes: 'gmem' });
    const fd = vm.createGuestMemfd({ size: 2 * kMiB, flags: GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED });
    fd.mmap({ shared: true });
    for (const off of [0, 4096, 8192]) expect(fd.hostAccess(t, off, true, 0x11)).toBeGreaterThanOrEqual(0);
    expect(gmemCounters(fd.file).hostMapped).toBe(3);
    expect(fd.setMemoryAttributes2(t, { offset: 0, size: 8192, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE })).toBe(-1);
    expect(fd.file.isPrivate(0) && fd.file.isPrivate(1)).toBe(true);
    // The two converted pages lost their host mapping; the third keeps it.
    expect(gmemCounters(fd.file).hostMapped).toBe(1);
    expect(fd.hostAccess(t, 4096, false)).toBe('SIGBUS');
    // A pin is an extra reference: EAGAIN at the pinned page, nothing converted, still mapped.
    fd.pin(8192);
    expect(fd.setMemoryAttributes2(t, { offset: 8192, size: 8192, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE })).toBe(8192);
    expect(fd.file.isPrivate(2)).toBe(false);
    expect(gmemCounters(fd.file).hostMapped).toBe(1);
    t.drain();
    expect(audit(host, [vm]).violations).toEqual([]);
  });
});
