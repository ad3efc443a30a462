// KVM_CHECK_EXTENSION on /dev/kvm (host.checkExtension) and on the VM fd (vm.checkExtension),
// with x86's answers: kvm_vm_ioctl_check_extension_generic() (kvm_main.c), then x86's
// kvm_vm_ioctl_check_extension(); the system ioctl is the VM one with kvm == NULL. Capability
// numbers are include/uapi/linux/kvm.h's.
import { describe, expect, it } from 'vitest';
import { Host, KvmError } from '../src/index.js';

const cap = {
  USER_MEMORY: 3, NR_VCPUS: 9, NR_MEMSLOTS: 10, SYNC_MMU: 16, MAX_VCPUS: 66, READONLY_MEM: 81, ENABLE_CAP_VM: 98,
  CHECK_EXTENSION_VM: 105, X86_SMM: 117, MULTI_ADDRESS_SPACE: 118, MAX_VCPU_ID: 128, MANUAL_DIRTY_LOG_PROTECT2: 168,
  DIRTY_LOG_RING: 192, BINARY_STATS_FD: 203, DIRTY_LOG_RING_ACQ_REL: 223, DIRTY_LOG_RING_WITH_BITMAP: 225, USER_MEMORY2: 231,
  GUEST_MEMFD: 234, MEMORY_ATTRIBUTES: 233, MEMORY_FAULT_INFO: 232, VM_TYPES: 235, GUEST_MEMFD_FLAGS: 244,
  EXIT_HYPERCALL: 201, GUEST_MEMFD_MEMORY_ATTRIBUTES: 245,
  // Not modelled: HALT_POLL, COALESCED_MMIO.
  HALT_POLL: 182, COALESCED_MMIO: 15,
} as const;

const newHost = (smm?: boolean) => Host.create({ memory: 16 * 2 ** 20, ...(smm === undefined ? {} : { smm }) });

describe('KVM_CHECK_EXTENSION', () => {
  it('answers x86 values for what the harness implements (system and VM ioctl)', () => {
    const host = newHost();
    const vm = host.createVm();
    for (const q of [(c: number) => host.checkExtension(c), (c: number) => vm.checkExtension(c)]) {
      expect(q(cap.USER_MEMORY)).toBe(1);
      expect(q(cap.USER_MEMORY2)).toBe(1);
      expect(q(cap.SYNC_MMU)).toBe(1);
      expect(q(cap.READONLY_MEM)).toBe(1);
      expect(q(cap.CHECK_EXTENSION_VM)).toBe(1);
      expect(q(cap.ENABLE_CAP_VM)).toBe(1);
      expect(q(cap.BINARY_STATS_FD)).toBe(1);
      // KVM_DIRTY_LOG_MANUAL_CAPS = MANUAL_PROTECT_ENABLE | INITIALLY_SET.
      expect(q(cap.MANUAL_DIRTY_LOG_PROTECT2)).toBe(3);
      // KVM_USER_MEM_SLOTS: KVM_MEM_SLOTS_NUM (32767) minus 3 internal slots.
      expect(q(cap.NR_MEMSLOTS)).toBe(32764);
      // KVM_DIRTY_RING_MAX_ENTRIES * sizeof(struct kvm_dirty_gfn): x86 has both TSO and ACQ_REL.
      expect(q(cap.DIRTY_LOG_RING)).toBe(65536 * 16);
      expect(q(cap.DIRTY_LOG_RING_ACQ_REL)).toBe(65536 * 16);
      expect(q(cap.DIRTY_LOG_RING_WITH_BITMAP)).toBe(0);
      // KVM_MAX_VCPU_IDS = KVM_MAX_VCPUS * KVM_VCPU_ID_RATIO = 1024 * 4.
      expect(q(cap.MAX_VCPU_ID)).toBe(4096);
      expect(q(cap.MAX_VCPUS)).toBe(1024);
      expect(q(cap.NR_VCPUS)).toBeGreaterThanOrEqual(1);
      expect(q(cap.NR_VCPUS)).toBeLessThanOrEqual(1024);
      expect(q(cap.MULTI_ADDRESS_SPACE)).toBe(2);
      expect(q(cap.X86_SMM)).toBe(1);
    }
  });

  it('names work as numbers do', () => {
    const vm = newHost().createVm();
    expect(vm.checkExtension('KVM_CAP_DIRTY_LOG_RING_ACQ_REL')).toBe(65536 * 16);
    expect(vm.checkExtension('KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2')).toBe(3);
    expect(() => vm.checkExtension('KVM_CAP_NOPE' as never)).toThrow(KvmError);
  });

  it('unknown and unmodelled capabilities answer 0', () => {
    const host = newHost();
    const vm = host.createVm();
    for (const c of [cap.HALT_POLL, cap.COALESCED_MMIO, 100000, -1]) {
      expect([c, host.checkExtension(c), vm.checkExtension(c)]).toEqual([c, 0, 0]);
    }
  });

  it('guest_memfd and attributes: per VM type and attribute path, as kvm_supported_mem_attributes() and kvm_gmem_get_supported_flags()', () => {
    const host = newHost();
    const plain = host.createVm();
    const swVm = host.createVm({ type: 1 });
    const swGmem = host.createVm({ type: 1, attributes: 'gmem' });
    // System fd: PRIVATE and every flag; VM types default and SW-protected.
    expect([cap.VM_TYPES, cap.GUEST_MEMFD, cap.MEMORY_FAULT_INFO, cap.MEMORY_ATTRIBUTES, cap.GUEST_MEMFD_FLAGS, cap.EXIT_HYPERCALL].map((c) => host.checkExtension(c))).toEqual([3, 1, 1, 8, 3, 1 << 12]);
    expect([plain, swVm, swGmem].map((v) => v.checkExtension(cap.MEMORY_ATTRIBUTES))).toEqual([0, 8, 0]);
    expect([plain, swVm, swGmem].map((v) => v.checkExtension(cap.GUEST_MEMFD_MEMORY_ATTRIBUTES))).toEqual([0, 0, 8]);
    expect([plain, swVm, swGmem].map((v) => v.checkExtension(cap.GUEST_MEMFD_FLAGS))).toEqual([3, 0, 3]);
  });

  it('KVM_CAP_MAX_VCPUS on the VM is kvm->max_vcpus (6.16+), on /dev/kvm KVM_MAX_VCPUS', () => {
    const host = newHost();
    const vm = host.createVm({ maxVcpus: 8 });
    expect(vm.checkExtension(cap.MAX_VCPUS)).toBe(8);
    expect(host.checkExtension(cap.MAX_VCPUS)).toBe(1024);
  });

  it('without SMM: one address space, so KVM_CAP_MULTI_ADDRESS_SPACE (compiled out) and KVM_CAP_X86_SMM answer 0', () => {
    const host = newHost(false);
    const vm = host.createVm();
    expect(host.checkExtension(cap.MULTI_ADDRESS_SPACE)).toBe(0);
    expect(vm.checkExtension(cap.MULTI_ADDRESS_SPACE)).toBe(0);
    expect(vm.checkExtension(cap.X86_SMM)).toBe(0);
    expect(newHost(true).createVm().checkExtension(cap.MULTI_ADDRESS_SPACE)).toBe(2);
  });
});
