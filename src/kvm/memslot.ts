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

export interface MemslotHandle {
  readonly id: number;
  readonly asId: number;
  readonly flags: number;
  readonly baseGfn: number;
  readonly npages: number;
  readonly userspaceAddr: number;
  readonly vmaId: number;
  readonly lpage: SharedArrayBuffer[];
  readonly dirtyBitmap: SharedArrayBuffer | null;
}

export class Memslot {
  readonly id: number;
  readonly asId: number;
  flags: number;
  readonly baseGfn: number;
  readonly npages: number;
  readonly userspaceAddr: number;
  readonly lpage: Int32Array[];
  dirtyBitmap: Int32Array | null;
  /** Page index into the VMA of the slot's first gfn; -1 when no VMA covers the slot. */
  readonly vmaOffset: number;

  constructor(readonly handle: MemslotHandle, readonly vma: Vma | null) {
    this.id = handle.id;
    this.asId = handle.asId;
    this.flags = handle.flags;
    this.baseGfn = handle.baseGfn;
    this.npages = handle.npages;
    this.userspaceAddr = handle.userspaceAddr;
    this.lpage = handle.lpage.map((s) => new Int32Array(s));
    this.dirtyBitmap = handle.dirtyBitmap ? new Int32Array(handle.dirtyBitmap) : null;
    this.vmaOffset = vma ? handle.userspaceAddr / 4096 - vma.startPage : -1;
  }

  static createHandle(
    id: number, asId: number, flags: number, baseGfn: number, npages: number, userspaceAddr: number, vmaId: number,
  ): MemslotHandle {
    return {
      id, asId, flags, baseGfn, npages, userspaceAddr, vmaId,
      lpage: allocLpageInfo(baseGfn, npages, Math.floor(userspaceAddr / 4096)),
      dirtyBitmap: flags & KVM_MEM_LOG_DIRTY_PAGES ? allocDirtyBitmap(npages) : null,
    };
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
  dirtyLogging(): boolean {
    return (this.flags & KVM_MEM_LOG_DIRTY_PAGES) !== 0;
  }
}

/** One bit per page, in 64-bit words (two Int32 each) as KVM's bitmap, rounded up. */
export function allocDirtyBitmap(npages: number): SharedArrayBuffer {
  return allocSab(Math.ceil(npages / 64) * 8);
}
