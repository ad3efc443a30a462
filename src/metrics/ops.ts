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
  'mmio_exit', // an access emulated (x86_emulate_instruction) and completed by the VMM: KVM_EXIT_MMIO round trip
  // userfaultfd (appended: earlier ids, and so every existing count and modeled time, stay as they were)
  'uffd_fault', // handle_userfault(): queue the fault message, wake a reader, schedule out (faulting thread)
  'uffd_resume', // the faulting thread woken by wake_userfault(), scheduled back in; GUP retries
  'uffd_read', // a reader's epoll_wait() + read() of one uffd_msg
  'uffd_copy', // UFFDIO_COPY ioctl: mfill_atomic() allocates, maps the range (the copy is page_copy_4k)
  'page_copy_4k', // 4K copied from the VMM's source buffer by UFFDIO_COPY
  'uffd_continue', // UFFDIO_CONTINUE ioctl: map the page-cache page(s) of the range
  'uffd_eexist', // a UFFDIO_COPY / CONTINUE that found the range already mapped (-EEXIST, nothing woken)
  'uffd_wake', // wake_userfault() after a resolution: the wait-queue walk and the wake of the thread(s) found
  'uffd_wake_scan', // one wait-queue entry __wake_up_locked_key() examined (reported, never priced: it depends on the interleaving)
  'uffd_delay_ns', // the reader's -d usleep(), one count per ns: a duration, always priced 1 ns
  // memslot updates (appended after the userfaultfd ops)
  'srcu_sync', // synchronize_srcu_expedited(&kvm->srcu): a memslot set swap's grace period
  'memslot_update', // one KVM_SET_USER_MEMORY_REGION2 (kvm_set_memslot()'s bookkeeping)
  'vmm_access', // one VMM load/store to guest memory through its own mapping (a selftest's host-side checks)
  'attr_xa_load', // xa_load of kvm->mem_attr_array (the VM attribute path), one per gfn looked up
  'attr_xa_reserve', // xa_reserve of one gfn before an attribute change
  'attr_xa_store', // xa_store of one gfn's attributes
  'attr_mt_load', // maple-tree lookup of a guest_memfd's shareability (the 2026 path)
  'attr_mt_store', // one mas_store_range() of a shareability range
  'attr_mt_entry', // one maple-tree entry a range store replaced or created
  'gmem_get_pfn', // kvm_gmem_get_pfn(): filemap lookup of the folio
  'gmem_host_fault', // a host access through the guest_memfd mmap (kvm_gmem_fault_user_mapping)
  'gmem_punch', // fallocate(PUNCH_HOLE) on a guest_memfd: truncate of the range
  'gmem_eagain', // a conversion refused with EAGAIN (lru_add_drain_all() then the refcount check)
  'folio_split', // one split_folio() / folio restructuring call
  'folio_merge', // one folio merge (restructuring) call
  'folio_split_page', // one struct page rewritten by a split or merge
  'userspace_exit', // KVM_RUN returning to userspace and re-entering (hypercall and memory-fault exits)
  // the shadow MMU and the modeled mmu_lock (appended: earlier ids and counts stay as they were)
  'guest_pte_read', // one guest page-table entry KVM's walker read (FNAME(walk_addr_generic)): a guest-memory load through the memslot's hva
  'guest_pte_ad', // a cmpxchg setting A/D in a guest PTE (FNAME(update_accessed_dirty_bits))
  'mmu_hash_probe', // one shadow page examined in an mmu_page_hash bucket (kvm_mmu_find_shadow_page)
  'rmap_add', // pte_list_add of an SPTE to a gfn's rmap
  'rmap_remove', // pte_list_remove of an SPTE from a gfn's rmap
  'rmap_entry', // one SPTE an rmap walk visited (write-protect, clear dirty, zap, age by gfn)
  'write_track', // a gfn write-tracked or untracked for a shadowed guest page table (lpage disallow + track count)
  'emulate_pt_write', // a guest store to a write-protected page-table page emulated (x86_emulate_instruction + kvm_mmu_track_write)
  'lock_wait_modeled_ns', // modeled ns a vCPU waited for mmu_lock on the modeled-time lock timeline, one count per ns: always priced 1
  'rmap_alloc_4k', // 4K of rmap heads allocated and zeroed (memslot_rmap_alloc's kvcalloc)
] as const;

export type OpName = (typeof kOpNames)[number];
export const kOpCount = kOpNames.length;
export const kOp: { readonly [K in OpName]: number } = Object.fromEntries(kOpNames.map((n, i) => [n, i])) as never;

/**
 * Op ids as a const enum, in kOpNames order (a test checks the two agree): tsc inlines
 * `Op.tlb_hit` as a literal, where an imported `const` would be a module-binding load with a
 * TDZ check on every count() in the fault path (V8 does not fold ESM bindings).
 */
export const enum Op {
  guest_access = 0,
  tlb_hit = 1,
  tlb_miss = 2,
  walk_step = 3,
  vm_exit = 4,
  spte_read = 5,
  spte_write = 6,
  spte_cmpxchg = 7,
  spte_cmpxchg_fail = 8,
  pt_page_alloc = 9,
  pt_page_free = 10,
  tlb_flush_request = 11,
  tlb_flush_vcpu = 12,
  lock_read = 13,
  lock_write = 14,
  lock_wait_ns = 15,
  host_fault = 16,
  page_zero_4k = 17,
  frame_alloc = 18,
  frame_free = 19,
  memslot_lookup = 20,
  fault_retry = 21,
  invalidate = 22,
  bitmap_word = 23,
  dirty_mark = 24,
  pml_log = 25,
  pml_flush = 26,
  ring_push = 27,
  ring_reset_entry = 28,
  ring_full_exit = 29,
  wrprot_spte = 30,
  split_huge = 31,
  recover_huge = 32,
  folio_mark_dirty = 33,
  mmio_exit = 34,
  uffd_fault = 35,
  uffd_resume = 36,
  uffd_read = 37,
  uffd_copy = 38,
  page_copy_4k = 39,
  uffd_continue = 40,
  uffd_eexist = 41,
  uffd_wake = 42,
  uffd_wake_scan = 43,
  uffd_delay_ns = 44,
  srcu_sync = 45,
  memslot_update = 46,
  vmm_access = 47,
  attr_xa_load = 48,
  attr_xa_reserve = 49,
  attr_xa_store = 50,
  attr_mt_load = 51,
  attr_mt_store = 52,
  attr_mt_entry = 53,
  gmem_get_pfn = 54,
  gmem_host_fault = 55,
  gmem_punch = 56,
  gmem_eagain = 57,
  folio_split = 58,
  folio_merge = 59,
  folio_split_page = 60,
  userspace_exit = 61,
  guest_pte_read = 62,
  guest_pte_ad = 63,
  mmu_hash_probe = 64,
  rmap_add = 65,
  rmap_remove = 66,
  rmap_entry = 67,
  write_track = 68,
  emulate_pt_write = 69,
  lock_wait_modeled_ns = 70,
  rmap_alloc_4k = 71,
}
