/**
 * A vCPU's software TLB: direct-mapped, gfn -> (pfn, SPTE flags), tagged with a generation so
 * a flush (KVM_REQ_TLB_FLUSH honoured at the next entry) is one increment. Filled only by a
 * successful walk, so a translation the TLB holds was present at fill time: writing through it
 * after a zap's flush has completed is exactly the bug the oracles look for.
 */
import { kTlbBase, kTlbEntries, kTlbFlags, kTlbGenWord, kTlbGfn, kTlbPfn, kTlbWords, kVcpuTlbGen } from '../vcpu-layout.js';
import { PT_WRITABLE_MASK, SPTE_DIRTY } from './spte.js';

/** pfn for gfn if cached with sufficient permission, else -1. */
export function tlbLookup(w: Int32Array, gfn: number, write: boolean): number {
  const e = kTlbBase + (gfn & (kTlbEntries - 1)) * kTlbWords;
  if (w[e + kTlbGfn] !== gfn || w[e + kTlbGenWord] !== w[kVcpuTlbGen]) return -1;
  // A store needs W, and D already set: with D clear the CPU walks to set it (what PML logs).
  if (write && (w[e + kTlbFlags]! & (PT_WRITABLE_MASK | SPTE_DIRTY)) !== (PT_WRITABLE_MASK | SPTE_DIRTY)) return -1;
  return w[e + kTlbPfn]!;
}

export function tlbFill(w: Int32Array, gfn: number, pfn: number, flags: number): void {
  const e = kTlbBase + (gfn & (kTlbEntries - 1)) * kTlbWords;
  w[e + kTlbGfn] = gfn;
  w[e + kTlbPfn] = pfn;
  w[e + kTlbFlags] = flags;
  w[e + kTlbGenWord] = w[kVcpuTlbGen]!;
}

/** Drop every translation (a new generation; entries of older ones never match). */
export function tlbFlushAll(w: Int32Array): void {
  w[kVcpuTlbGen] = (w[kVcpuTlbGen]! + 1) | 0;
}
