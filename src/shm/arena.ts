/**
 * SharedArrayBuffer arenas: the only way state crosses threads in the harness.
 *
 * A structure that lives in shared memory is described by a layout module (k-prefixed offsets)
 * and reached through views that every thread builds from the same SABs after `attach()`.
 * Arrays larger than one typed array should hold are split into chunks of at most 1 GiB
 * (`ChunkedInt32`), so guest memory can grow past typed-array and allocation limits.
 */

export const enum Arena {
  /** Bytes between hot words written by different threads: false sharing costs ~3x here. */
  kCacheLinePad = 128,
  /** Int32 slots per padded line. */
  kPadWords = Arena.kCacheLinePad / 4,
  /** Largest single SAB this harness creates. */
  kMaxChunkBytes = 1 << 30,
}

export function allocSab(bytes: number): SharedArrayBuffer {
  if (!Number.isFinite(bytes) || bytes < 0) throw new RangeError(`bad SAB size ${bytes}`);
  // Round up to 8 so Float64 views always fit.
  return new SharedArrayBuffer(Math.max(8, Math.ceil(bytes / 8) * 8));
}

/**
 * Back bytes [from, to) of a SAB now, one store per 4 KiB page (the pages are still zero). The
 * kernel's own memory is backed when it is allocated (memmap at boot, vmalloc'd and page-allocator
 * pages at once); a SAB page is backed at its first touch, a host page fault that would otherwise
 * land inside a vCPU's fault on whichever worker touches it first, and that two workers of one
 * process take under the same mm. Only for state whose whole size a run uses (RSS is then what it
 * would be at the end anyway).
 */
export function populateSab(sab: SharedArrayBuffer, from = 0, to = sab.byteLength): void {
  // Offsets reach 4 GiB (a growable pool): arithmetic, not 32-bit bit operations.
  const start = Math.floor(from / 4) * 4;
  const words = Math.floor((Math.min(to, sab.byteLength) - start) / 4);
  if (words <= 0) return;
  const v = new Int32Array(sab, start, words);
  for (let i = 0; i < words; i += 1024) v[i] = 0;
}

/** The transferable description of a chunked Int32 array. */
export interface ChunkedInt32Handle {
  readonly chunks: SharedArrayBuffer[];
  readonly length: number;
  readonly chunkShift: number;
}

/**
 * An Int32 array split over SAB chunks of 2^chunkShift elements each. `elemsPerItem` lets callers
 * keep whole records inside one chunk (chunk size is a multiple of it by construction).
 */
export class ChunkedInt32 {
  readonly chunks: Int32Array[];
  readonly length: number;
  readonly chunkShift: number;
  readonly chunkMask: number;

  constructor(readonly handle: ChunkedInt32Handle) {
    this.chunks = handle.chunks.map((b) => new Int32Array(b));
    this.length = handle.length;
    this.chunkShift = handle.chunkShift;
    this.chunkMask = (1 << handle.chunkShift) - 1;
  }

  static create(length: number, maxChunkElems = Arena.kMaxChunkBytes / 4): ChunkedInt32 {
    let shift = 0;
    while (1 << (shift + 1) <= maxChunkElems) shift++;
    const per = 1 << shift;
    const chunks: SharedArrayBuffer[] = [];
    for (let off = 0; off < length; off += per) chunks.push(allocSab(Math.min(per, length - off) * 4));
    return new ChunkedInt32({ chunks, length, chunkShift: shift });
  }

  get(i: number): number {
    return this.chunks[i >>> this.chunkShift]![i & this.chunkMask]!;
  }
  set(i: number, v: number): void {
    this.chunks[i >>> this.chunkShift]![i & this.chunkMask] = v;
  }
  byteLength(): number {
    return this.length * 4;
  }
}

/**
 * A growable SAB (ES2024 resizable buffers, in Node 20): address space reserved for `maxBytes`,
 * `bytes` usable now; grown in place (no copy, nothing moves), never shrunk. V8 limits
 * maxBytes to 4 GiB. Views over it should be fixed-length (a length-tracking view costs ~4x per
 * element access in Node 20's V8), re-created by each thread once it knows the buffer grew.
 */
export function allocGrowableSab(bytes: number, maxBytes: number): SharedArrayBuffer {
  const Ctor = SharedArrayBuffer as unknown as new (n: number, o: { maxByteLength: number }) => SharedArrayBuffer;
  return new Ctor(Math.max(8, Math.ceil(bytes / 8) * 8), { maxByteLength: Math.ceil(maxBytes / 8) * 8 });
}

/** Grow a growable SAB in place to at least `bytes` (rounded up to 8). */
export function growSab(sab: SharedArrayBuffer, bytes: number): void {
  const b = Math.ceil(bytes / 8) * 8;
  if (b > sab.byteLength) (sab as unknown as { grow(n: number): void }).grow(b);
}
