/**
 * A vCPU's software TLB: direct-mapped, gfn -> (pfn, SPTE flags), tagged with a generation so
 * a flush (KVM_REQ_TLB_FLUSH honoured at the next entry) is one increment. Filled only by a
 * successful walk, so a translation the TLB holds was present at fill time: writing through it
 * after a zap's flush has completed is exactly the bug the oracles look for.
 */
import { VcpuLayout } from '../vcpu-layout.js';
import { Spte } from './spte.js';

/** pfn for gfn if cached with sufficient permission, else -1. */
export function tlbLookup(w: Int32Array, gfn: number, write: boolean): number {
  const e = VcpuLayout.kTlbBase + (gfn & (VcpuLayout.kTlbEntries - 1)) * VcpuLayout.kTlbWords;
  if (w[e + VcpuLayout.kTlbGfn] !== gfn || w[e + VcpuLayout.kTlbGenWord] !== w[VcpuLayout.kVcpuTlbGen]) return -1;
  // A store needs W, and D already set: with D clear the CPU walks to set it (what PML logs).
  if (write && (w[e + VcpuLayout.kTlbFlags]! & (Spte.PT_WRITABLE_MASK | Spte.SPTE_DIRTY)) !== (Spte.PT_WRITABLE_MASK | Spte.SPTE_DIRTY)) return -1;
  return w[e + VcpuLayout.kTlbPfn]!;
}

/** The SPTE flags of gfn's entry (the one a hit just used; the store oracle reads kSptePrivate). */
export function tlbFlagsOf(w: Int32Array, gfn: number): number {
  return w[VcpuLayout.kTlbBase + (gfn & (VcpuLayout.kTlbEntries - 1)) * VcpuLayout.kTlbWords + VcpuLayout.kTlbFlags]!;
}

export function tlbFill(w: Int32Array, gfn: number, pfn: number, flags: number): void {
  const e = VcpuLayout.kTlbBase + (gfn & (VcpuLayout.kTlbEntries - 1)) * VcpuLayout.kTlbWords;
  w[e + VcpuLayout.kTlbGfn] = gfn;
  w[e + VcpuLayout.kTlbPfn] = pfn;
  w[e + VcpuLayout.kTlbFlags] = flags;
  w[e + VcpuLayout.kTlbGenWord] = w[VcpuLayout.kVcpuTlbGen]!;
}

/** Drop every translation (a new generation; entries of older ones never match). */
export function tlbFlushAll(w: Int32Array): void {
  w[VcpuLayout.kVcpuTlbGen] = (w[VcpuLayout.kVcpuTlbGen]! + 1) | 0;
  // INVEPT drops the paging-structure caches with the TLB.
  w[VcpuLayout.kVcpuPscGen] = (w[VcpuLayout.kVcpuPscGen]! + 1) | 0;
}
