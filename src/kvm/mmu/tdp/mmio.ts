/**
 * MMIO SPTEs (spte.c make_mmio_spte(), mmu.c handle_mmio_page_fault()): a guest access to a gfn
 * that no memslot covers leaves a non-present SPTE behind that says "this gfn is MMIO" and carries
 * the memslot generation it was made under. With EPT, KVM builds it from a misconfiguration
 * (W and X without R), so the next access to the gfn takes an EPT-misconfig exit instead of an EPT
 * violation and goes straight to emulation: no memslot lookup, no kvm_mmu_do_page_fault() (so no
 * pf_taken). A memslot change moves the generation, which turns every MMIO SPTE stale at once:
 * check_mmio_spte() fails and the access takes the full fault path again (it then finds the new
 * slot, or installs an MMIO SPTE of the new generation).
 *
 * Flags word of an MMIO SPTE, KVM's bits (word bit = SPTE bit - 32 for the high ones):
 *   bits 0..2    shadow_mmio_value = VMX_EPT_MISCONFIG_WX_VALUE (W|X, R clear), MMU-present clear
 *   bits 3..10   generation bits 0..7   (MMIO_SPTE_GEN_LOW_START 3)
 *   bits 20..30  generation bits 8..18  (MMIO_SPTE_GEN_HIGH_START 52)
 *   bit 31       clear: shadow_mmio_mask covers SUPPRESS_VE (bit 63), shadow_mmio_value lacks it
 * The pfn word holds the gfn (get_mmio_spte_gfn()). Zaps of leaves skip MMIO SPTEs, as
 * tdp_mmu_zap_leafs() skips every non-present SPTE; they go with their table.
 *
 * Not modelled: the generation wrap (kvm_mmu_invalidate_mmio_sptes() zaps all at gen 0 after
 * 2^19 updates) and KVM_MEMSLOT_GEN_UPDATE_IN_PROGRESS (memslots change while no vCPU runs here).
 * The generation is this thread's view of the VM's memslot generation (vm.generation), which
 * also moves on mmap and KVM_CREATE_VCPU: more MMIO SPTEs go stale than in KVM, never fewer.
 */
import { PgLevel, Spte } from '../spte.js';
import { countN } from '../../../metrics/counters.js';
import { Op } from '../../../metrics/ops.js';
import type { Vcpu } from '../../vcpu.js';

export const enum MmioSpte {
  kMmioValue = Spte.PT_WRITABLE_MASK | Spte.PT_EXEC,
  kMmioMask = Spte.PT_PRESENT_R | Spte.PT_WRITABLE_MASK | Spte.PT_EXEC | Spte.SHADOW_NONPRESENT_VALUE,
  MMIO_SPTE_GEN_MASK = (1 << 19) - 1,
  kGenLowShift = 3,
  kGenLowMask = 0xff,
  kGenHighShift = 20,
  kGenHighBits = 8,
  kGenHighMask = 0x7ff,
}

/** make_mmio_spte()'s flags word for memslot generation `gen`. */
export function makeMmioSpteFlags(gen: number): number {
  const g = gen & MmioSpte.MMIO_SPTE_GEN_MASK;
  return MmioSpte.kMmioValue | ((g & MmioSpte.kGenLowMask) << MmioSpte.kGenLowShift)
    | (((g >>> MmioSpte.kGenHighBits) & MmioSpte.kGenHighMask) << MmioSpte.kGenHighShift);
}

/** is_mmio_spte() */
export function isMmioSpte(flags: number): boolean {
  return (flags & MmioSpte.kMmioMask) === MmioSpte.kMmioValue;
}

/** get_mmio_spte_generation() */
export function mmioSpteGen(flags: number): number {
  return ((flags >>> MmioSpte.kGenLowShift) & MmioSpte.kGenLowMask)
    | (((flags >>> MmioSpte.kGenHighShift) & MmioSpte.kGenHighMask) << MmioSpte.kGenHighBits);
}

/**
 * handle_mmio_page_fault() for a TDP vCPU: get_mmio_spte() walks to the gfn's 4K SPTE without
 * mmu_lock (the vCPU is inside its epoch, KVM's walk_shadow_page_lockless_begin()); true when
 * it is an MMIO SPTE of the current generation (check_mmio_spte()), i.e. RET_PF_EMULATE. False
 * sends the access down the full fault path (RET_PF_INVALID).
 */
export function handleMmioPageFault(vcpu: Vcpu, gfn: number): boolean {
  const vm = vcpu.vm;
  const it = vcpu.iter;
  it.start(vm.root, PgLevel.PG_LEVEL_4K, gfn);
  let steps = 1;
  while (it.stepDown()) steps++;
  countN(vm.ctx.metrics, Op.spte_read, steps);
  return it.level === PgLevel.PG_LEVEL_4K && isMmioSpte(it.oldFlags)
    && mmioSpteGen(it.oldFlags) === (vm.generation & MmioSpte.MMIO_SPTE_GEN_MASK);
}
