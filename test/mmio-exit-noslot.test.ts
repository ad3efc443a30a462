// A guest access to a gfn outside every memslot is MMIO, as KVM with TDP handles it:
// kvm_mmu_faultin_pfn() -> kvm_handle_noslot_fault() -> kvm_tdp_mmu_map() installs an MMIO SPTE
// (make_mmio_spte(), with the memslot generation) -> RET_PF_EMULATE -> x86_emulate_instruction()
// finds no in-kernel device -> KVM_EXIT_MMIO with run->mmio (phys_addr, len, is_write, data),
// mmio_exits++; the next KVM_RUN completes the access (complete_emulated_mmio) and the vCPU goes
// on with the next one. The next access to that gfn takes the EPT-misconfig path on the MMIO SPTE
// (handle_mmio_page_fault()): emulated again without kvm_mmu_do_page_fault(), so no pf_taken and
// no pf_emulate. A memslot update moves the generation: the MMIO SPTE is stale
// (check_mmio_spte() fails) and the access takes the full fault path again.
import { describe, expect, it } from 'vitest';
import { Host } from '../src/index.js';
import { KvmExit } from '../src/kvm/vcpu-layout.js';
import { isMmioSpte, mmioSpteGen, makeMmioSpteFlags } from '../src/kvm/mmu/tdp/mmio.js';
import { PgLevel } from '../src/kvm/mmu/spte.js';
import { TdpIter } from '../src/kvm/mmu/tdp/iter.js';
import type { AccessSource, Vm } from '../src/index.js';

const kBase = 2 ** 18; // slot 1: gfns [kBase, kBase + 512) = 1 GiB .. 1 GiB + 2 MiB
const kMmio = 2 ** 19; // a device page at 2 GiB, outside every memslot

/** Accesses given as [gfn, write] pairs, with iteration 7 (the value a store writes). */
function stream(list: readonly (readonly [number, boolean])[]): AccessSource {
  let i = 0;
  const s = {
    iteration: 7,
    write: false,
    next: () => {
      if (i >= list.length) return -1;
      const [gfn, w] = list[i++]!;
      s.write = w;
      return gfn;
    },
  };
  return s;
}

function fixture() {
  const host = Host.create({ memory: 64 * 2 ** 20 });
  const vm = host.createVm();
  const hva = vm.mmap({ size: 2 ** 21, backing: 'anonymous' });
  vm.setUserMemoryRegion2({ slot: 1, flags: 0, guestPhysAddr: kBase * 4096, memorySize: 2 ** 21, userspaceAddr: hva });
  const vcpu = vm.createVcpu();
  return { host, vm, vcpu, hva };
}

/** The 4K SPTE for gfn, read as the VMM would (flags, pfn word), or null without a 4K table. */
function spte4k(vm: Vm, gfn: number): { flags: number; pfn: number } | null {
  const it = new TdpIter(vm.pool.pt);
  it.start(vm.root, PgLevel.PG_LEVEL_4K, gfn);
  while (it.stepDown());
  return it.level === PgLevel.PG_LEVEL_4K ? { flags: it.oldFlags, pfn: it.oldPfn } : null;
}

describe('KVM_EXIT_MMIO for an access outside every memslot', () => {
  it('a store exits with phys_addr, len 8, is_write and the data; the next run completes it and goes on', () => {
    const { host, vm, vcpu } = fixture();
    const s = stream([[kBase, true], [kMmio + 3, true], [kBase + 1, false]]);
    // The memory store retires; the MMIO store does not until the VMM completed it.
    expect(vcpu.run(s, 10)).toBe(1);
    expect(vcpu.exitReason).toBe(KvmExit.KVM_EXIT_MMIO);
    expect(vcpu.mmio).toEqual({ physAddr: (kMmio + 3) * 4096, len: 8, isWrite: true, data: 7 });
    expect(vcpu.accesses()).toBe(1);
    // KVM_RUN again: the MMIO store retires (complete_emulated_mmio), then the next access runs.
    expect(vcpu.run(s, 10)).toBe(2);
    expect(vcpu.exitReason).toBe(0);
    expect(vcpu.accesses()).toBe(3);
    expect(vcpu.getStats()).toMatchObject({ mmio_exits: 1, pf_emulate: 1, pf_taken: 3, pf_fixed: 2 });
    // Nothing maps the device page: only the two memory pages are mapped; the audit agrees.
    expect(vm.getStats().pages_4k).toBe(2);
    expect(host.audit().violations).toEqual([]);
  });

  it('a load exits with is_write false; completing it is the VMM writing run->mmio.data', () => {
    const { vcpu } = fixture();
    const s = stream([[kMmio, false]]);
    expect(vcpu.run(s, 10)).toBe(0);
    expect(vcpu.exitReason).toBe(KvmExit.KVM_EXIT_MMIO);
    expect(vcpu.mmio).toMatchObject({ physAddr: kMmio * 4096, len: 8, isWrite: false });
    vcpu.mmio.data = 0x1234;
    expect(vcpu.run(s, 10)).toBe(1);
    expect(vcpu.exitReason).toBe(0);
    expect(vcpu.getStats().mmio_exits).toBe(1);
  });

  it('the first access installs an MMIO SPTE of the memslot generation; the next one emulates without pf_taken', () => {
    const { vm, vcpu } = fixture();
    expect(vcpu.run(stream([[kMmio, false]]), 10)).toBe(0);
    const spte = spte4k(vm, kMmio)!;
    expect(isMmioSpte(spte.flags)).toBe(true);
    expect(spte.flags).toBe(makeMmioSpteFlags(vm.generation));
    expect(mmioSpteGen(spte.flags)).toBe(vm.generation);
    expect(spte.pfn).toBe(kMmio); // get_mmio_spte_gfn()
    const before = vcpu.getStats();
    expect(before).toMatchObject({ pf_taken: 1, pf_emulate: 1, mmio_exits: 1 });
    // Completion, then a store to the same gfn: an EPT misconfig on the MMIO SPTE.
    expect(vcpu.run(stream([[kMmio, true]]), 10)).toBe(1);
    expect(vcpu.exitReason).toBe(KvmExit.KVM_EXIT_MMIO);
    expect(vcpu.mmio.isWrite).toBe(true);
    const after = vcpu.getStats();
    expect(after.mmio_exits).toBe(2);
    expect(after.exits).toBe(before.exits + 1);
    expect(after.pf_taken).toBe(before.pf_taken);
    expect(after.pf_emulate).toBe(before.pf_emulate);
  });

  it('a memslot update makes the MMIO SPTE stale: the access takes the full fault path and re-caches', () => {
    const { vm, vcpu, hva } = fixture();
    expect(vcpu.run(stream([[kMmio, false]]), 10)).toBe(0);
    const gen0 = vm.generation;
    // An unrelated slot: the memslot generation moves, the device gfn is still outside every slot.
    vm.setUserMemoryRegion2({ slot: 2, flags: 0, guestPhysAddr: 2 ** 32, memorySize: 4096, userspaceAddr: hva });
    expect(vm.generation).not.toBe(gen0);
    const before = vcpu.getStats();
    expect(vcpu.run(stream([[kMmio, false]]), 10)).toBe(1);
    expect(vcpu.exitReason).toBe(KvmExit.KVM_EXIT_MMIO);
    const after = vcpu.getStats();
    expect(after.pf_taken).toBe(before.pf_taken + 1);
    expect(after.pf_emulate).toBe(before.pf_emulate + 1);
    expect(mmioSpteGen(spte4k(vm, kMmio)!.flags)).toBe(vm.generation);
  });

  it('a slot created over an MMIO gfn maps memory there: the access retires without an exit', () => {
    const { host, vm, vcpu, hva } = fixture();
    expect(vcpu.run(stream([[kMmio, true]]), 10)).toBe(0);
    expect(vcpu.run(stream([]), 10)).toBe(1); // complete it
    vm.setUserMemoryRegion2({ slot: 2, flags: 0, guestPhysAddr: kMmio * 4096, memorySize: 4096, userspaceAddr: hva });
    expect(vcpu.run(stream([[kMmio, true]]), 10)).toBe(1);
    expect(vcpu.exitReason).toBe(0);
    expect(vcpu.getStats().mmio_exits).toBe(1);
    expect(vm.getStats().pages_4k).toBe(1);
    expect(host.audit().violations).toEqual([]);
  });

  it('with the page-table pool spent, MMIO is still emulated (uncached, as with MMIO caching off)', () => {
    const { host, vm, vcpu } = fixture();
    expect(vcpu.run(stream([[kBase, true]]), 10)).toBe(1);
    // One device page in each of 200 1G regions: two new tables each, far more than the pool has.
    const gfns = Array.from({ length: 200 }, (_, i) => (i + 4) * 2 ** 18);
    let exits = 0;
    for (const g of gfns) {
      const n = vcpu.run(stream([[g, false]]), 10);
      expect(n).toBe(exits === 0 ? 0 : 1);
      expect(vcpu.exitReason).toBe(KvmExit.KVM_EXIT_MMIO);
      expect(vcpu.mmio.physAddr).toBe(g * 4096);
      exits++;
    }
    expect(vcpu.getStats()).toMatchObject({ mmio_exits: 200, pf_emulate: 200 });
    const cached = gfns.filter((g) => { const e = spte4k(vm, g); return e !== null && isMmioSpte(e.flags); }).length;
    expect(cached).toBeGreaterThan(0);
    expect(cached).toBeLessThan(200);
    expect(host.audit().violations).toEqual([]);
  });

  it('deleting the slot and the VM leaves nothing behind (MMIO SPTEs go with their tables)', () => {
    const { host, vm, vcpu } = fixture();
    expect(vcpu.run(stream([[kBase, true], [kMmio, true]]), 10)).toBe(1);
    expect(vcpu.run(stream([]), 10)).toBe(1);
    vm.setUserMemoryRegion2({ slot: 1, flags: 0, guestPhysAddr: 0, memorySize: 0, userspaceAddr: 0 });
    // The MMIO SPTE survives the leaf zap of the deleted slot (tdp_mmu_zap_leafs skips non-present).
    expect(isMmioSpte(spte4k(vm, kMmio)!.flags)).toBe(true);
    expect(host.audit().violations).toEqual([]);
    vm.destroy();
    expect(host.audit().violations).toEqual([]);
  });
});
