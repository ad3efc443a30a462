/**
 * Primitive operations the model counts. Every operation is counted, and each count adds its
 * cost-model price to the thread's modeled clock, so modeled time is a pure function of the
 * counts: identical run to run for the same seed on one worker, comparable across machines.
 */
export const kOpNames = [
  'guest_access', // one guest load/store retired
  'tlb_hit',
  'tlb_miss',
  'walk_step', // one level of a hardware EPT walk
  'vm_exit', // EPT-violation exit + re-entry
  'spte_read',
  'spte_write',
  'spte_cmpxchg',
  'spte_cmpxchg_fail',
  'pt_page_alloc',
  'pt_page_free',
  'tlb_flush_request', // kvm_flush_remote_tlbs() call (IPIs to running vCPUs)
  'tlb_flush_vcpu', // a vCPU honouring KVM_REQ_TLB_FLUSH
  'lock_read',
  'lock_write',
  'lock_wait_ns', // wall ns spent waiting for a lock (reported, never priced)
  'host_fault', // handle_mm_fault / hugetlb_fault that populated a folio
  'page_zero_4k', // 4K of folio zeroing on population
  'frame_alloc',
  'frame_free',
  'memslot_lookup',
  'fault_retry', // RET_PF_RETRY (stale fault, frozen SPTE, lost cmpxchg)
  'invalidate', // mmu_notifier invalidate_range_start/end pair
  'bitmap_word', // one 64-bit dirty-bitmap word read, copied or cleared
  'dirty_mark', // mark_page_dirty_in_slot
  'pml_log', // one PML buffer entry
  'pml_flush', // PML-full exit / drain
  'ring_push',
  'ring_reset_entry',
  'ring_full_exit',
  'wrprot_spte', // one SPTE write-protected / D-cleared by a walk
  'split_huge', // one huge SPTE split into a child table
  'recover_huge', // one huge SPTE rebuilt in place / collapsible zap
  'folio_mark_dirty',
] as const;

export type OpName = (typeof kOpNames)[number];
export const kOpCount = kOpNames.length;
export const kOp: { readonly [K in OpName]: number } = Object.fromEntries(kOpNames.map((n, i) => [n, i])) as never;

export const kOpGuestAccess = kOp.guest_access;
export const kOpTlbHit = kOp.tlb_hit;
export const kOpTlbMiss = kOp.tlb_miss;
export const kOpWalkStep = kOp.walk_step;
export const kOpVmExit = kOp.vm_exit;
export const kOpSpteRead = kOp.spte_read;
export const kOpSpteWrite = kOp.spte_write;
export const kOpSpteCmpxchg = kOp.spte_cmpxchg;
export const kOpSpteCmpxchgFail = kOp.spte_cmpxchg_fail;
export const kOpPtPageAlloc = kOp.pt_page_alloc;
export const kOpPtPageFree = kOp.pt_page_free;
export const kOpTlbFlushRequest = kOp.tlb_flush_request;
export const kOpTlbFlushVcpu = kOp.tlb_flush_vcpu;
export const kOpLockRead = kOp.lock_read;
export const kOpLockWrite = kOp.lock_write;
export const kOpLockWaitNs = kOp.lock_wait_ns;
export const kOpHostFault = kOp.host_fault;
export const kOpPageZero4k = kOp.page_zero_4k;
export const kOpFrameAlloc = kOp.frame_alloc;
export const kOpFrameFree = kOp.frame_free;
export const kOpMemslotLookup = kOp.memslot_lookup;
export const kOpFaultRetry = kOp.fault_retry;
export const kOpInvalidate = kOp.invalidate;
export const kOpBitmapWord = kOp.bitmap_word;
export const kOpDirtyMark = kOp.dirty_mark;
export const kOpPmlLog = kOp.pml_log;
export const kOpPmlFlush = kOp.pml_flush;
export const kOpRingPush = kOp.ring_push;
export const kOpRingResetEntry = kOp.ring_reset_entry;
export const kOpRingFullExit = kOp.ring_full_exit;
export const kOpWrprotSpte = kOp.wrprot_spte;
export const kOpSplitHuge = kOp.split_huge;
export const kOpRecoverHuge = kOp.recover_huge;
export const kOpFolioMarkDirty = kOp.folio_mark_dirty;
