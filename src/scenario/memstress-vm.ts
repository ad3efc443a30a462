/**
 * VM setup shared by memstress-style scenarios (lib/memstress.c's memstress_create_vm): each VM
 * gets `slots` memslots starting at slot 1 at the top of guest physical memory, each backed by
 * its own mapping, and `vcpus` vCPUs that own [base + i * bytes, +bytes) — or all of it with
 * overlap. The host is sized to fit, hugetlb pools included, unless --host-memory says otherwise.
 */
import { costModelFlag } from './common-flags.js';
import { Host } from '../host/host.js';
import { KvmError } from '../host/errno.js';
import { type BackingSource, backingPageOrder } from '../host/mm.js';
import { Vm, type MmuMode, type RmapsMode, type ThreadCtx } from '../kvm/vm.js';
import { guestSlot0Pages, setupGuestPaging, type GuestPtLeaf } from './guest-paging.js';
import { kMaxGfn } from '../kvm/memslot.js';
import { Metrics } from '../metrics/counters.js';
import { UsageError, formatSize } from './flags.js';
import { checkRunFits, sizeHost } from './host-sizing.js';
import type { DirtyStrategy } from '../kvm/dirty/strategy.js';
import type { AccessOrder, StreamSpec } from '../workload/memstress.js';
import type { VcpuRef } from './runner.js';

export const MEMSTRESS_MEM_SLOT_INDEX = 1;

export interface MemstressConfig {
  vms: number;
  vcpus: number;
  bytesPerVcpu: number;
  backing: BackingSource;
  overlap: boolean;
  slots: number;
  seed: number;
  workers: number;
  hostMemory: number | null;
  nodes: number;
  costModel: string;
  stamps: boolean;
  /**
   * One MMIO access (a KVM_EXIT_MMIO the worker completes as the VMM) after every `mmioEvery`
   * guest-memory accesses of each vCPU, to kMmioPages device pages right below the test memory,
   * outside every memslot. 0 or absent: none.
   */
  mmioEvery?: number;
  /** --mmu: the TDP MMU (default) or the shadow MMU, under which the guest runs with its own page tables. */
  mmu?: MmuMode;
  rmaps?: RmapsMode;
  /** --guest-pt: the guest's leaf size over the test memory (guest paging only). */
  guestPt?: GuestPtLeaf;
  /** --lock-model on/off; null or absent: the VM's default (on with the shadow MMU). */
  lockModel?: boolean | null;
  /** --l2-at: vCPU 0 launches a nested guest after this many accesses (-1 or absent: none). */
  l2At?: number;
}

/** The guest runs with paging (its own page tables in slot 0) under the shadow MMU. */
export function guestPaging(c: MemstressConfig): boolean {
  return c.mmu === 'shadow' || (c.l2At ?? -1) >= 0;
}

/** Device pages the MMIO knob touches (each vCPU cycles through all of them). */
export const kMmioPages = 16;

export interface MemstressLayout {
  guestPages: number;
  gpa: number;
  pagesPerVcpu: number;
  slotPages: number;
  backingPageBytes: number;
  /** First of the kMmioPages device gfns, right below the test memory (-1 without MMIO). */
  mmioGfn: number;
  /** The guest's CR3 (PML4 gfn) once guest paging is set up; also the EPT12 root of a nested guest. */
  guestCr3Gfn?: number;
}

export function memstressLayout(c: MemstressConfig): MemstressLayout {
  if (c.bytesPerVcpu % 4096 !== 0 || c.bytesPerVcpu === 0) throw new UsageError(`-b ${c.bytesPerVcpu}: bytes per vCPU must be a positive multiple of 4 KiB`);
  const guestBytes = c.overlap ? c.bytesPerVcpu : c.bytesPerVcpu * c.vcpus;
  const guestPages = guestBytes / 4096;
  const backingPageBytes = 4096 * 2 ** backingPageOrder(c.backing);
  if (guestPages % c.slots !== 0) throw new UsageError(`${formatSize(guestBytes)} of guest memory does not split evenly into ${c.slots} memslots`);
  const slotPages = guestPages / c.slots;
  const hugetlb = c.backing.includes('hugetlb');
  if (hugetlb && (slotPages * 4096) % backingPageBytes !== 0) {
    throw new UsageError(`each memslot (${formatSize(slotPages * 4096)}) must be a multiple of the ${formatSize(backingPageBytes)} ${c.backing} page`);
  }
  // memstress: the test region sits at the top of guest physical memory, aligned down to the
  // backing page size.
  let gpa = (kMaxGfn + 1 - guestPages - 1) * 4096;
  gpa -= gpa % Math.max(backingPageBytes, 2 ** 21);
  if (gpa < 0) throw new UsageError(`${formatSize(guestBytes)} per VM exceeds the 4 TiB guest physical space`);
  const mmioEvery = c.mmioEvery ?? 0;
  if (!Number.isInteger(mmioEvery) || mmioEvery < 0) throw new UsageError(`mmioEvery ${mmioEvery}: give 0 (no MMIO) or a positive number of memory accesses per MMIO access`);
  const mmioGfn = mmioEvery > 0 ? gpa / 4096 - kMmioPages : -1;
  if (mmioEvery > 0 && mmioGfn < 0) throw new UsageError(`${formatSize(guestBytes)} per VM leaves no room below the test memory for ${kMmioPages} MMIO pages`);
  return { guestPages, gpa, pagesPerVcpu: c.overlap ? guestPages : c.bytesPerVcpu / 4096, slotPages, backingPageBytes, mmioGfn };
}

export { sizeHost } from './host-sizing.js';

export interface MemstressSetup {
  host: Host;
  vms: Vm[];
  ctx: ThreadCtx;
  cost: Float64Array;
  layout: MemstressLayout;
}

export interface MemstressVmOptions {
  strategy?: Partial<DirtyStrategy>;
  /** Called after memslots are set and before vCPUs exist (KVM_CAP_DIRTY_LOG_RING's window). */
  beforeVcpus?: (vm: Vm) => void;
  /** Dirty ring bytes each vCPU will get (for the memory estimate). */
  ringBytesPerVcpu?: number;
}

/** Build the host and VMs; a KvmError here means the configuration cannot work (exit 2). */
export function createMemstressVms(c: MemstressConfig, opts: MemstressVmOptions = {}): MemstressSetup {
  const layout = memstressLayout(c);
  const size = sizeHost(c, layout);
  // Refuse (ENOMEM, exit 2) before the frame table and pools are allocated.
  checkRunFits(c, layout, { ringBytesPerVcpu: opts.ringBytesPerVcpu });
  const cost = costModelFlag(c.costModel);
  try {
    // Guest paging: slot 0 (code + page tables) per VM, and page contents for its frames.
    const slot0 = guestPaging(c) ? guestSlot0Pages(guestPagingOptions(c, layout)) : 0;
    const memory = size.memory + (c.hostMemory === null ? slot0 * 4096 * c.vms : 0);
    const host = Host.create({
      memory, nodes: c.nodes, hugepages2m: size.hugepages2m, hugepages1g: size.hugepages1g, stamps: c.stamps, pageContent: slot0 * c.vms,
    });
    const ctx: ThreadCtx = { metrics: new Metrics(cost), hostThread: host.thread() };
    const vms: Vm[] = [];
    for (let i = 0; i < c.vms; i++) {
      const vm = Vm.create(host, i, ctx, {
        maxVcpus: Math.max(c.vcpus, 1), strategy: opts.strategy, mmu: c.mmu ?? 'tdp', rmaps: c.rmaps ?? 'lazy',
        ...(c.lockModel === null || c.lockModel === undefined ? {} : { lockModel: c.lockModel }),
      });
      for (let s = 0; s < c.slots; s++) {
        const bytes = layout.slotPages * 4096;
        const hva = vm.mmap({ size: bytes, backing: c.backing });
        vm.setUserMemoryRegion2({
          slot: MEMSTRESS_MEM_SLOT_INDEX + s, flags: 0, guestPhysAddr: layout.gpa + s * bytes, memorySize: bytes, userspaceAddr: hva,
        });
      }
      opts.beforeVcpus?.(vm);
      for (let v = 0; v < c.vcpus; v++) vm.createVcpu();
      // A nested guest's EPT12 tables are L1's page tables over the same memory (identity).
      if (guestPaging(c)) layout.guestCr3Gfn = setupGuestPaging(vm, guestPagingOptions(c, layout)).cr3Gfn;
      vms.push(vm);
    }
    return { host, vms, ctx, cost, layout };
  } catch (e) {
    if (e instanceof KvmError) throw new UsageError(`cannot set up ${c.vms} VM(s) x ${formatSize(layout.guestPages * 4096)}: ${e.message}`);
    throw e;
  }
}

/** The guest maps its test memory (every data slot) identity-mapped with --guest-pt leaves. */
export function guestPagingOptions(c: MemstressConfig, l: MemstressLayout): { regions: { gfn: number; pages: number }[]; leaf: GuestPtLeaf } {
  return { regions: [{ gfn: l.gpa / 4096, pages: l.guestPages }], leaf: c.guestPt ?? '4k' };
}

export function memstressStream(c: MemstressConfig, l: MemstressLayout, ref: VcpuRef, vmId: number, order: AccessOrder, writePercent: number, iteration: number): StreamSpec {
  const base = l.gpa / 4096 + (c.overlap ? 0 : ref.vcpu * l.pagesPerVcpu);
  const mmio = (c.mmioEvery ?? 0) > 0 ? { mmioEvery: c.mmioEvery, mmioGfn: l.mmioGfn, mmioPages: kMmioPages } : {};
  const l2 = (c.l2At ?? -1) >= 0 && ref.vcpu === 0 ? { l2At: c.l2At, ept12Gfn: l.guestCr3Gfn } : {};
  return { baseGfn: base, pages: l.pagesPerVcpu, order, writePercent, seed: c.seed, vm: vmId, vcpu: ref.vcpu, iteration, ...mmio, ...l2 };
}

/** "%ld.%.9lds" as the selftests print timespecs. */
export function fmtTimespec(ns: number): string {
  const s = Math.floor(ns / 1e9);
  const rest = Math.round(ns - s * 1e9);
  return `${s}.${String(Math.min(rest, 999_999_999)).padStart(9, '0')}s`;
}
