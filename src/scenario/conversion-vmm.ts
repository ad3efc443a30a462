/**
 * The VMM's side of a private <-> shared conversion, on the vCPU's own thread (as QEMU's vCPU
 * thread handles KVM_EXIT_HYPERCALL(KVM_HC_MAP_GPA_RANGE) and KVM_EXIT_MEMORY_FAULT itself):
 *
 *  split-and-double-allocate  shared memory is the VMM's own mapping (userspace_addr), private
 *      memory the guest_memfd; attributes through KVM_SET_MEMORY_ATTRIBUTES (the 6.8 path).
 *      Going shared: set the attribute, then punch the private copy out of the guest_memfd
 *      (FALLOC_FL_PUNCH_HOLE), so memory stays flat — which cuts huge folios. Going private: set
 *      the attribute, then MADV_DONTNEED the shared copy. Content: the other side's copy, i.e.
 *      a converted page reads as zero (both copies are discarded on the way).
 *  in-place / in-place-2m-first  one guest_memfd (GUEST_MEMFD_FLAG_MMAP) serves both; the
 *      attribute is its shareability, set with KVM_SET_MEMORY_ATTRIBUTES2 (the 2026 series).
 *      Going private: the ioctl tears down the VMM's mapping of the range (a pin would be
 *      EAGAIN). A huge folio that becomes mixed is split to 4K (or 1G -> 2M
 *      first), and merged when uniform again. Content: preserved (one folio; what pKVM wants;
 *      SNP/TDX hardware would scramble it).
 *
 * Either way the device model then touches the shared range through the VMM's mapping (the
 * virtio backend's DMA into the bounce buffer: `hostTouches` stores), so host-mapped memory and
 * the RSS view are what a real VMM has. Each conversion is timed end to end: from the hypercall
 * exit to the vCPU's re-entry, in wall time and in modeled time (the exit, the ioctls, the
 * re-entry), into `<name>.convert_shared` / `<name>.convert_private`.
 */
import { fail } from '../host/errno.js';
import { hostFault } from '../host/mm.js';
import { count } from '../metrics/counters.js';
import { Op } from '../metrics/ops.js';
import type { HistogramSet, OpHistograms } from '../metrics/histogram.js';
import { FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE } from '../gmem/gmem-file.js';
import { KVM_MEMORY_ATTRIBUTE_PRIVATE, kvmMemIsPrivate } from '../kvm/attributes.js';
import { KVM_MAP_GPA_RANGE_ENCRYPTED, KVM_MEMORY_EXIT_FLAG_PRIVATE, type Vcpu } from '../kvm/vcpu.js';
import { KvmExit } from '../kvm/vcpu-layout.js';
import type { Memslot } from '../kvm/memslot.js';
import type { GuestMemfd } from '../kvm/guest_memfd.js';
import type { Vm } from '../kvm/vm.js';

export const kConversionStrategies = ['split-and-double-allocate', 'in-place', 'in-place-2m-first'] as const;
export type ConversionStrategy = (typeof kConversionStrategies)[number];

export interface ConversionVmmSpec {
  kind: 'conversion-vmm';
  strategy: ConversionStrategy;
  /** Stores the device model makes to a range it was just given (per conversion to shared). */
  hostTouches: number;
  histogram: string;
}

/** What one thread's handler did (summed over workers by the scenario). */
export interface ConversionVmmStats {
  toShared: number;
  toPrivate: number;
  eagain: number;
  memoryFaultExits: number;
  /** Maple-tree entries the gmem path's changes stored or replaced, gfns changed. */
  rangeEntries: number;
  gfns: number;
  /** Pages found backed twice (private frame + shared copy) when a range went back private, summed. */
  doublePageConversions: number;
}

export function emptyConversionStats(): ConversionVmmStats {
  return { toShared: 0, toPrivate: 0, eagain: 0, memoryFaultExits: 0, rangeEntries: 0, gfns: 0, doublePageConversions: 0 };
}

export class ConversionVmm {
  readonly stats = emptyConversionStats();
  private readonly toShared: OpHistograms;
  private readonly toPrivate: OpHistograms;

  constructor(readonly spec: ConversionVmmSpec, hists: HistogramSet) {
    this.toShared = hists.get(`${spec.histogram}.convert_shared`);
    this.toPrivate = hists.get(`${spec.histogram}.convert_private`);
  }

  /**
   * Handle the exit `vcpu` just took, on its thread, then charge the time to its clock. Returns
   * false for an exit this VMM does not handle.
   */
  onExit(vcpu: Vcpu): boolean {
    const vm = vcpu.vm;
    const m = vm.ctx.metrics;
    const t0 = m.t;
    const w0 = performance.now();
    let priv: boolean;
    let gpa: number;
    let npages: number;
    if (vcpu.exitReason === KvmExit.KVM_EXIT_HYPERCALL) {
      const hc = vcpu.hypercall;
      [gpa, npages] = [hc.args[0]!, hc.args[1]!];
      priv = (hc.args[2]! & KVM_MAP_GPA_RANGE_ENCRYPTED) !== 0;
      hc.ret = 0;
    } else if (vcpu.exitReason === KvmExit.KVM_EXIT_MEMORY_FAULT) {
      // On a SW-protected VM the access's privateness comes from the attributes, so a mismatch
      // means a conversion of this gfn raced the fault: run again, the fault re-reads them. A
      // mismatch that is still there (a private gfn without guest_memfd) is the VMM's bug.
      const mf = vcpu.memoryFault;
      const g = mf.gpa / 4096;
      this.stats.memoryFaultExits++;
      if (kvmMemIsPrivate(vm, vm.lookupMemslotNewest(g), g) === ((mf.flags & KVM_MEMORY_EXIT_FLAG_PRIVATE) !== 0)) {
        fail('EFAULT', `KVM_EXIT_MEMORY_FAULT at gpa 0x${mf.gpa.toString(16)} (flags 0x${mf.flags.toString(16)}) that no conversion explains`);
      }
      vcpu.chargeUserspaceNs(m.t - t0);
      return true;
    } else return false;
    vm.asVcpuThread(vcpu, () => this.convert(vm, gpa / 4096, npages, priv));
    if (priv) this.stats.toPrivate++;
    else this.stats.toShared++;
    const modeled = m.t - t0;
    // The vCPU thread did the VMM's work: its clock moves by it (the exit and re-entry are in
    // userspace_exit, counted by the vCPU).
    vcpu.chargeUserspaceNs(modeled);
    (priv ? this.toPrivate : this.toShared).record((performance.now() - w0) * 1e6, modeled + m.cost[Op.userspace_exit]!);
    return true;
  }

  private convert(vm: Vm, gfn: number, npages: number, priv: boolean): void {
    const slot = vm.lookupMemslotNewest(gfn);
    if (slot === null || slot.gmem === null || gfn + npages > slot.endGfn) fail('EFAULT', `KVM_HC_MAP_GPA_RANGE [0x${(gfn * 4096).toString(16)}, +${npages} pages) is not inside one guest_memfd slot`);
    const ht = vm.ctx.hostThread;
    const fd = vm.gmems.find((g) => g.file.ino === slot.gmem!.ino)!;
    const off = slot.gmemPgoff + (gfn - slot.baseGfn);
    this.stats.gfns += npages;
    if (this.spec.strategy === 'split-and-double-allocate') {
      // Either attribute ioctl: the VM's (6.8), or the file's when this VM uses the 2026 path
      // (its file has no MMAP flag here, so shared faults still go to the VMM's memory).
      const attributes = priv ? KVM_MEMORY_ATTRIBUTE_PRIVATE : 0;
      if (vm.attrPath === 'vm') vm.setMemoryAttributes({ address: gfn * 4096, size: npages * 4096, attributes });
      else if (fd.setMemoryAttributes2(ht, { offset: off * 4096, size: npages * 4096, attributes }) >= 0) fail('EAGAIN', `KVM_SET_MEMORY_ATTRIBUTES2 refused gfn 0x${gfn.toString(16)}: the file's pages are not host-mapped on this path`);
      if (priv) {
        // The end of the shared window: what was backed twice during it (the guest's and the
        // device's stores made the shared copy; the private frame was punched, or stranded).
        const d = this.doubleBacked(slot, gfn, npages);
        slot.gmem.addDouble(d);
        this.stats.doublePageConversions += d;
        vm.discardSharedGfns(slot, gfn, gfn + npages);
        slot.gmem.addDouble(-d);
      }
      else fd.fallocate(ht, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, off * 4096, npages * 4096);
      this.stats.rangeEntries += 1;
    } else {
      // Going private, the ioctl unmaps the VMM's own mapping of the range itself; only an extra
      // reference (a pin) refuses it with EAGAIN, which this VMM never takes: a bug, not retried.
      const bad = fd.setMemoryAttributes2(ht, { offset: off * 4096, size: npages * 4096, attributes: priv ? KVM_MEMORY_ATTRIBUTE_PRIVATE : 0 });
      if (bad >= 0) {
        this.stats.eagain++;
        fail('EAGAIN', `KVM_SET_MEMORY_ATTRIBUTES2: page at offset 0x${bad.toString(16)} is still referenced (pinned)`);
      }
      this.stats.rangeEntries += fd.lastRangeEntries;
    }
    if (!priv) this.deviceTouch(vm, slot, fd, gfn, npages);
  }

  private doubleBacked(slot: Memslot, gfn: number, npages: number): number {
    let d = 0;
    for (let g = gfn; g < gfn + npages; g++) {
      if (slot.vma!.lookup(slot.vmaOffset + (g - slot.baseGfn)) >= 0 && slot.gmem!.holdsPage(slot.gmemPgoff + (g - slot.baseGfn))) d++;
    }
    return d;
  }

  /** The device model's stores into the range just shared, through the VMM's own mapping. */
  private deviceTouch(vm: Vm, slot: Memslot, fd: GuestMemfd, gfn: number, npages: number): void {
    const ht = vm.ctx.hostThread;
    const m = vm.ctx.metrics;
    for (let i = 0; i < this.spec.hostTouches; i++) {
      const g = gfn + (i % npages);
      count(m, Op.vmm_access);
      if (slot.gmemOnly) {
        if (fd.hostAccess(ht, (slot.gmemPgoff + (g - slot.baseGfn)) * 4096, true, 1) === 'SIGBUS') fail('EFAULT', `the device model hit SIGBUS on gfn 0x${g.toString(16)} it was just given as shared`);
        continue;
      }
      const vma = slot.vma!;
      const pfn = hostFault(ht, vma, slot.vmaOffset + (g - slot.baseGfn));
      if (pfn < 0) fail('ENOMEM', `host out of memory for the shared copy of gfn 0x${g.toString(16)}`);
      if (ht.populated) {
        count(m, Op.host_fault);
        count(m, Op.frame_alloc);
        count(m, Op.page_zero_4k);
      }
      vm.host.frames.writeStamp(pfn, 0xfff, 1);
    }
  }
}
