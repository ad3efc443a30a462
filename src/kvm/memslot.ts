/**
 * Memslots: KVM_SET_USER_MEMORY_REGION2's objects. A slot maps guest frames [base_gfn,
 * base_gfn + npages) to the VMM's address space at userspace_addr; lpage_info and (when
 * logging) the dirty bitmap hang off it.
 */
import { allocSab } from '../shm/arena.js';
import type { Vma } from '../host/mm.js';
import { allocLpageInfo } from './mmu/lpage.js';

export const KVM_MEM_LOG_DIRTY_PAGES = 1 << 0;
export const KVM_MEM_READONLY = 1 << 1;
export const KVM_MEM_GUEST_MEMFD = 1 << 2;
export const kValidMemslotFlags = KVM_MEM_LOG_DIRTY_PAGES | KVM_MEM_READONLY;

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

export interface MemslotHandle {
  readonly id: number;
  readonly asId: number;
  /** The slot's shared words: [0] flags (toggled by flags-only updates while vCPUs run). */
  readonly words: SharedArrayBuffer;
  readonly baseGfn: number;
  readonly npages: number;
  readonly userspaceAddr: number;
  readonly vmaId: number;
  readonly lpage: SharedArrayBuffer[];
  /**
   * Allocated with the slot (1 bit per page) rather than when logging starts, so that toggling
   * logging never replaces a SAB under running workers.
   */
  readonly dirtyBitmap: SharedArrayBuffer;
}

export class Memslot {
  readonly id: number;
  readonly asId: number;
  readonly words: Int32Array;
  readonly baseGfn: number;
  readonly npages: number;
  readonly userspaceAddr: number;
  readonly lpage: Int32Array[];
  readonly dirtyBitmap: Int32Array;
  /** Page index into the VMA of the slot's first gfn; -1 when no VMA covers the slot. */
  readonly vmaOffset: number;

  constructor(readonly handle: MemslotHandle, readonly vma: Vma | null) {
    this.id = handle.id;
    this.asId = handle.asId;
    this.words = new Int32Array(handle.words);
    this.baseGfn = handle.baseGfn;
    this.npages = handle.npages;
    this.userspaceAddr = handle.userspaceAddr;
    this.lpage = handle.lpage.map((s) => new Int32Array(s));
    this.dirtyBitmap = new Int32Array(handle.dirtyBitmap);
    this.vmaOffset = vma ? handle.userspaceAddr / 4096 - vma.startPage : -1;
  }

  /**
   * A new slot's state. lpage_info is always computed afresh (kvm_alloc_memslot_metadata() runs
   * for KVM_MR_CREATE and KVM_MR_MOVE, since the disallow counts depend on base_gfn); the dirty
   * bitmap is `dirtyBitmap` when given (a move of a logging slot keeps the old one).
   */
  static createHandle(
    id: number, asId: number, flags: number, baseGfn: number, npages: number, userspaceAddr: number, vmaId: number,
    dirtyBitmap: SharedArrayBuffer = allocDirtyBitmap(npages),
  ): MemslotHandle {
    const words = allocSab(8);
    new Int32Array(words)[0] = flags;
    return {
      id, asId, words, baseGfn, npages, userspaceAddr, vmaId,
      lpage: allocLpageInfo(baseGfn, npages, Math.floor(userspaceAddr / 4096)),
      dirtyBitmap,
    };
  }

  get flags(): number {
    return this.words[0]!;
  }
  setFlags(flags: number): void {
    Atomics.store(this.words, 0, flags);
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

/** One bit per page, in 64-bit words (two Int32 each) as KVM's bitmap, rounded up. */
export function allocDirtyBitmap(npages: number): SharedArrayBuffer {
  return allocSab(Math.ceil(npages / 64) * 8);
}
