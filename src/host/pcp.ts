/**
 * Per-thread page caches for order-0 frames (the kernel's per-cpu pageset): a thread refills
 * `kPcpBatch` frames under the zone lock at once and frees into its cache, so a 4K fault takes
 * no shared lock in the common case. Every thread drains its caches before it reports (end of a
 * task, end of a VMM-side call), so the audit's free + owned + hugetlb = total holds whenever
 * nothing runs. (Counting cached frames exactly would need a shared atomic per allocation.)
 */
import type { Zone } from './buddy.js';

export const enum Pcp {
  kPcpBatch = 64,
  kPcpBlockOrder = 6,
  kPcpHigh = 4 * Pcp.kPcpBatch,
}

export class PcpCache {
  readonly pfns: Int32Array = new Int32Array(Pcp.kPcpHigh + Pcp.kPcpBatch);
  count = 0;
  constructor(readonly zone: Zone) {}

  alloc(): number {
    if (this.count === 0 && !this.refill()) return -1;
    return this.pfns[--this.count]!;
  }

  free(pfn: number): void {
    this.pfns[this.count++] = pfn;
    if (this.count > Pcp.kPcpHigh) this.drain(Pcp.kPcpBatch);
  }

  private refill(): boolean {
    const z = this.zone;
    z.lock();
    let n = 0;
    // One 64-page block when the zone has one (rmqueue_bulk takes many at once too).
    const block = z.allocLocked(Pcp.kPcpBlockOrder);
    if (block >= 0) {
      for (; n < Pcp.kPcpBatch; n++) this.pfns[Pcp.kPcpBatch - 1 - n] = block + n;
    }
    for (; n < Pcp.kPcpBatch; n++) {
      const pfn = z.allocLocked(0);
      if (pfn < 0) break;
      // Fill in descending order so pops hand out ascending pfns.
      this.pfns[Pcp.kPcpBatch - 1 - n] = pfn;
    }
    if (n > 0 && n < Pcp.kPcpBatch) this.pfns.copyWithin(0, Pcp.kPcpBatch - n, Pcp.kPcpBatch);
    z.unlock();
    this.count = n;
    return n > 0;
  }

  drain(n = this.count): void {
    if (n === 0) return;
    const z = this.zone;
    z.lock();
    for (let i = 0; i < n; i++) z.freeLocked(this.pfns[--this.count]!, 0);
    z.unlock();
  }
}
