/**
 * Layout of one vCPU's SAB (2 KiB). Words other threads write (mode, requests) sit on the first
 * line; the rest is written by the vCPU's own thread only.
 *
 *   Int32 [0]        vcpu->mode (OUTSIDE / IN_GUEST / EXITING)
 *   Int32 [1]        vcpu->requests (bit per KVM_REQ_*)
 *   Int32 [32..]     page-table page cache (count + pages), as mmu_memory_cache
 *   Int32 [48..]     software TLB generation + dirty-ring indices
 *   Int32 [64..319]  software TLB: kTlbEntries x (gfn, pfn, flags, gen)   (bytes 256..1279)
 *   Float64 [192..]  (byte 1536) stats, kVcpuStatNames order; then modeled ns, accesses, wall ns
 *   Int32 [512..1023] (byte 2048) the PML buffer: 512 logged gfns
 */
export const kVcpuBytes = 4096;

export const OUTSIDE_GUEST_MODE = 0;
export const IN_GUEST_MODE = 1;
export const EXITING_GUEST_MODE = 2;

export const kVcpuMode = 0;
export const kVcpuRequests = 1;

export const KVM_REQ_TLB_FLUSH = 1 << 0;
/** Drain CPU dirty logs (PML) — any exit drains, so this is a kick that waits. */
export const KVM_REQ_FLUSH_CPU_DIRTY_LOG = 1 << 2;
/** PML on/off changed (KVM_REQ_UPDATE_CPU_DIRTY_LOGGING). */
export const KVM_REQ_UPDATE_CPU_DIRTY_LOGGING = 1 << 3;
/** vcpu->run->exit_reason values this model produces. */
export const KVM_EXIT_DIRTY_RING_FULL = 31;

export const kVcpuMmuCacheCount = 32;
export const kVcpuMmuCache = 33;
export const kMmuCacheMax = 8;
/** PT64_ROOT_MAX_LEVEL pages suffice for one fault (mmu_topup_memory_caches). */
export const kMmuCacheMin = 4;

export const kVcpuTlbGen = 48;
export const kVcpuRingDirtyIndex = 49;
export const kVcpuRingResetIndex = 50;
export const kVcpuPmlIndex = 51;
/** The VMM's harvest cursor into this vCPU's dirty ring (userspace's fetch index). */
export const kVcpuRingFetchIndex = 52;
export const kVcpuPmlBuffer = 512;
export const PML_LOG_NR_ENTRIES = 512;

export const kTlbEntries = 64;
export const kTlbBase = 64;
export const kTlbWords = 4;
export const kTlbGfn = 0;
export const kTlbPfn = 1;
export const kTlbFlags = 2;
export const kTlbGenWord = 3;

/** Float64 indices. */
export const kVcpuStats = 192;
export const kVcpuStatModeledNs = kVcpuStats + 16;
export const kVcpuStatAccesses = kVcpuStats + 17;
export const kVcpuStatWallNs = kVcpuStats + 18;
