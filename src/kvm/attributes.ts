/**
 * Memory attributes (KVM_MEMORY_ATTRIBUTE_PRIVATE) and the mixed-attribute huge-page flags.
 *
 * Two paths, one per VM (KVM: one per loaded module, mutually exclusive):
 *  - 'vm', the 6.8 path: KVM_SET_MEMORY_ATTRIBUTES on the VM fd, attributes per gfn in
 *    kvm->mem_attr_array (an xarray). Here a VM-wide bitmap over the 4 TiB guest physical space
 *    (128 MiB of SAB, committed only where written), 1 bit per gfn; modeled time counts what
 *    the xarray does: xa_reserve + xa_store per gfn on a change, xa_load per lookup.
 *  - 'gmem', the 2026 path: KVM_SET_MEMORY_ATTRIBUTES2 on the guest_memfd (guest_memfd.ts); the
 *    file's shareability is the attribute, stored per page in the file (gmem-file.ts) and priced
 *    as the series' maple tree: one range store plus the entries it replaces per change, one
 *    tree lookup per query.
 *
 * Either way faults read 1 bit (O(1) however many ranges there are); both structures' costs of
 * every change can be priced both ways (attrChangeCosts()) so reports show the xarray against the
 * maple tree.
 *
 * kvm_mem_is_private() is what the fault path asks. On a KVM_X86_SW_PROTECTED_VM the access's
 * privateness is itself derived from the attributes (kvm_mmu_page_fault() sets
 * PFERR_PRIVATE_ACCESS from kvm_mem_is_private()), and kvm_mmu_faultin_pfn() checks it again
 * after the mmu_invalidate_seq snapshot: a conversion in between is a KVM_EXIT_MEMORY_FAULT.
 */
import { fail } from '../host/errno.js';
import { HostPage } from '../host/host.js';
import { bitRangeAll, bitRangeSet, bitTest } from '../shm/bitmap.js';
import { countN } from '../metrics/counters.js';
import { Op } from '../metrics/ops.js';
import { Lpage, gfnToIndex } from './mmu/lpage.js';
import { PgLevel, pagesPerHpage } from './mmu/spte.js';
import { kMaxGfn, type Memslot } from './memslot.js';
import { kvmMmuInvalidateBegin, kvmMmuInvalidateEnd, kvmMmuInvalidateRangeAdd } from './invalidate.js';
import { tdpMmuZapLeafs } from './mmu/tdp/zap.js';
import { kvmFlushRemoteTlbs } from './requests.js';
import type { Vm } from './vm.js';

/** include/uapi/linux/kvm.h */
export const KVM_MEMORY_ATTRIBUTE_PRIVATE = 1 << 3;

/** struct kvm_memory_attributes */
export interface KvmMemoryAttributes {
  address: number;
  size: number;
  attributes: number;
  flags?: number;
}

export type AttributesPath = 'vm' | 'gmem';

/** Bytes of the VM path's bitmap: one bit per gfn of the 42-bit guest physical space. */
export const kAttrBitmapBytes = (kMaxGfn + 1) / 8;

/**
 * kvm_mem_is_private(kvm, gfn) for a gfn of `slot` (the fault already found it). The 'gmem'
 * path asks the slot's file; a slot without one is never private there.
 */
export function kvmMemIsPrivate(vm: Vm, slot: Memslot | null, gfn: number): boolean {
  if (!vm.privateMem) return false;
  if (vm.attrBits !== null) return bitTest(vm.attrBits, gfn);
  if (slot === null || slot.gmem === null) return false;
  return slot.gmem.isPrivate(slot.gmemPgoff + (gfn - slot.baseGfn));
}

/**
 * kvm_mem_is_private() read with plain loads, for the fault's entry (KVM's xa_load there is
 * unordered too): a stale answer can only come from a conversion racing the fault, and the
 * ordered re-check after the mmu_invalidate_seq snapshot turns it into a KVM_EXIT_MEMORY_FAULT.
 */
export function kvmMemIsPrivateHint(vm: Vm, slot: Memslot | null, gfn: number): boolean {
  const bits = vm.attrBits;
  if (bits !== null) return (bits[gfn >>> 5]! & (1 << (gfn & 31))) !== 0;
  if (slot === null || slot.gmem === null) return false;
  const off = slot.gmemPgoff + (gfn - slot.baseGfn);
  return (slot.gmem.priv[off >>> 5]! & (1 << (off & 31))) !== 0;
}

/** Private-or-not of a gfn for the 'vm' path's mixed-flag scans, or of a bound file page on the 'gmem' path. */
function attrRangeAll(vm: Vm, slot: Memslot, start: number, end: number, priv: boolean): boolean {
  if (vm.attrBits !== null) return bitRangeAll(vm.attrBits, start, end, priv);
  const g = slot.gmem;
  if (g === null) return !priv;
  return bitRangeAll(g.priv, slot.gmemPgoff + (start - slot.baseGfn), slot.gmemPgoff + (end - slot.baseGfn), priv);
}

/** Whether every gfn of [start, end) of `slot` has one attribute (the audit's recount of the mixed flags). */
export function kvmRangeUniform(vm: Vm, slot: Memslot, start: number, end: number): boolean {
  return attrRangeAll(vm, slot, start, end, true) || attrRangeAll(vm, slot, start, end, false);
}

/**
 * hugepage_has_attrs(): every gfn of the huge page at `gfn` (aligned) has the attributes; at 1G
 * each 2M piece must also not be mixed (the 2M pass ran first).
 */
function hugepageHasAttrs(vm: Vm, slot: Memslot, gfn: number, level: number, priv: boolean): boolean {
  const n = pagesPerHpage(level);
  const xa = vm.attrBits !== null;
  if (level === PgLevel.PG_LEVEL_2M) {
    countN(vm.ctx.metrics, xa ? Op.attr_xa_load : Op.attr_mt_load, xa ? n : 1);
    return attrRangeAll(vm, slot, gfn, gfn + n, priv);
  }
  // Each 2M piece: not mixed (its lpage_info entry) and its first gfn's attribute. One bitmap
  // and one lpage array, read directly: this loop runs on every change of a 1G range.
  const lower = pagesPerHpage(level - 1);
  // A 1G file page whose private-page count says it is uniform has no mixed 2M piece either
  // (each piece's flag was last recomputed by the change that made it what it is): KVM's loop
  // would find all 512 pieces good, and is priced so, without running it.
  const f = slot.gmem;
  if (!xa && f !== null && f.privCount !== null && f.order === HostPage.kOrder1G) {
    const off = slot.gmemPgoff + (gfn - slot.baseGfn);
    if (off % n === 0) {
      const pc = f.privCount[off / n]!;
      if (pc === (priv ? n : 0)) {
        countN(vm.ctx.metrics, Op.attr_mt_load, n / lower);
        return true;
      }
    }
  }
  const lpage = slot.lpage[level - 1 - PgLevel.PG_LEVEL_2M]!;
  const bits = xa ? vm.attrBits! : slot.gmem?.priv ?? null;
  const delta = xa ? 0 : slot.gmemPgoff - slot.baseGfn;
  let i = gfnToIndex(gfn, slot.baseGfn, level - 1);
  let looked = 0;
  let ok = true;
  for (let g = gfn; g < gfn + n; g += lower, i++) {
    looked++;
    if ((Atomics.load(lpage, i) & Lpage.KVM_LPAGE_MIXED_FLAG) !== 0 || (bits === null ? priv : bitTest(bits, g + delta) !== priv)) {
      ok = false;
      break;
    }
  }
  countN(vm.ctx.metrics, xa ? Op.attr_xa_load : Op.attr_mt_load, looked);
  return ok;
}

function setMixed(slot: Memslot, gfn: number, level: number, mixed: boolean): void {
  const a = slot.lpage[level - PgLevel.PG_LEVEL_2M]!;
  const i = gfnToIndex(gfn, slot.baseGfn, level);
  if (mixed) Atomics.or(a, i, Lpage.KVM_LPAGE_MIXED_FLAG);
  else Atomics.and(a, i, ~Lpage.KVM_LPAGE_MIXED_FLAG);
}

/**
 * kvm_arch_post_set_memory_attributes() for the part [start, end) of `slot` whose attributes
 * became `priv`: 2M then 1G (the upper level consumes the lower one's result). The head and
 * tail huge pages that straddle the range are scanned, and only if the memslot wholly contains
 * them (Rick Edgecombe's 2024 fix: a huge page sticking out of the slot is never mapped huge
 * anyway, and its lpage_info entry must not be indexed past the array); pages inside the range
 * just lose the mixed flag.
 */
export function kvmArchPostSetMemoryAttributes(vm: Vm, slot: Memslot, start: number, end: number, priv: boolean): void {
  for (let level = PgLevel.PG_LEVEL_2M; level <= PgLevel.PG_LEVEL_1G; level++) {
    const n = pagesPerHpage(level);
    let gfn = start - (start % n);
    const inSlot = (g: number) => g >= slot.baseGfn && g + n <= slot.endGfn;
    if (gfn !== start || gfn + n > end) {
      if (inSlot(gfn)) setMixed(slot, gfn, level, !hugepageHasAttrs(vm, slot, gfn, level, priv));
      gfn += n;
    }
    for (; gfn + n <= end; gfn += n) setMixed(slot, gfn, level, false);
    if (gfn < end && gfn + n <= slot.endGfn) setMixed(slot, gfn, level, !hugepageHasAttrs(vm, slot, gfn, level, priv));
  }
}

/**
 * kvm_mmu_init_memslot_memory_attributes(): at slot creation on a VM with private memory, every
 * huge page the slot wholly contains is mixed unless all its gfns share the first one's
 * attributes.
 */
export function kvmMmuInitMemslotMemoryAttributes(vm: Vm, slot: Memslot): void {
  if (!vm.privateMem) return;
  for (let level = PgLevel.PG_LEVEL_2M; level <= PgLevel.PG_LEVEL_1G; level++) {
    const n = pagesPerHpage(level);
    for (let gfn = Math.ceil(slot.baseGfn / n) * n; gfn + n <= slot.endGfn; gfn += n) {
      const priv = kvmMemIsPrivate(vm, slot, gfn);
      setMixed(slot, gfn, level, !hugepageHasAttrs(vm, slot, gfn, level, priv));
    }
  }
}

/**
 * The 'vm' path's ioctl, kvm_vm_ioctl_set_mem_attributes() -> kvm_vm_set_mem_attributes(),
 * under slots_lock (here a VM-wide lock any thread may take: the selftests call it from the vCPU
 * thread that took the KVM_HC_MAP_GPA_RANGE exit):
 *   1. nothing to do if the range already has the attributes;
 *   2. xa_reserve every gfn;
 *   3. mmu_lock for write: invalidate begin, add the range (always: "Always add relevant ranges
 *      to invalidation set"), zap every SPTE of the range in every slot, flush; unlock;
 *   4. xa_store every gfn;
 *   5. mmu_lock for write: recompute the mixed flags of every slot in the range, invalidate end.
 */
export function kvmVmSetMemoryAttributes(vm: Vm, a: KvmMemoryAttributes): void {
  if (!vm.privateMem || vm.attrBits === null) {
    fail('EINVAL', vm.privateMem
      ? `KVM_SET_MEMORY_ATTRIBUTES: this VM sets attributes through guest_memfd (--attributes gmem: KVM_SET_MEMORY_ATTRIBUTES2), the two are mutually exclusive`
      : `KVM_SET_MEMORY_ATTRIBUTES: VM type ${vm.vmType} supports no memory attributes (KVM_CAP_MEMORY_ATTRIBUTES is 0; use KVM_X86_SW_PROTECTED_VM)`);
  }
  const flags = a.flags ?? 0;
  if (flags !== 0) fail('EINVAL', `KVM_SET_MEMORY_ATTRIBUTES: flags must be 0, got 0x${flags.toString(16)}`);
  if ((a.attributes & ~KVM_MEMORY_ATTRIBUTE_PRIVATE) !== 0) fail('EINVAL', `KVM_SET_MEMORY_ATTRIBUTES: unsupported attributes 0x${a.attributes.toString(16)} (supported: 0x${KVM_MEMORY_ATTRIBUTE_PRIVATE.toString(16)})`);
  checkRange('KVM_SET_MEMORY_ATTRIBUTES', a.address, a.size);
  const start = a.address / 4096;
  const end = start + a.size / 4096;
  const priv = a.attributes !== 0;
  vm.withSlotsLock(() => {
    const m = vm.ctx.metrics;
    const bits = vm.attrBits!;
    // kvm_range_has_memory_attributes(): xa_load over the range until one differs.
    countN(m, Op.attr_xa_load, end - start);
    if (bitRangeAll(bits, start, end, priv)) return;
    countN(m, Op.attr_xa_reserve, end - start);
    vm.withMmuWriteLock(() => {
      kvmMmuInvalidateBegin(vm);
      kvmMmuInvalidateAddHugeRange(vm, start, end);
      // kvm_arch_pre_set_memory_attributes(): zap, whether or not the slot can be private.
      if (zapSlotsInRange(vm, start, end)) kvmFlushRemoteTlbs(vm);
    });
    countN(m, Op.attr_xa_store, end - start);
    bitRangeSet(bits, start, end, priv);
    vm.withMmuWriteLock(() => {
      for (const s of vm.slotsInGfnRange(start, end)) {
        kvmArchPostSetMemoryAttributes(vm, s, Math.max(start, s.baseGfn), Math.min(end, s.endGfn), priv);
      }
      kvmMmuInvalidateEnd(vm);
    });
  });
}

/**
 * kvm_mmu_invalidate_range_add() for an attribute change of [start, end), widened to the head
 * and tail huge pages at the largest level ("KVM: x86/mmu: Prevent installing hugepages when mem
 * attributes are changing"): until the mixed flags are recomputed, a fault elsewhere in a huge
 * page the range cuts must not map that huge page whole (the stale check only looks at the
 * faulting gfn's place in the invalidation range). Pages wholly inside are covered anyway.
 */
export function kvmMmuInvalidateAddHugeRange(vm: Vm, start: number, end: number): void {
  const n = pagesPerHpage(PgLevel.PG_LEVEL_1G);
  kvmMmuInvalidateRangeAdd(vm, start - (start % n), Math.min(kMaxGfn + 1, Math.ceil(end / n) * n));
}

/** Zap every leaf over [start, end) in each memslot it covers; true if a flush is needed. */
export function zapSlotsInRange(vm: Vm, start: number, end: number): boolean {
  let flush = false;
  for (const s of vm.slotsInGfnRange(start, end)) {
    if (tdpMmuZapLeafs(vm, Math.max(start, s.baseGfn), Math.min(end, s.endGfn))) flush = true;
  }
  return flush;
}

/** EINVAL for a range KVM refuses: not page aligned, empty, overflowing, or past the model's guest space. */
export function checkRange(what: string, address: number, size: number): void {
  if (!Number.isSafeInteger(address) || !Number.isSafeInteger(size) || address < 0 || size <= 0) fail('EINVAL', `${what}: address 0x${address.toString(16)} and size 0x${size.toString(16)} must be non-negative integers, size > 0`);
  if (address % 4096 !== 0 || size % 4096 !== 0) fail('EINVAL', `${what}: address 0x${address.toString(16)} and size 0x${size.toString(16)} must be page aligned`);
  if ((address + size) / 4096 > kMaxGfn + 1) fail('EINVAL', `${what}: range ends at 0x${(address + size).toString(16)}, past this model's 42-bit guest physical address space`);
}

/**
 * What one attribute change of `gfns` gfns costs in each structure (cost-model ns): the xarray
 * (a lookup, a reserve and a store per gfn) and the maple tree (a lookup and a range store
 * replacing `entries` entries). The path a VM uses is the one its ops are priced as; this is
 * for reports that set the two side by side.
 */
export function attrChangeCosts(price: (op: number) => number, gfns: number, entries: number): { xarrayNs: number; mapleNs: number } {
  return {
    xarrayNs: gfns * (price(Op.attr_xa_load) + price(Op.attr_xa_reserve) + price(Op.attr_xa_store)),
    mapleNs: price(Op.attr_mt_load) + price(Op.attr_mt_store) + entries * price(Op.attr_mt_entry),
  };
}
