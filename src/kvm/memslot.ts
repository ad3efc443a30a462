/**
 * Memslots: KVM_SET_USER_MEMORY_REGION2's objects. A slot maps guest frames [base_gfn,
 * base_gfn + npages) to the VMM's address space at userspace_addr; lpage_info and (when
 * logging) the dirty bitmap hang off it.
 */
import type { Vma } from '../host/mm.js';
import { GUEST_MEMFD_FLAG_MMAP, type GmemFile } from '../gmem/gmem-file.js';

export const KVM_MEM_LOG_DIRTY_PAGES = 1 << 0;
export const KVM_MEM_READONLY = 1 << 1;
export const KVM_MEM_GUEST_MEMFD = 1 << 2;
export const kValidMemslotFlags = KVM_MEM_LOG_DIRTY_PAGES | KVM_MEM_READONLY | KVM_MEM_GUEST_MEMFD;

/** x86: KVM_USER_MEM_SLOTS (KVM_MEM_SLOTS_NUM 32767 minus the private slots). */
export const KVM_USER_MEM_SLOTS = 32764;
/** x86 with SMM: two address spaces. */
export const KVM_ADDRESS_SPACE_NUM = 2;
/**
 * Guest frames stay below 2^30 (a 42-bit, 4 TiB guest physical space per VM) so every gfn is a
 * small integer for V8 (Smi): a gfn that needs a heap number costs an allocation per access.
 */
export const kMaxGfn = 2 ** 30 - 1;
export const kGuestPhysBits = 42;
/**
 * x86-64 TASK_SIZE_MAX with 4-level paging, (1 << 47) - PAGE_SIZE: USER_PTR_MAX, the limit
 * access_ok() checks. __kvm_set_memory_region() refuses a userspace_addr range that ends above
 * it (EINVAL), so guest memory can always be reached with __copy_{to,from}_user().
 */
export const TASK_SIZE_MAX = 2 ** 47 - 4096;

/**
 * KVM_MEMSLOT_INVALID (bit 16, a kernel-internal flag): the slot is being deleted or moved
 * (kvm_invalidate_memslot()). Faults on it retry until the update is done, so nothing new is
 * mapped for it between kvm_arch_flush_shadow_memslot() and the slot's removal.
 */
export const KVM_MEMSLOT_INVALID = 1 << 16;

/**
 * One thread's view of a memslot (struct kvm_memory_slot): the fields of its shared record
 * (memslots.ts), its lpage_info and dirty bitmap as views into the VM's memslot arena. Built by
 * any thread from the record; `serial` tells a thread's cache that the record was reused.
 */
export class Memslot {
  /** Page index into the VMA of the slot's first gfn; -1 when no VMA covers the slot. */
  readonly vmaOffset: number;

  constructor(
    /** Index of the slot's record in the VM's memslot table. */
    readonly rec: number,
    readonly serial: number,
    /** The record's words: [0] flags (toggled by flags-only updates while vCPUs run). */
    readonly words: Int32Array,
    readonly id: number,
    readonly asId: number,
    readonly baseGfn: number,
    readonly npages: number,
    readonly userspaceAddr: number,
    readonly lpage: Int32Array[],
    /**
     * Allocated with the slot (1 bit per page) rather than when logging starts, so that toggling
     * logging never replaces memory under running workers.
     */
    readonly dirtyBitmap: Int32Array,
    readonly vma: Vma | null,
    /** The guest_memfd bound with KVM_MEM_GUEST_MEMFD, or null. */
    readonly gmem: GmemFile | null = null,
    /** guest_memfd_offset in pages: the file page of base_gfn. */
    readonly gmemPgoff = 0,
  ) {
    this.vmaOffset = vma ? userspaceAddr / 4096 - vma.startPage : -1;
    // kvm_memslot_is_gmem_only(): a file the host can mmap serves shared faults too.
    this.gmemOnly = gmem !== null && (gmem.flags & GUEST_MEMFD_FLAG_MMAP) !== 0;
  }

  /** Shared faults resolve through the guest_memfd (GUEST_MEMFD_FLAG_MMAP), not userspace_addr. */
  readonly gmemOnly: boolean;

  get flags(): number {
    return this.words[0]!;
  }
  setFlags(flags: number): void {
    Atomics.store(this.words, 0, flags);
  }
  /** kvm_invalidate_memslot()'s copy with KVM_MEMSLOT_INVALID, here the flag set in place. */
  invalid(): boolean {
    return (this.words[0]! & KVM_MEMSLOT_INVALID) !== 0;
  }

  get endGfn(): number {
    return this.baseGfn + this.npages;
  }
  contains(gfn: number): boolean {
    return gfn >= this.baseGfn && gfn < this.baseGfn + this.npages;
  }
  /** The `slot` field of uAPI structs: as_id << 16 | id. */
  get slotId(): number {
    return (this.asId << 16) | this.id;
  }
  /** kvm_slot_dirty_track_enabled(); a plain read, as KVM reads slot->flags. */
  dirtyLogging(): boolean {
    return (this.words[0]! & KVM_MEM_LOG_DIRTY_PAGES) !== 0;
  }
}

/** Int32 words of a dirty bitmap: one bit per page, in 64-bit words as KVM's bitmap, rounded up. */
export function dirtyBitmapWords(npages: number): number {
  return Math.ceil(npages / 64) * 2;
}
