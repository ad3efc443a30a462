/**
 * A guest that runs with paging, set up as KVM's selftests do (kvm_util.c / processor.c): memslot
 * 0 at GPA 0 holds the guest's code page and its page tables (vm_alloc_page_table), the VMM
 * builds 4-level tables in it that identity-map slot 0 and the test memory (virt_map), and every
 * vCPU's CR3 points at the PML4 (KVM_SET_SREGS). The shadow MMU shadows those tables; the TDP
 * MMU ignores them (the gfns the guest touches are its identity map's).
 */
import { buildGuestPageTables, guestPtPagesNeeded, type GuestMapping } from '../workload/guest-page-tables.js';
import type { Vm } from '../kvm/vm.js';

export type GuestPtLeaf = '4k' | '2m';

export interface GuestPagingOptions {
  /** The regions the guest maps besides slot 0 (identity: gva = gfn). */
  regions: { gfn: number; pages: number }[];
  /** Leaf size of the test memory's mappings (`--guest-pt`); slot 0 is mapped with 4K PTEs. */
  leaf: GuestPtLeaf;
}

export interface GuestPaging {
  cr3Gfn: number;
  ptPages: number;
  /** Pages of slot 0 (code + page tables). */
  slot0Pages: number;
}

/** Slot 0 pages a layout needs: one code page, the page tables, rounded to 2 MiB as memstress sizes it. */
export function guestSlot0Pages(opts: GuestPagingOptions): number {
  // Slot 0 maps itself too: grow it to a fixed point.
  let pages = 512;
  for (;;) {
    const need = Math.ceil((1 + guestPtPagesNeeded(guestMappings(opts, pages)) + 16) / 512) * 512;
    if (need <= pages) return pages;
    pages = need;
  }
}

function guestMappings(opts: GuestPagingOptions, slot0Pages: number): GuestMapping[] {
  const m: GuestMapping[] = [{ gva: 0, gfn: 0, pages: slot0Pages, leaf: '4k' }];
  for (const r of opts.regions) m.push({ gva: r.gfn, gfn: r.gfn, pages: r.pages, leaf: opts.leaf });
  return m;
}

/**
 * Create slot 0 (anonymous memory, never dirty-logged), build the page tables and point every
 * vCPU (existing ones; call again after adding vCPUs) at them.
 */
export function setupGuestPaging(vm: Vm, opts: GuestPagingOptions): GuestPaging {
  const slot0Pages = guestSlot0Pages(opts);
  const hva = vm.mmap({ size: slot0Pages * 4096, backing: 'anonymous' });
  vm.setUserMemoryRegion2({ slot: 0, flags: 0, guestPhysAddr: 0, memorySize: slot0Pages * 4096, userspaceAddr: hva });
  // vm_alloc_page_table(): page-table pages come after the code page.
  let next = 1;
  const pt = buildGuestPageTables(vm.guestMem, () => {
    if (next >= slot0Pages) throw new Error(`guest page tables outgrew slot 0 (${slot0Pages} pages)`);
    return next++;
  }, guestMappings(opts, slot0Pages));
  for (let i = 0; i < vm.nrVcpus; i++) vm.vcpu(i).setGuestCr3(pt.cr3Gfn);
  // The VMM touched slot 0 through its own mapping: publish what its frame caches took.
  vm.ctx.hostThread.drain();
  return { cr3Gfn: pt.cr3Gfn, ptPages: pt.ptPages, slot0Pages };
}
