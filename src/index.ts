/**
 * kvm-mmu-harness: the public API. Names follow KVM's uAPI so a selftest's flow ports one to one:
 *
 *   const host = Host.create({ memory: 2 ** 31, hugepages2m: 512 });
 *   const vm = host.createVm();                                  // KVM_CREATE_VM
 *   const hva = vm.mmap({ size: 2 ** 30, backing: 'anonymous_hugetlb_2mb' });
 *   vm.setUserMemoryRegion2({ slot: 1, flags: 0, guestPhysAddr: 2 ** 32, memorySize: 2 ** 30, userspaceAddr: hva });
 *   const vcpu = vm.createVcpu();                                // KVM_CREATE_VCPU
 *   vcpu.run(stream, budget);                                    // KVM_RUN over a guest access stream
 *   vm.getStats(); vm.getStatsFd();                              // KVM's stats, KVM's binary stats layout
 *   vm.invalidateRange(startGfn, endGfn);                        // an mmu_notifier invalidation
 *
 * Errors are KvmError with a KVM errno ('EINVAL', 'EEXIST', 'ENOMEM', 'EFAULT', …).
 */
export { KvmHost as Host, type KvmHostOptions as HostOptions } from './kvm/kvm-host.js';
export { KvmError, type Errno } from './host/errno.js';
export { kBackingSources, type BackingSource, prefaultAlias } from './host/mm.js';
export { Userfaultfd, UffdMode, uffdioRegister, createWakeBoard } from './host/userfaultfd.js';
export { uffdioCopy, uffdioContinue } from './host/mfill.js';
export { Vm, type VmOptions, type UserspaceMemoryRegion2, type MmapOptions } from './kvm/vm.js';
export { Vcpu, type AccessSource } from './kvm/vcpu.js';
export { KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_READONLY, KVM_MEM_GUEST_MEMFD, KVM_USER_MEM_SLOTS, kMaxGfn } from './kvm/memslot.js';
export { KVM_X86_DEFAULT_VM, KVM_X86_SW_PROTECTED_VM, GuestMemfd, type KvmCreateGuestMemfd, type KvmMemoryAttributes2, gmemCounters } from './kvm/guest_memfd.js';
export { KVM_MEMORY_ATTRIBUTE_PRIVATE, type KvmMemoryAttributes, type AttributesPath } from './kvm/attributes.js';
export { GUEST_MEMFD_FLAG_MMAP, GUEST_MEMFD_FLAG_INIT_SHARED, FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, kGmemBackings, type GmemBacking } from './gmem/gmem-file.js';
export {
  kVmStatNames, kVcpuStatNames, kVmStatDescs, kVcpuStatDescs, kHarnessVcpuStatNames, encodeBinaryStats,
  type KvmStatsDesc, type VmStats, type VcpuStats, type HarnessVcpuStats,
} from './kvm/stats.js';
export { decodeBinaryStats, parseBinaryStats, type ParsedStats, type ParsedStat } from './kvm/stats-parse.js';
export {
  kCapNames, KVM_MAX_VCPUS, KVM_MAX_VCPU_IDS, KVM_X86_QUIRK_SLOT_ZAP_ALL, type Cap, type CapName, type KvmEnableCap,
} from './kvm/caps.js';
export { audit, type AuditResult, type AuditViolation } from './kvm/audit.js';
export { MemstressStream, type StreamSpec, type AccessOrder } from './workload/memstress.js';
export { Runner, type RunnerOptions, type PhaseOutcome, type UffdReaderConfig } from './scenario/runner.js';
export type { PhaseObserver, PhaseProbe, PhaseSample } from './scenario/phase-observer.js';
export { kScenarios, findScenario } from './scenario/index.js';
export { kResultSchema, type RunResult } from './scenario/result.js';
export { renderText } from './report/text.js';
