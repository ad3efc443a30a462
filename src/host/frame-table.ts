/**
 * The host's frame table, one record per 4 KiB frame (KVM's `struct page` stand-in), over
 * chunked SABs. Two Int32 words per frame:
 *
 *   word 0  refcount: host mappings (VMA page-table entries) that reference the folio; kept on
 *           the folio's head frame only
 *   word 1  meta: bits 0..4 folio order, bits 5..9 flags, bits 10..15 NUMA node,
 *           bits 16..31 owner (0 = none; the VMM process, i.e. the VM, that mapped it)
 *
 * Optional content stamps (two Int32 per frame: writer id, iteration) live in a second chunked
 * array and are allocated only when the host is created with `stamps: true`, so the 4K-mapped
 * footprint stays at 8 bytes per frame without them.
 */
import { ChunkedInt32, populateSab, type ChunkedInt32Handle } from '../shm/arena.js';

export const enum FrameLayout {
  kFrameWords = 2,
  kFrameRefcount = 0,
  kFrameMeta = 1,
  kMetaOrderMask = 0x1f,
  kMetaHugetlb = 1 << 5,
  kMetaHead = 1 << 6,
  /** folio_mark_dirty(): the folio has data the host must write back / migrate. */
  kMetaDirty = 1 << 7,
  kMetaNodeShift = 10,
  kMetaNodeMask = 0x3f,
  kMetaOwnerShift = 16,
  kStampWords = 2,
  kStampWriter = 0,
  kStampIteration = 1,
}



export interface FrameTableHandle {
  readonly frames: ChunkedInt32Handle;
  readonly stamps: ChunkedInt32Handle | null;
  readonly nframes: number;
}

export class FrameTable {
  readonly frames: ChunkedInt32;
  readonly stamps: ChunkedInt32 | null;
  readonly nframes: number;
  /** Frames per chunk is a power of two; a frame's two words never straddle chunks. */
  readonly shift: number;
  readonly mask: number;

  constructor(readonly handle: FrameTableHandle) {
    this.frames = new ChunkedInt32(handle.frames);
    this.stamps = handle.stamps ? new ChunkedInt32(handle.stamps) : null;
    this.nframes = handle.nframes;
    this.shift = this.frames.chunkShift - 1;
    this.mask = (1 << this.shift) - 1;
  }

  static create(nframes: number, stamps: boolean): FrameTable {
    const frames = ChunkedInt32.create(nframes * FrameLayout.kFrameWords);
    // memmap_init(): the kernel's struct page array is populated at boot, not on first use.
    // Backing it here keeps the host's page faults on the frame table out of vCPU fault time,
    // where two workers allocating neighbouring frames would also contend on the same mm.
    for (const c of frames.chunks) populateSab(c.buffer as SharedArrayBuffer);
    const st = stamps ? ChunkedInt32.create(nframes * FrameLayout.kStampWords) : null;
    return new FrameTable({ frames: frames.handle, stamps: st ? st.handle : null, nframes });
  }

  chunk(pfn: number): Int32Array {
    return this.frames.chunks[pfn >>> this.shift]!;
  }
  /** Word index of a frame's record inside its chunk. */
  slot(pfn: number): number {
    return (pfn & this.mask) * FrameLayout.kFrameWords;
  }

  meta(pfn: number): number {
    return Atomics.load(this.chunk(pfn), this.slot(pfn) + FrameLayout.kFrameMeta);
  }
  refcount(pfn: number): number {
    return Atomics.load(this.chunk(pfn), this.slot(pfn) + FrameLayout.kFrameRefcount);
  }
  order(pfn: number): number {
    return this.meta(pfn) & FrameLayout.kMetaOrderMask;
  }
  owner(pfn: number): number {
    return this.meta(pfn) >>> FrameLayout.kMetaOwnerShift;
  }
  /** Head frame of the folio containing pfn (folios are naturally aligned). */
  head(pfn: number): number {
    const order = this.order(pfn);
    return pfn - (pfn & ((1 << order) - 1));
  }

  /** Stamp every frame of a folio with its order/flags/node/owner; refcount on the head. */
  initFolio(pfn: number, order: number, flags: number, node: number, owner: number, refcount: number): void {
    const meta = order | flags | (node << FrameLayout.kMetaNodeShift) | (owner << FrameLayout.kMetaOwnerShift);
    const n = 1 << order;
    for (let i = 0; i < n; i++) {
      const c = this.chunk(pfn + i);
      const s = this.slot(pfn + i);
      c[s + FrameLayout.kFrameMeta] = i === 0 ? meta | FrameLayout.kMetaHead : meta;
      c[s + FrameLayout.kFrameRefcount] = i === 0 ? refcount : 0;
    }
  }

  /**
   * folio_mark_dirty() on the folio holding pfn. A plain read-modify-write: besides alloc/free
   * (initFolio, which never races with a mapped folio), setting this one bit is the only write
   * a meta word sees, so racing markers all store the same value and no update can be lost.
   */
  markDirty(pfn: number): void {
    let c = this.chunk(pfn);
    let s = this.slot(pfn) + FrameLayout.kFrameMeta;
    let meta = c[s]!;
    const order = meta & FrameLayout.kMetaOrderMask;
    if (order !== 0) {
      const head = pfn - (pfn & ((1 << order) - 1));
      c = this.chunk(head);
      s = this.slot(head) + FrameLayout.kFrameMeta;
      meta = c[s]!;
    }
    if ((meta & FrameLayout.kMetaDirty) === 0) c[s] = meta | FrameLayout.kMetaDirty;
  }
  isDirty(pfn: number): boolean {
    return (this.meta(this.head(pfn)) & FrameLayout.kMetaDirty) !== 0;
  }

  addRef(head: number, delta: number): number {
    return Atomics.add(this.chunk(head), this.slot(head) + FrameLayout.kFrameRefcount, delta) + delta;
  }

  writeStamp(pfn: number, writer: number, iteration: number): void {
    const st = this.stamps;
    if (st === null) return;
    const i = pfn * FrameLayout.kStampWords;
    const c = st.chunks[i >>> st.chunkShift]!;
    const o = i & st.chunkMask;
    Atomics.store(c, o + FrameLayout.kStampWriter, writer);
    Atomics.store(c, o + FrameLayout.kStampIteration, iteration);
  }
  readStampIteration(pfn: number): number {
    const st = this.stamps;
    if (st === null) return -1;
    const i = pfn * FrameLayout.kStampWords;
    return Atomics.load(st.chunks[i >>> st.chunkShift]!, (i & st.chunkMask) + FrameLayout.kStampIteration);
  }
  readStampWriter(pfn: number): number {
    const st = this.stamps;
    if (st === null) return -1;
    const i = pfn * FrameLayout.kStampWords;
    return Atomics.load(st.chunks[i >>> st.chunkShift]!, (i & st.chunkMask) + FrameLayout.kStampWriter);
  }
  clearStamps(pfn: number, n: number): void {
    if (this.stamps === null) return;
    for (let i = 0; i < n; i++) this.writeStamp(pfn + i, 0, 0);
  }

  bytes(): number {
    return this.frames.byteLength() + (this.stamps ? this.stamps.byteLength() : 0);
  }
}
