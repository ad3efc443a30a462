/**
 * Capabilities: KVM_CHECK_EXTENSION (system and VM ioctl) and KVM_ENABLE_CAP on the VM, as
 * kvm_vm_ioctl_check_extension_generic() / kvm_vm_ioctl_enable_cap_generic() (kvm_main.c) fall
 * through to x86's kvm_vm_ioctl_check_extension() / kvm_vm_ioctl_enable_cap() (x86.c).
 *
 * Only capabilities the harness implements answer non-zero, with x86's values; every other
 * capability answers 0, as KVM answers for one it does not know. The system ioctl is the VM
 * ioctl with kvm == NULL (kvm_dev_ioctl: `kvm_vm_ioctl_check_extension_generic(NULL, arg)`).
 */
import { availableParallelism } from 'node:os';
import { fail } from '../host/errno.js';
import type { Host } from '../host/host.js';
import { KVM_USER_MEM_SLOTS } from './memslot.js';
import { VmLayout } from './vm-layout.js';
import { DirtyRing, enableDirtyRing } from './dirty/ring.js';
import { KVM_DIRTY_LOG_INITIALLY_SET, KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE } from './dirty/strategy.js';
import type { Vm } from './vm.js';
import { KVM_MEMORY_ATTRIBUTE_PRIVATE } from './attributes.js';
import { KVM_X86_DEFAULT_VM, KVM_X86_SW_PROTECTED_VM, kvmGmemSupportedFlags } from './guest_memfd.js';

// include/uapi/linux/kvm.h
export const KVM_CAP_USER_MEMORY = 3;
export const KVM_CAP_NR_VCPUS = 9;
export const KVM_CAP_NR_MEMSLOTS = 10;
export const KVM_CAP_SYNC_MMU = 16;
export const KVM_CAP_DESTROY_MEMORY_REGION_WORKS = 21;
export const KVM_CAP_JOIN_MEMORY_REGIONS_WORKS = 30;
export const KVM_CAP_MAX_VCPUS = 66;
export const KVM_CAP_READONLY_MEM = 81;
export const KVM_CAP_ENABLE_CAP_VM = 98;
export const KVM_CAP_CHECK_EXTENSION_VM = 105;
export const KVM_CAP_X86_SMM = 117;
export const KVM_CAP_MULTI_ADDRESS_SPACE = 118;
export const KVM_CAP_MAX_VCPU_ID = 128;
export const KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 = 168;
export const KVM_CAP_DIRTY_LOG_RING = 192;
export const KVM_CAP_BINARY_STATS_FD = 203;
export const KVM_CAP_DISABLE_QUIRKS2 = 213;
export const KVM_CAP_DIRTY_LOG_RING_ACQ_REL = 223;
export const KVM_CAP_DIRTY_LOG_RING_WITH_BITMAP = 225;
export const KVM_CAP_EXIT_HYPERCALL = 201;
export const KVM_CAP_USER_MEMORY2 = 231;
export const KVM_CAP_MEMORY_FAULT_INFO = 232;
export const KVM_CAP_MEMORY_ATTRIBUTES = 233;
export const KVM_CAP_GUEST_MEMFD = 234;
export const KVM_CAP_VM_TYPES = 235;
export const KVM_CAP_GUEST_MEMFD_FLAGS = 244;
/** The in-place conversion series' capability (2026; its number is the series', not a release's). */
export const KVM_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES = 245;
/** KVM_EXIT_HYPERCALL_VALID_MASK: only KVM_HC_MAP_GPA_RANGE (12) may exit to userspace. */
export const KVM_EXIT_HYPERCALL_VALID_MASK = 1 << 12;

/** x86 (arch/x86/include/asm/kvm_host.h): CONFIG_KVM_MAX_NR_VCPUS defaults to 1024. */
export const KVM_MAX_VCPUS = 1024;
/** KVM_MAX_VCPUS * KVM_VCPU_ID_RATIO (4): APIC ids encode topology, so ids are sparse. */
export const KVM_MAX_VCPU_IDS = 4096;
/** KVM_MAX_NR_ADDRESS_SPACES with CONFIG_KVM_SMM=y (one address space without SMM). */
export const KVM_MAX_NR_ADDRESS_SPACES = 2;
/**
 * arch/x86/include/uapi/asm/kvm.h: deleting or moving a memslot zaps every SPTE (the default),
 * not just the slot's. The only quirk this model has, so kvm_caps.supported_quirks here.
 */
export const KVM_X86_QUIRK_SLOT_ZAP_ALL = 1 << 7;
const kSupportedQuirks = KVM_X86_QUIRK_SLOT_ZAP_ALL;
/** KVM_DIRTY_LOG_MANUAL_CAPS: what KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 reports and accepts. */
export const KVM_DIRTY_LOG_MANUAL_CAPS = KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE | KVM_DIRTY_LOG_INITIALLY_SET;

/** The capabilities the library accepts by name as well as by number. */
export const kCapNames = {
  KVM_CAP_USER_MEMORY, KVM_CAP_NR_VCPUS, KVM_CAP_NR_MEMSLOTS, KVM_CAP_SYNC_MMU, KVM_CAP_DESTROY_MEMORY_REGION_WORKS,
  KVM_CAP_JOIN_MEMORY_REGIONS_WORKS, KVM_CAP_MAX_VCPUS, KVM_CAP_READONLY_MEM, KVM_CAP_ENABLE_CAP_VM,
  KVM_CAP_CHECK_EXTENSION_VM, KVM_CAP_X86_SMM, KVM_CAP_MULTI_ADDRESS_SPACE, KVM_CAP_MAX_VCPU_ID,
  KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, KVM_CAP_DIRTY_LOG_RING, KVM_CAP_BINARY_STATS_FD, KVM_CAP_DISABLE_QUIRKS2,
  KVM_CAP_DIRTY_LOG_RING_ACQ_REL, KVM_CAP_DIRTY_LOG_RING_WITH_BITMAP, KVM_CAP_USER_MEMORY2,
  KVM_CAP_EXIT_HYPERCALL, KVM_CAP_MEMORY_FAULT_INFO, KVM_CAP_MEMORY_ATTRIBUTES, KVM_CAP_GUEST_MEMFD, KVM_CAP_VM_TYPES,
  KVM_CAP_GUEST_MEMFD_FLAGS, KVM_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES,
} as const;
export type CapName = keyof typeof kCapNames;
export type Cap = CapName | number;

/** struct kvm_enable_cap: { cap, flags, args[4] } (args are u64). */
export interface KvmEnableCap {
  cap: Cap;
  flags?: number;
  args?: readonly number[];
}

export function capNumber(cap: Cap): number {
  if (typeof cap === 'number') return cap;
  const n = (kCapNames as Record<string, number>)[cap];
  if (n === undefined) fail('EINVAL', `unknown capability name '${String(cap)}' (use a KVM_CAP_* name or its number)`);
  return n;
}

/**
 * kvm_arch_nr_memslot_as_ids(): with SMM (CONFIG_KVM_SMM, the modelled host's `smm`), x86 has
 * the SMM address space 1 beside address space 0; without it, one address space.
 */
export function kvmArchNrMemslotAsIds(host: Host): number {
  return host.options.smm ? KVM_MAX_NR_ADDRESS_SPACES : 1;
}

/** KVM_CHECK_EXTENSION: `vm` null is the system ioctl on /dev/kvm. */
export function kvmCheckExtension(host: Host, vm: Vm | null, cap: Cap): number {
  const c = capNumber(cap);
  switch (c) {
    // kvm_vm_ioctl_check_extension_generic()
    case KVM_CAP_USER_MEMORY:
    case KVM_CAP_USER_MEMORY2:
    case KVM_CAP_DESTROY_MEMORY_REGION_WORKS:
    case KVM_CAP_JOIN_MEMORY_REGIONS_WORKS:
    case KVM_CAP_CHECK_EXTENSION_VM:
    case KVM_CAP_ENABLE_CAP_VM:
    case KVM_CAP_BINARY_STATS_FD:
      return 1;
    case KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2:
      return KVM_DIRTY_LOG_MANUAL_CAPS;
    case KVM_CAP_MULTI_ADDRESS_SPACE:
      // Compiled out when KVM_MAX_NR_ADDRESS_SPACES is 1 (no SMM): x86 then answers 0.
      if (!host.options.smm) return 0;
      return vm !== null ? kvmArchNrMemslotAsIds(host) : KVM_MAX_NR_ADDRESS_SPACES;
    case KVM_CAP_NR_MEMSLOTS:
      return KVM_USER_MEM_SLOTS;
    // x86 selects both HAVE_KVM_DIRTY_RING_TSO and HAVE_KVM_DIRTY_RING_ACQ_REL.
    case KVM_CAP_DIRTY_LOG_RING:
    case KVM_CAP_DIRTY_LOG_RING_ACQ_REL:
      return DirtyRing.KVM_DIRTY_RING_MAX_ENTRIES * DirtyRing.kDirtyGfnBytes;
    // x86 does not select NEED_KVM_DIRTY_RING_WITH_BITMAP.
    case KVM_CAP_DIRTY_LOG_RING_WITH_BITMAP:
      return 0;
    // x86's kvm_vm_ioctl_check_extension()
    case KVM_CAP_SYNC_MMU:
    case KVM_CAP_READONLY_MEM:
      return 1;
    case KVM_CAP_X86_SMM:
      // Whether the host was built with SMM (only its address space is modelled, not SMIs).
      return host.options.smm ? 1 : 0;
    case KVM_CAP_NR_VCPUS:
      return Math.min(availableParallelism(), KVM_MAX_VCPUS);
    case KVM_CAP_MAX_VCPUS:
      // 6.16+: `if (kvm) r = kvm->max_vcpus;` (the VM's limit, maxVcpus here).
      return vm !== null ? vm.maxVcpus : KVM_MAX_VCPUS;
    case KVM_CAP_MAX_VCPU_ID:
      return KVM_MAX_VCPU_IDS;
    case KVM_CAP_DISABLE_QUIRKS2:
      return kSupportedQuirks;
    case KVM_CAP_EXIT_HYPERCALL:
      return KVM_EXIT_HYPERCALL_VALID_MASK;
    case KVM_CAP_MEMORY_FAULT_INFO:
    case KVM_CAP_GUEST_MEMFD:
      return 1;
    case KVM_CAP_VM_TYPES:
      return (1 << KVM_X86_DEFAULT_VM) | (1 << KVM_X86_SW_PROTECTED_VM);
    case KVM_CAP_MEMORY_ATTRIBUTES:
      // kvm_supported_mem_attributes(): PRIVATE on the system fd and on VMs with private memory
      // that set attributes through the VM ioctl.
      return vm === null || (vm.privateMem && vm.attrPath === 'vm') ? KVM_MEMORY_ATTRIBUTE_PRIVATE : 0;
    case KVM_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES:
      return vm === null || (vm.privateMem && vm.attrPath === 'gmem') ? KVM_MEMORY_ATTRIBUTE_PRIVATE : 0;
    case KVM_CAP_GUEST_MEMFD_FLAGS:
      return kvmGmemSupportedFlags(vm);
    default:
      return 0;
  }
}

/** A u64 argument as a JS number: non-negative safe integers only (what the model can hold). */
function u64Arg(v: number, what: string): number {
  if (!Number.isSafeInteger(v) || v < 0) fail('EINVAL', `${what} must be a u64 (a non-negative integer below 2^53 here), got ${String(v)}`);
  return v;
}

/** KVM_ENABLE_CAP on the VM (kvm_vm_ioctl_enable_cap_generic, then x86's). */
export function kvmVmIoctlEnableCap(vm: Vm, cap: KvmEnableCap): void {
  const c = capNumber(cap.cap);
  const flags = cap.flags ?? 0;
  if (!Number.isSafeInteger(flags) || flags < 0 || flags > 0xffffffff) fail('EINVAL', `KVM_ENABLE_CAP: flags is a u32, got ${String(flags)}`);
  const arg0 = cap.args?.[0] ?? 0;
  switch (c) {
    case KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2: {
      // INITIALLY_SET only together with MANUAL_PROTECT_ENABLE; the full u64 args[0] is checked.
      const a = u64Arg(arg0, 'KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 args[0]');
      const allowed = a % 2 === 1 ? KVM_DIRTY_LOG_MANUAL_CAPS : KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE;
      if (flags !== 0) failFlags('KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2', flags);
      if (a > KVM_DIRTY_LOG_MANUAL_CAPS || (a & ~allowed) !== 0) {
        fail('EINVAL', `KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2: flags 0x${a.toString(16)} not accepted (KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE = 1, KVM_DIRTY_LOG_INITIALLY_SET = 2 only with it)`);
      }
      Atomics.store(vm.w, VmLayout.kVmDirtyCaps, a);
      return;
    }
    case KVM_CAP_DIRTY_LOG_RING:
    case KVM_CAP_DIRTY_LOG_RING_ACQ_REL:
      // KVM checks neither cap->flags here nor the upper half of args[0]: the size is passed
      // as a u32 to kvm_vm_ioctl_enable_dirty_log_ring().
      if (!Number.isSafeInteger(arg0)) fail('EINVAL', `${c === KVM_CAP_DIRTY_LOG_RING ? 'KVM_CAP_DIRTY_LOG_RING' : 'KVM_CAP_DIRTY_LOG_RING_ACQ_REL'}: size must be an integer, got ${String(arg0)}`);
      enableDirtyRing(vm, ((arg0 % 2 ** 32) + 2 ** 32) % 2 ** 32);
      return;
    case KVM_CAP_MAX_VCPU_ID: {
      // x86's kvm_vm_ioctl_enable_cap() starts with `if (cap->flags) return -EINVAL;`.
      if (flags !== 0) failFlags('KVM_CAP_MAX_VCPU_ID', flags);
      const a = u64Arg(arg0, 'KVM_CAP_MAX_VCPU_ID args[0]');
      if (a > KVM_MAX_VCPU_IDS) fail('EINVAL', `KVM_CAP_MAX_VCPU_ID: ${a} is above KVM_MAX_VCPU_IDS (${KVM_MAX_VCPU_IDS})`);
      // Set once; setting the same value again succeeds (kvm->arch.max_vcpu_ids).
      if (vm.maxVcpuIds === a) return;
      if (vm.maxVcpuIds !== 0) fail('EINVAL', `KVM_CAP_MAX_VCPU_ID is already ${vm.maxVcpuIds} on this VM and can be set only once`);
      vm.maxVcpuIds = a;
      return;
    }
    case KVM_CAP_DISABLE_QUIRKS2: {
      // A quirk KVM does not support is EINVAL; the bits accumulate (disabled_quirks |=).
      if (flags !== 0) failFlags('KVM_CAP_DISABLE_QUIRKS2', flags);
      const a = u64Arg(arg0, 'KVM_CAP_DISABLE_QUIRKS2 args[0]');
      if (a > 0xffffffff || (a & ~kSupportedQuirks) !== 0) {
        fail('EINVAL', `KVM_CAP_DISABLE_QUIRKS2: quirks 0x${a.toString(16)} not supported (this model has KVM_X86_QUIRK_SLOT_ZAP_ALL = 0x${KVM_X86_QUIRK_SLOT_ZAP_ALL.toString(16)} only)`);
      }
      vm.disabledQuirks |= a;
      return;
    }
    case KVM_CAP_EXIT_HYPERCALL: {
      // kvm->arch.hypercall_exit_enabled: which hypercalls exit to userspace.
      if (flags !== 0) failFlags('KVM_CAP_EXIT_HYPERCALL', flags);
      const a = u64Arg(arg0, 'KVM_CAP_EXIT_HYPERCALL args[0]');
      if (a > 0xffffffff || (a & ~KVM_EXIT_HYPERCALL_VALID_MASK) !== 0) fail('EINVAL', `KVM_CAP_EXIT_HYPERCALL: 0x${a.toString(16)} has bits outside KVM_EXIT_HYPERCALL_VALID_MASK (0x${KVM_EXIT_HYPERCALL_VALID_MASK.toString(16)})`);
      Atomics.store(vm.w, VmLayout.kVmHypercallExit, a);
      return;
    }
    default:
      fail('EINVAL', `KVM_ENABLE_CAP: capability ${String(cap.cap)} cannot be enabled on this VM (modelled: KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, KVM_CAP_DIRTY_LOG_RING, KVM_CAP_DIRTY_LOG_RING_ACQ_REL, KVM_CAP_MAX_VCPU_ID, KVM_CAP_DISABLE_QUIRKS2, KVM_CAP_EXIT_HYPERCALL)`);
  }
}

function failFlags(what: string, flags: number): never {
  fail('EINVAL', `${what}: KVM_ENABLE_CAP flags must be 0, got 0x${flags.toString(16)}`);
}
