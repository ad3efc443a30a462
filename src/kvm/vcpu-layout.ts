/**
 * Layout of one vCPU's SAB (8 KiB). Words other threads write (mode, requests) sit on the first
 * line; the rest is written by the vCPU's own thread only.
 *
 *   Int32 [0]        vcpu->mode (OUTSIDE / IN_GUEST / EXITING)
 *   Int32 [1]        vcpu->requests (bit per KVM_REQ_*)
 *   Int32 [2]        1 while inside KVM_RUN (run-exclusion.ts; the VMM reads it)
 *   Int32 [32..]     page-table page cache (count + pages), as mmu_memory_cache
 *   Int32 [48..]     software TLB generation, dirty-ring indices, PML index, vcpu_id, PSC gen,
 *                    the mmu_lock reader indicator and this vCPU's shard of pages_4k/2m/1g
 *   Int32 [64..319]  software TLB: kTlbEntries x (gfn, pfn, flags, gen)   (bytes 256..1279)
 *   Int32 [320..415] paging-structure cache: kPscEntries x (2M region + 1, 4K table, PSC gen)
 *   Int32 [512..1023] (byte 2048) the PML buffer: 512 logged gfns
 *   Float64 [520..657] (byte 4160) struct kvm_vcpu_stat: 138 u64 words, kVcpuStatDescs layout
 *                    (generic halt stats and histograms, then x86's); based so that pf_taken ..
 *                    exits, the stats the fault path bumps, share one 128-byte line (word 624)
 *   Float64 [672..]  (byte 5376) the harness block: modeled ns, accesses, wall ns, then harness
 *                    counters that are not KVM stats (ring-full exits, PML-full exits)
 */
export const enum VcpuLayout {
  kVcpuBytes = 8192,
  kVcpuMode = 0,
  kVcpuRequests = 1,
  /** 1 while the vCPU is inside run() (KVM_RUN): the VMM refuses copying updates then. */
  kVcpuRunning = 2,
  kVcpuMmuCacheCount = 32,
  kVcpuMmuCache = 33,
  kMmuCacheMax = 8,
  /** PT64_ROOT_MAX_LEVEL pages suffice for one fault (mmu_topup_memory_caches). */
  kMmuCacheMin = 4,
  kVcpuTlbGen = 48,
  kVcpuRingDirtyIndex = 49,
  kVcpuRingResetIndex = 50,
  kVcpuPmlIndex = 51,
  /** The VMM's harvest cursor into this vCPU's dirty ring (userspace's fetch index). */
  kVcpuRingFetchIndex = 52,
  /** vcpu->vcpu_id, written once at KVM_CREATE_VCPU before the SAB is published. */
  kVcpuId = 53,
  /**
   * Generation of the paging-structure cache: bumped by every TLB flush (INVEPT drops PDE
   * caches too) and whenever this vCPU publishes a newer epoch, after which a page table it
   * cached may be freed and reused (walk.ts).
   */
  kVcpuPscGen = 54,
  /** This vCPU's read holds of mmu_lock (rwlock.ts): only the vCPU's thread writes it. */
  kVcpuMmuLockReader = 55,
  /**
   * This vCPU's shard of the VM stats pages_4k, pages_2m, pages_1g (stats.ts): changes the
   * vCPU's faults make, plain words written under mmu_lock by the vCPU's thread only.
   */
  kVcpuStatPages4k = 56,
  /** The guest's CR3 as a gfn (KVM_SET_SREGS; guest paging with the shadow MMU). */
  kVcpuCr3Gfn = 60,
  /** The shadow root (a pool page) this vCPU runs on; 0 until the first fault loads it. */
  kVcpuShadowRoot = 61,
  kVcpuPmlBuffer = 512,
  PML_LOG_NR_ENTRIES = 512,
  kTlbEntries = 64,
  kTlbBase = 64,
  kTlbWords = 4,
  kTlbGfn = 0,
  kTlbPfn = 1,
  kTlbFlags = 2,
  kTlbGenWord = 3,
  /**
   * The walker's paging-structure cache (the PDE cache of x86 CPUs): 2M region -> the 4K page
   * table that maps it, tagged with kVcpuPscGen.
   */
  kPscBase = 320,
  kPscEntries = 32,
  kPscWords = 3,
  kPscTag = 0,
  kPscTable = 1,
  kPscGen = 2,
  /** Float64 indices. */
  kVcpuStats = 520,
  /** u64 words of struct kvm_vcpu_stat (stats.ts kVcpuStatWords; a test checks they agree). */
  kVcpuStatWords = 138,
  kVcpuHarness = 672,
  kVcpuStatModeledNs = VcpuLayout.kVcpuHarness + 0,
  kVcpuStatAccesses = VcpuLayout.kVcpuHarness + 1,
  kVcpuStatWallNs = VcpuLayout.kVcpuHarness + 2,
  /** KVM_EXIT_DIRTY_RING_FULL exits (harness counter, kHarnessVcpuStatNames order from here). */
  kVcpuDirtyRingFullExits = VcpuLayout.kVcpuHarness + 3,
  /** PML-full exits (EXIT_REASON_PML_FULL; harness counter). */
  kVcpuPmlFullExits = VcpuLayout.kVcpuHarness + 4,
  /** KVM_EXIT_MEMORY_FAULT exits (harness counter). */
  kVcpuMemoryFaultExits = VcpuLayout.kVcpuHarness + 5,
}

export const enum VcpuMode {
  OUTSIDE_GUEST_MODE = 0,
  IN_GUEST_MODE = 1,
  EXITING_GUEST_MODE = 2,
}


export const enum KvmReq {
  KVM_REQ_TLB_FLUSH = 1 << 0,
  /** Drain CPU dirty logs (PML) — any exit drains, so this is a kick that waits. */
  KVM_REQ_FLUSH_CPU_DIRTY_LOG = 1 << 2,
  /** PML on/off changed (KVM_REQ_UPDATE_CPU_DIRTY_LOGGING). */
  KVM_REQ_UPDATE_CPU_DIRTY_LOGGING = 1 << 3,
}
export const enum KvmExit {
  /** vcpu->run->exit_reason values this model produces. */
  KVM_EXIT_HYPERCALL = 3,
  KVM_EXIT_MMIO = 6,
  KVM_EXIT_DIRTY_RING_FULL = 31,
  KVM_EXIT_MEMORY_FAULT = 39,
}




