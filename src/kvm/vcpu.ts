/**
 * A vCPU: runs a guest access stream through its software TLB and the SPTEs, exits to the TDP
 * fault handler on an EPT violation, honours requests (KVM_REQ_TLB_FLUSH) at every entry.
 *
 * Guest mode is explicit: `mode` is IN_GUEST_MODE only while the vCPU executes guest accesses,
 * and it re-checks mode before every access (standing in for the IPI a kick sends), so a remote
 * TLB flush that waits for running vCPUs really does keep them from writing through a stale
 * translation once it returns.
 */
import { fail } from '../host/errno.js';
import { EpochLayout } from '../shm/epoch.js';
import { count, countN } from '../metrics/counters.js';
import { Op } from '../metrics/ops.js';
import type { OpHistograms } from '../metrics/histogram.js';
import { TdpIter } from './mmu/tdp/iter.js';
import { PgLevel, Spte } from './mmu/spte.js';
import { eptWalk, WalkResult, walkOut } from './mmu/tdp/walk.js';
import { KvmPageFault, RetPf, kvmTdpPageFault, kvmTdpPageFaultResume } from './mmu/tdp/fault.js';
import { WaiterState, type Userfaultfd } from '../host/userfaultfd.js';
import { tlbFill, tlbFlagsOf, tlbFlushAll, tlbLookup } from './mmu/tlb.js';
import { kvmMemIsPrivate } from './attributes.js';
import { VcpuMode, KvmReq, KvmExit, VcpuLayout } from './vcpu-layout.js';
import {
  VcpuStat, kVcpuStatDescs, kVcpuStatNames, kHarnessVcpuStatNames, encodeBinaryStats, type HarnessVcpuStats, type VcpuStats,
} from './stats.js';
import { VmLayout } from './vm-layout.js';
import { GuestWalk } from './mmu/shadow/paging_tmpl.js';
import { kvmMmuTrackWrite, kvmShadowPageFault } from './mmu/shadow/page-fault.js';
import { writeGuestPte } from './mmu/shadow/gpte.js';
import { SpRole } from './mmu/shadow/mmu-page.js';
import { pmlDrain, pmlEnabled, pmlLog } from './dirty/pml.js';
import { ringSoftFull } from './dirty/ring.js';
import type { Memslot } from './memslot.js';
import { vcpuRunBegin, vcpuRunEnd } from './run-exclusion.js';
import { kvmMakeAllCpusRequest } from './requests.js';
import type { Vm } from './vm.js';

/**
 * A guest access stream: next() returns the gfn of the next access (and sets `write`), or -1 when
 * done. Plain small integers only: no allocation per access.
 */
export interface AccessSource {
  /** The next access's gfn, -1 when done, or kAccessHypercall (the guest executes VMCALL: `hypercall`). */
  next(): number;
  /** Whether the access next() just returned is a store. */
  write: boolean;
  /** The hypercall when next() returned kAccessHypercall. */
  readonly hypercall?: GuestHypercall;
  /** The EPT12 root (an L1 gfn) when next() returned kAccessEnterL2. */
  readonly ept12Gfn?: number;
  /**
   * With guest paging: the guest PTE the store that next() just returned writes (into the page
   * table at that gfn), or null for an ordinary store. A store to a shadowed page table traps and
   * is emulated (kvm_mmu_track_write); otherwise it lands directly.
   */
  readonly pte?: { idx: number; lo: number; hi: number } | null;
  /**
   * Value written into a frame's stamp on stores (the memstress/dirty_log_test iteration). A
   * negative value: a store elsewhere in the page than the word the stamp stands for — checked
   * by the store oracle like every store, but it leaves the stamp as it is.
   */
  readonly iteration: number;
}

/** AccessSource.next()'s answer for a hypercall (the source's `hypercall` says which). */
export const kAccessHypercall = -2;
/** AccessSource.next()'s answer for L1's VMLAUNCH of a nested guest on the source's `ept12Gfn`. */
export const kAccessEnterL2 = -3;

/** KVM_HC_MAP_GPA_RANGE (include/uapi/linux/kvm_para.h) and its attribute bits. */
export const KVM_HC_MAP_GPA_RANGE = 12;
export const KVM_MAP_GPA_RANGE_ENCRYPTED = 1 << 4;
/** -KVM_ENOSYS: a hypercall the host does not handle. */
export const KVM_ENOSYS = 1000;

/** A guest hypercall (VMCALL): nr and args[0..2] (gpa, npages, attrs for KVM_HC_MAP_GPA_RANGE). */
export interface GuestHypercall {
  nr: number;
  args: number[];
  /** The value the guest reads back in RAX (the host's ret, or -KVM_ENOSYS). */
  ret: number;
}

/** run->hypercall of KVM_EXIT_HYPERCALL; `ret` is what userspace writes back. */
export class KvmRunHypercall {
  nr = 0;
  args = [0, 0, 0];
  ret = 0;
  flags = 0;
}

/** run->memory_fault of KVM_EXIT_MEMORY_FAULT. */
export class KvmRunMemoryFault {
  flags = 0;
  gpa = 0;
  size = 0;
}
/** KVM_MEMORY_EXIT_FLAG_PRIVATE */
export const KVM_MEMORY_EXIT_FLAG_PRIVATE = 1 << 3;

/** Float64 word of each vCPU stat this file bumps. */
const enum StatWord {
  pf_taken = VcpuLayout.kVcpuStats + VcpuStat.pf_taken,
  pf_fixed = VcpuLayout.kVcpuStats + VcpuStat.pf_fixed,
  pf_spurious = VcpuLayout.kVcpuStats + VcpuStat.pf_spurious,
  tlb_flush = VcpuLayout.kVcpuStats + VcpuStat.tlb_flush,
  exits = VcpuLayout.kVcpuStats + VcpuStat.exits,
  pf_fast = VcpuLayout.kVcpuStats + VcpuStat.pf_fast,
  pf_emulate = VcpuLayout.kVcpuStats + VcpuStat.pf_emulate,
  mmio_exits = VcpuLayout.kVcpuStats + VcpuStat.mmio_exits,
}

/**
 * run->mmio of struct kvm_run, valid while exitReason is KVM_EXIT_MMIO. Accesses here are
 * memstress's 8-byte loads and stores at the start of a page, so phys_addr is the gfn's
 * address and len 8. `data` is what a store wrote (the stream's iteration, the value stores
 * stamp into frames); for a load the VMM puts the value read there before the next run().
 */
export class KvmRunMmio {
  physAddr = 0;
  len = 0;
  isWrite = false;
  data = 0;
}

export class Vcpu {
  w!: Int32Array;
  f!: Float64Array;
  readonly fault = new KvmPageFault();
  iter!: TdpIter;
  private lastSlot: Memslot | null = null;
  /** vcpu->vcpu_id: the id userspace chose at KVM_CREATE_VCPU (sparse, < KVM_MAX_VCPU_IDS). */
  readonly id: number;
  /** Global id written into frame stamps (vm id << 12 | vcpu_id; vcpu_id < 4096 fits). */
  readonly stampId: number;
  /**
   * An exit to userspace (KVM_EXIT_MMIO, KVM_EXIT_DIRTY_RING_FULL): the run loop returns to its
   * caller. run->exit_reason; 0 when run() returned because the stream ended or the budget ran out.
   */
  pendingExit = 0;
  /** run->mmio of the last KVM_EXIT_MMIO. */
  readonly mmio = new KvmRunMmio();
  /** run->hypercall of the last KVM_EXIT_HYPERCALL; run->memory_fault of the last KVM_EXIT_MEMORY_FAULT. */
  readonly hypercall = new KvmRunHypercall();
  readonly memoryFault = new KvmRunMemoryFault();
  /** complete_hypercall_exit pending: run->hypercall.ret goes to the guest at the next run(). */
  private hypercallNeeded: GuestHypercall | null = null;
  /**
   * vcpu->mmio_needed with complete_userspace_io = complete_emulated_mmio: the emulated access
   * retires at the next run(), before the vCPU enters the guest again.
   */
  private mmioNeeded = false;
  /**
   * The access that was in flight when the exit was raised (gfn, or -1): it has not retired — as
   * in KVM, where the vCPU exits before re-entering the guest to retry the faulting store — and
   * is executed first at the next run().
   */
  private inflightGfn = -1;
  private inflightWrite = false;
  /** This vCPU's dirty ring (kvm_dirty_gfn entries as 4 Int32), when the ring is on. */
  ring: Int32Array | null = null;
  /** Whether PML logs this vCPU's D-bit transitions (re-read at every entry after a request). */
  private pml = false;
  /**
   * The userfaultfd this vCPU's thread sleeps on inside GUP (kvm_faultin_pfn -> handle_userfault),
   * or null. While set the vCPU is still inside KVM_RUN (running flag, SRCU read side: a memslot
   * update waits for it, as synchronize_srcu() waits for a vCPU blocked in a userfault), out of
   * guest mode, and run() returns 0 at once until a reader's wake_userfault() woke it.
   */
  uffdWait: Userfaultfd | null = null;
  /** The suspended fault's modeled ns so far, and its wall start and sampling (for the fault histogram). */
  private uffdFaultModeled = 0;
  /** Modeled ns the current fault slept in userfaults (not on the worker's clock: nothing ran). */
  private faultSleptNs = 0;
  private uffdFaultWall0 = 0;
  private uffdFaultTimeWall = false;
  /** >= 0: the userfault was resolved before the thread slept (its modeled ns); it only yielded. */
  private uffdWokenNs = -1;

  /**
   * `idx` is vcpu->vcpu_idx, the dense creation index (arrays, epoch participant, rings); the
   * vcpu_id was written into the vCPU's words at creation.
   */
  /** struct guest_walker of this vCPU's shadow faults. */
  readonly walker = new GuestWalk();
  /** Modeled-lock bookkeeping (mmu-lock.ts): the clock at the current acquisition, its wall wait, the phase start. */
  lockAcquiredAt = 0;
  lockWallWait = 0;
  lockPhaseStart = 0;
  /** mmu_lock wait histograms (read and write holds) of the current phase, or null. */
  lockHists: { read: OpHistograms; write: OpHistograms } | null = null;
  /** The metrics clock when the current run() began (modeledNow()). */
  private runT0 = 0;

  constructor(readonly vm: Vm, readonly idx: number) {
    this.reattach();
    this.id = this.w[VcpuLayout.kVcpuId]!;
    this.shadowPaging = !vm.tdpMmuEnabled;
    this.stampId = (vm.id << 12) | this.id;
  }

  reattach(): void {
    const sab = this.vm.vcpuWords[this.idx]!.buffer as SharedArrayBuffer;
    this.w = new Int32Array(sab);
    this.f = new Float64Array(sab);
    this.iter = new TdpIter(this.vm.pool.pt);
    this.lastSlot = null;
    this.slotsGen = -1;
    const ring = this.vm.rings[this.idx];
    this.ring = ring ? new Int32Array(ring) : null;
    this.pml = pmlEnabled(this.vm);
    this.stamps = this.vm.host.frames.stamps !== null;
  }

  /** This vCPU's modeled clock now: what earlier runs accumulated plus this run so far. */
  modeledNow(): number {
    return this.f[VcpuLayout.kVcpuStatModeledNs]! + (this.vm.ctx.metrics.t - this.runT0);
  }

  /** The guest's CR3 (KVM_SET_SREGS): the gfn of its PML4; the shadow MMU shadows from there. */
  get cr3Gfn(): number {
    return Atomics.load(this.w, VcpuLayout.kVcpuCr3Gfn);
  }
  setGuestCr3(gfn: number): void {
    if (!Number.isInteger(gfn) || gfn < 0) fail('EINVAL', `KVM_SET_SREGS: cr3 gfn must be a non-negative integer, got ${gfn}`);
    Atomics.store(this.w, VcpuLayout.kVcpuCr3Gfn, gfn);
    // A new CR3 needs a new root (kvm_mmu_new_pgd): the next fault loads it.
    Atomics.store(this.w, VcpuLayout.kVcpuShadowRoot, 0);
  }
  /** The shadow root this vCPU runs on (0: none loaded; the next access faults and loads it). */
  get shadowRoot(): number {
    return this.w[VcpuLayout.kVcpuShadowRoot]!;
  }
  set shadowRoot(sp: number) {
    Atomics.store(this.w, VcpuLayout.kVcpuShadowRoot, sp);
  }
  /** Role bits of this vCPU's shadow pages (role.guest_mode for an L2 root). */
  rootRoleBits(): number {
    return this.inL2 ? SpRole.kGuestMode : 0;
  }

  /**
   * This vCPU's accesses go through a shadow root: always without the TDP MMU; with it, while the
   * vCPU runs a nested guest (L2 under nested EPT, whose EPT12 tables KVM shadows).
   */
  shadowPaging = false;
  /** Running L2 (after enterL2()): the guest walk is L1's EPT12 for L2, the root is guest_mode. */
  inL2 = false;

  /**
   * VMLAUNCH of an L2 guest by L1 (nested_vmx_run -> kvm_init_shadow_ept_mmu): from now on this
   * vCPU's accesses are L2's, translated by the EPT12 tables at `ept12Gfn` (built by L1 in its
   * memory) and mapped by a guest_mode shadow root. The first such root of a TDP VM allocates
   * the memslot rmaps (lazy rmaps).
   */
  enterL2(ept12Gfn: number): void {
    if (!this.vm.tdpMmuEnabled) fail('EINVAL', 'nested guests are modelled on TDP-MMU VMs only (nested EPT)');
    this.inL2 = true;
    this.shadowPaging = true;
    this.setGuestCr3(ept12Gfn);
    tlbFlushAll(this.w);
  }

  /** run->exit_reason of the last run() (0: the stream ended or the budget ran out). */
  get exitReason(): number {
    return this.pendingExit;
  }

  /**
   * gfn_to_memslot() with the per-vCPU last-used cache (KVM's LRU slot, which is per memslot set:
   * it is dropped when the vCPU takes a new set at entry, syncOnEpoch()).
   */
  gfnToMemslot(gfn: number): Memslot | null {
    const s = this.lastSlot;
    if (s !== null && gfn >= s.baseGfn && gfn < s.baseGfn + s.npages) return s;
    const found = this.vm.lookupMemslot(gfn);
    if (found !== null) this.lastSlot = found;
    return found;
  }

  /** The memslot generation this vCPU's lastSlot belongs to. */
  private slotsGen = -1;

  /**
   * The epoch moved since this vCPU last entered: it may be an SRCU grace period of a memslot
   * update or a pool growth. Take the active memslot set (the SRCU read side: every fault until
   * the next such entry uses this one set) and, if the pool grew, this thread's new views of it.
   * Nothing of this runs on entries where the epoch did not move.
   */
  private syncOnEpoch(): void {
    const vm = this.vm;
    if (vm.syncMemslots() !== this.slotsGen) {
      this.slotsGen = vm.generation;
      this.lastSlot = null;
    }
    if (vm.pool.stale()) vm.refreshPool();
    this.iter.pt = vm.pool.pt;
  }

  /**
   * Run up to `budget` accesses from `src` in guest mode. Returns the number retired; fewer than
   * budget means the stream ended or an exit to userspace (pendingExit) was requested.
   * `hist` receives per-fault latency (wall sampled every `wallEvery` faults, modeled always).
   */
  run(src: AccessSource, budget: number, hist: OpHistograms | null = null, wallEvery = 1): number {
    // Asleep in handle_userfault(): nothing runs until the reader's wake.
    const uffd = this.uffdWait;
    if (uffd !== null && !this.uffdRunnable()) return 0;
    const vm = this.vm;
    const m = vm.ctx.metrics;
    const w = this.w;
    const t0 = m.t;
    this.runT0 = t0;
    const wall0 = performance.now();
    this.hist = hist;
    this.wallEvery = wallEvery;
    this.pendingExit = 0;
    let n = 0;
    if (uffd === null) {
      // kvm_arch_vcpu_ioctl_run(): complete_userspace_io() first, then vcpu_run().
      if (this.mmioNeeded) n = this.completeEmulatedMmio();
      if (this.hypercallNeeded !== null) n = this.completeHypercallExit();
      // A vCPU whose ring is still soft-full exits again right away (kvm_dirty_ring_check_request).
      if (this.ring !== null && ringSoftFull(this)) {
        this.pendingExit = KvmExit.KVM_EXIT_DIRTY_RING_FULL;
        this.f[VcpuLayout.kVcpuDirtyRingFullExits]!++;
        count(m, Op.ring_full_exit);
        this.f[VcpuLayout.kVcpuStatAccesses]! += n;
        return n;
      }
      vcpuRunBegin(vm.w, w, this.id);
    }
    this.pml = pmlEnabled(vm);
    // Page-stat changes of this run go to this vCPU's shard (mmu/page-stats.ts).
    const statShard = vm.statShard;
    vm.statShard = w;
    // A woken vCPU goes on inside its fault (still in KVM_RUN and the epoch); others enter.
    if (uffd === null) this.enterGuest();
    try {
    if (uffd !== null) this.resumeFromUffd(uffd);
    for (; n < budget && this.uffdWait === null; n++) {
      let gfn: number;
      let write: boolean;
      if (this.inflightGfn >= 0) {
        gfn = this.inflightGfn;
        write = this.inflightWrite;
        this.inflightGfn = -1;
      } else {
        gfn = src.next();
        if (gfn < 0) {
          if (gfn === kAccessHypercall && this.vmcall(src.hypercall!)) continue;
          if (gfn === kAccessEnterL2) {
            this.enterL2(src.ept12Gfn!);
            continue;
          }
          break;
        }
        write = src.write;
        // A guest page-table store (guest paging only): the PTE it writes rides with the access.
        if (src.pte !== undefined) this.pendingPte = write ? src.pte : null;
      }
      // A kick is noticed before each access; right after a fault's re-entry (which checked
      // requests) the first access goes ahead, as if the IPI landed one instruction later.
      if (Atomics.load(w, VcpuLayout.kVcpuMode) !== VcpuMode.IN_GUEST_MODE) this.handleKick();
      if (this.pendingExit === 0 && this.access(gfn, write, src.iteration)) continue;
      if (this.hypercallNeeded !== null) break;
      // An MMIO access is emulated: it retires when the VMM completes it (next run()).
      if (this.mmioNeeded) {
        this.mmio.data = write ? src.iteration : 0;
        break;
      }
      // An exit to userspace was raised (a dirty-ring push reached the soft limit), or the
      // thread fell asleep in a userfault, before this access retired: keep it for the next
      // run(), as KVM re-executes the faulting store.
      this.inflightGfn = gfn;
      this.inflightWrite = write;
      break;
    }
    } finally {
      // Even when a fault fails (EFAULT out of KVM_RUN): leave guest mode and the epoch, so
      // flushes do not wait for us and retired tables can be freed, and keep the stats. A vCPU
      // asleep in a userfault stays inside KVM_RUN and the epoch; it is out of guest mode.
      if (this.uffdWait === null) {
        this.exitGuest();
        vcpuRunEnd(w);
      } else {
        Atomics.notify(w, VcpuLayout.kVcpuMode);
      }
      vm.statShard = statShard;
      const f = this.f;
      f[VcpuLayout.kVcpuStatModeledNs]! += m.t - t0;
      f[VcpuLayout.kVcpuStatAccesses]! += n;
      f[VcpuLayout.kVcpuStatWallNs]! += (performance.now() - wall0) * 1e6;
    }
    return n;
  }

  /**
   * One guest access: TLB, else the EPT walk, else an EPT-violation exit into the fault handler,
   * until the access retires. Returns false when an exit to userspace was raised first.
   */
  private access(gfn: number, write: boolean, iteration: number): boolean {
    const vm = this.vm;
    const m = vm.ctx.metrics;
    const w = this.w;
    for (;;) {
      let pfn = tlbLookup(w, gfn, write);
      if (pfn >= 0) {
        // The retry after a fault that filled the TLB was priced there, as the miss and walk.
        if (this.refilled) this.refilled = false;
        else count(m, Op.tlb_hit);
      } else {
        // A flush at entry dropped the fault's fill: the retry misses and walks for real.
        this.refilled = false;
        count(m, Op.tlb_miss);
        if (eptWalk(vm.pool.pt, this.shadowPaging ? this.shadowRoot : vm.root, gfn, write, w) !== WalkResult.kWalkOk) {
          countN(m, Op.walk_step, walkOut.steps);
          this.exitForFault(gfn, write, walkOut.presentLeaf);
          if (this.pendingExit !== 0 || this.uffdWait !== null) return false;
          if (this.emulatedStore) {
            this.emulatedStore = false;
            count(m, Op.guest_access);
            return true;
          }
          continue;
        }
        countN(m, Op.walk_step, walkOut.steps);
        pfn = walkOut.pfn;
        tlbFill(w, gfn, pfn, walkOut.flags);
        // The CPU set D (0 -> 1): PML logs the gfn (a full buffer exits, and may fill the ring).
        if (walkOut.dirtied && this.pml) {
          pmlLog(this, gfn);
          if (this.pendingExit !== 0) return false;
        }
      }
      count(m, Op.guest_access);
      if (write && this.stamps) this.storeChecked(gfn, pfn, iteration);
      if (write && this.pendingPte !== null) this.storePte(pfn);
      return true;
    }
  }

  /**
   * The store oracle (on with content stamps): the frame written must be the one the host maps
   * for this gfn right now, through the slot of the newest published memslot set. The host drops
   * a page only after the invalidation's TLB flush completed, and a delete or move publishes the
   * set without the slot only after its zap and flush, so a store that misses is a write through
   * a stale translation. Not this vCPU's own set: inside an SRCU grace period it may still hold
   * the older one while the EPT already maps what a vCPU on the newer set faulted in — a good
   * store the old set cannot explain.
   */
  private storeChecked(gfn: number, pfn: number, iteration: number): void {
    const vm = this.vm;
    const slot = vm.lookupMemslotNewest(gfn);
    let host: number;
    if (slot !== null && (slot.gmem !== null || vm.privateMem)) host = this.expectedGmemPfn(slot, gfn);
    else host = slot === null || slot.vma === null ? -1 : slot.vma.lookup(slot.vmaOffset + (gfn - slot.baseGfn));
    if (host !== pfn) {
      if (Atomics.add(vm.w, VmLayout.kVmStaleWrites, 1) === 0) Atomics.store(vm.w, VmLayout.kVmStaleWriteGfn, gfn);
      return;
    }
    if (iteration >= 0) vm.host.frames.writeStamp(pfn, this.stampId, iteration);
  }

  /**
   * The frame a store to `gfn` may land on now: private gfns through the slot's guest_memfd,
   * shared ones through the file (gmem-only) or the host mapping — and the translation used
   * must have been made for the gfn's current attribute (kSptePrivate in the TLB entry), else
   * it is a write through a translation a conversion replaced, even when the pfn is the same
   * (in-place conversion keeps the folio). -1: nothing may be written.
   */
  private expectedGmemPfn(slot: Memslot, gfn: number): number {
    const priv = kvmMemIsPrivate(this.vm, slot, gfn);
    if (((tlbFlagsOf(this.w, gfn) & Spte.kSptePrivate) !== 0) !== priv) return -1;
    const off = slot.gmemPgoff + (gfn - slot.baseGfn);
    if (priv) return slot.gmem === null ? -1 : slot.gmem.lookup(off);
    if (slot.gmemOnly) return slot.gmem!.isPrivate(off) ? -1 : slot.gmem!.lookup(off);
    return slot.vma === null ? -1 : slot.vma.lookup(slot.vmaOffset + (gfn - slot.baseGfn));
  }

  /** Fault-latency histogram of the current run() and its wall-clock sampling. */
  private hist: OpHistograms | null = null;
  private wallEvery = 1;
  private faultCount = 0;
  /** The TLB entry the retried access will hit was filled (and priced) by the fault. */
  private refilled = false;
  /** Content stamps on: stores are stamped and checked against the host mapping. */
  private stamps = false;

  private exitForFault(gfn: number, write: boolean, present: boolean): void {
    const m = this.vm.ctx.metrics;
    const hist = this.hist;
    const timeWall = hist !== null && this.faultCount++ % this.wallEvery === 0;
    const w = this.w;
    // vmx_flush_pml_buffer() on every exit, before the VMM can see us outside guest mode.
    if (w[VcpuLayout.kVcpuPmlIndex] !== 0) pmlDrain(this);
    // vcpu_enter_guest() after a VM exit: `vcpu->mode = OUTSIDE_GUEST_MODE; smp_wmb();`, a plain
    // store, not smp_store_mb(). Only entry needs the full barrier (the Dekker pair with kickers,
    // in enterGuest); a kicker that still sees IN or EXITING here waits a little longer. The
    // accesses and PML drain before it are seq-cst atomics or stores x86 keeps in order.
    w[VcpuLayout.kVcpuMode] = VcpuMode.OUTSIDE_GUEST_MODE;
    count(m, Op.vm_exit);
    const f = this.f;
    f[StatWord.exits]!++;
    // kvm_mmu_do_page_fault() counts pf_taken before the fault runs (a fault that fails counts).
    f[StatWord.pf_taken]!++;
    const tm = m.t;
    const tw = timeWall ? performance.now() : 0;
    this.faultSleptNs = 0;
    this.vm.ctx.hostThread.faultTimed = timeWall;
    const r = this.shadowPaging ? kvmShadowPageFault(this, gfn, write) : kvmTdpPageFault(this, gfn, write, present);
    if (r === RetPf.RET_PF_UFFD_BLOCKED) this.sleepInUffd(tm, tw, timeWall);
    else this.finishFault(r, gfn, write, tm, tw, timeWall);
  }

  /** The fault sleeps in handle_userfault(): remember what its histogram entry needs. */
  private sleepInUffd(tm: number, tw: number, timeWall: boolean): void {
    const ht = this.vm.ctx.hostThread;
    this.uffdWait = ht.uffdBlocked;
    ht.uffdBlocked = null;
    this.uffdWokenNs = ht.uffdSleptNs;
    ht.uffdSleptNs = -1;
    this.uffdFaultModeled = this.vm.ctx.metrics.t - tm;
    this.uffdFaultWall0 = tw;
    this.uffdFaultTimeWall = timeWall;
  }

  /**
   * Woken: the time asleep goes into this vCPU's modeled clock as the modeled ns of the
   * resolution that woke it (the reader's read, -d delay and ioctl; a fixed function of ops, not
   * of how long the thread really waited), and the fault goes on from GUP.
   */
  private resumeFromUffd(uffd: Userfaultfd): void {
    const m = this.vm.ctx.metrics;
    this.uffdWait = null;
    this.sleptInUffd(this.uffdWokenNs >= 0 ? this.uffdWokenNs : uffd.finishWait(this.idx));
    this.uffdWokenNs = -1;
    // The histogram's modeled latency: before the sleep, the sleep (faultSleptNs), what follows.
    const tm = m.t - this.uffdFaultModeled;
    count(m, Op.uffd_resume);
    const r = kvmTdpPageFaultResume(this);
    const fault = this.fault;
    if (r === RetPf.RET_PF_UFFD_BLOCKED) this.sleepInUffd(tm, this.uffdFaultWall0, this.uffdFaultTimeWall);
    else this.finishFault(r, fault.gfn, fault.write, tm, this.uffdFaultWall0, this.uffdFaultTimeWall);
  }

  /**
   * Not asleep in a userfault, or woken (the Atomics.load pairs with the seq-cst store of kWoken
   * in Userfaultfd.wake(), after its resolveNs write).
   */
  uffdRunnable(): boolean {
    const u = this.uffdWait;
    return u === null || this.uffdWokenNs >= 0 || u.waiterState(this.idx) === WaiterState.kWoken;
  }

  /**
   * The vCPU's thread spent `ns` (modeled) in userspace handling its exit (the selftests' and
   * QEMU's vCPU threads call the VM ioctls of a conversion themselves): its clock moves by it.
   */
  chargeUserspaceNs(ns: number): void {
    this.f[VcpuLayout.kVcpuStatModeledNs]! += ns;
  }

  /** The current fault slept `ns` (modeled) in a userfault: the vCPU's clock moves by as much. */
  sleptInUffd(ns: number): void {
    this.f[VcpuLayout.kVcpuStatModeledNs]! += ns;
    this.faultSleptNs += ns;
  }

  /** The fault returned: stats, the TLB fill for the retried access, the histogram, re-entry. */
  private finishFault(r: number, gfn: number, write: boolean, tm: number, tw: number, timeWall: boolean): void {
    const m = this.vm.ctx.metrics;
    const hist = this.hist;
    const w = this.w;
    const f = this.f;
    if (r === RetPf.RET_PF_EMULATE) {
      this.emulateMmio(gfn, write);
      return;
    }
    if (r === RetPf.RET_PF_MEMORY_FAULT) {
      this.memoryFaultExit(gfn);
      return;
    }
    if (r === RetPf.RET_PF_WRITE_PROTECTED) {
      this.emulatePtWrite(gfn, tm, tw, timeWall);
      return;
    }
    if (r === RetPf.RET_PF_FIXED) f[StatWord.pf_fixed]!++;
    else if (r === RetPf.RET_PF_SPURIOUS) f[StatWord.pf_spurious]!++;
    // The retried access would re-walk and find this leaf. Fill the TLB from the fault instead
    // (the walk is still priced), but only when the walk would not have to set A/D, and before
    // entering guest mode, so a flush requested meanwhile drops the entry at entry.
    const fault = this.fault;
    const need = write ? Spte.SPTE_ACCESSED | Spte.SPTE_DIRTY | Spte.PT_WRITABLE_MASK : Spte.SPTE_ACCESSED;
    if (fault.leafFlags !== 0 && (fault.leafFlags & need) === need) {
      tlbFill(w, gfn, fault.leafPfn, fault.leafFlags);
      this.refilled = true;
      count(m, Op.tlb_miss);
      countN(m, Op.walk_step, PgLevel.PT64_ROOT_4LEVEL + 1 - fault.leafLevel);
    }
    if (hist !== null) {
      if (timeWall) hist.wall.recordValue(Math.max(1, Math.round((performance.now() - tw) * 1e6)));
      hist.recordModeled(m.t - tm + this.faultSleptNs);
    }
    this.enterGuest();
  }

  /**
   * RET_PF_EMULATE: x86_emulate_instruction() finds no in-kernel device for the address (an
   * access outside every memslot, or a store to a KVM_MEM_READONLY slot), so the access goes to
   * the VMM as KVM_EXIT_MMIO (mmio_exits++) and the vCPU stays out of the guest. A fault that
   * came through kvm_mmu_do_page_fault() counts pf_taken and pf_emulate; the EPT-misconfig path
   * on a cached MMIO SPTE (fault.rsvd) counts neither.
   */
  private emulateMmio(gfn: number, write: boolean): void {
    const f = this.f;
    // The EPT-misconfig path never reached kvm_mmu_do_page_fault(): take back its pf_taken.
    if (this.fault.rsvd) f[StatWord.pf_taken]!--;
    else f[StatWord.pf_emulate]!++;
    f[StatWord.mmio_exits]!++;
    count(this.vm.ctx.metrics, Op.mmio_exit);
    const mmio = this.mmio;
    mmio.physAddr = gfn * 4096;
    mmio.len = 8;
    mmio.isWrite = write;
    mmio.data = 0;
    this.mmioNeeded = true;
    this.pendingExit = KvmExit.KVM_EXIT_MMIO;
  }

  /**
   * The guest's VMCALL (a VM exit): KVM_HC_MAP_GPA_RANGE goes to userspace as KVM_EXIT_HYPERCALL
   * when the VMM enabled it in KVM_CAP_EXIT_HYPERCALL (else the guest reads -KVM_ENOSYS). Returns
   * true when the guest goes on at once (no exit to userspace).
   */
  private vmcall(hc: GuestHypercall): boolean {
    const m = this.vm.ctx.metrics;
    count(m, Op.vm_exit);
    this.f[StatWord.exits]!++;
    this.f[VcpuLayout.kVcpuStats + VcpuStat.hypercalls]!++;
    if (hc.nr !== KVM_HC_MAP_GPA_RANGE || (this.vm.hypercallExitMask & (1 << KVM_HC_MAP_GPA_RANGE)) === 0) {
      hc.ret = -KVM_ENOSYS;
      return true;
    }
    count(m, Op.userspace_exit);
    const run = this.hypercall;
    run.nr = hc.nr;
    run.args[0] = hc.args[0]!;
    run.args[1] = hc.args[1]!;
    run.args[2] = hc.args[2]!;
    run.ret = 0;
    run.flags = 0;
    this.hypercallNeeded = hc;
    this.pendingExit = KvmExit.KVM_EXIT_HYPERCALL;
    return false;
  }

  /** complete_hypercall_exit(): run->hypercall.ret is the guest's RAX; the VMCALL retires. */
  private completeHypercallExit(): number {
    this.hypercallNeeded!.ret = this.hypercall.ret;
    this.hypercallNeeded = null;
    count(this.vm.ctx.metrics, Op.guest_access);
    return 1;
  }

  /**
   * kvm_mmu_prepare_memory_fault_exit(): KVM_RUN returns -EFAULT with KVM_EXIT_MEMORY_FAULT
   * (gpa, size, flags: private if the access was); the access retries at the next run(), after
   * the VMM converted the page (or gave up).
   */
  private memoryFaultExit(gfn: number): void {
    const mf = this.memoryFault;
    mf.gpa = gfn * 4096;
    mf.size = 4096;
    mf.flags = this.fault.isPrivate ? KVM_MEMORY_EXIT_FLAG_PRIVATE : 0;
    count(this.vm.ctx.metrics, Op.userspace_exit);
    this.f[VcpuLayout.kVcpuMemoryFaultExits]!++;
    this.pendingExit = KvmExit.KVM_EXIT_MEMORY_FAULT;
  }

  /** The guest PTE the access in flight stores (AccessSource.pte), or null. */
  pendingPte: { idx: number; lo: number; hi: number } | null = null;

  /** A store through the guest's own mapping to a page-table page: the PTE lands in its content. */
  private storePte(pfn: number): void {
    const p = this.pendingPte!;
    const content = this.vm.host.content;
    if (content !== null) writeGuestPte(content.words, content.getOrCreate(pfn), p.idx, p.lo, p.hi);
  }

  /**
   * RET_PF_WRITE_PROTECTED: the store hit a shadowed guest page table. x86_emulate_instruction()
   * performs it — kvm_mmu_track_write() first drops the shadow entries it invalidates — and the
   * access retires without the guest retrying it (the vCPU re-enters after the emulated store).
   */
  private emulatePtWrite(gfn: number, tm: number, tw: number, timeWall: boolean): void {
    const m = this.vm.ctx.metrics;
    count(m, Op.emulate_pt_write);
    this.f[StatWord.pf_emulate]!++;
    const p = this.pendingPte;
    const gpa = this.fault.gfn;
    kvmMmuTrackWrite(this, gpa, p === null ? 0 : p.idx);
    if (p !== null) {
      const content = this.vm.host.content;
      const off = this.vm.guestMem.contentOfGfn(gpa);
      if (content !== null && off >= 0) writeGuestPte(content.words, off, p.idx, p.lo, p.hi);
    }
    this.emulatedStore = true;
    const hist = this.hist;
    if (hist !== null) {
      if (timeWall) hist.wall.recordValue(Math.max(1, Math.round((performance.now() - tw) * 1e6)));
      hist.recordModeled(m.t - tm);
    }
    void gfn;
    this.enterGuest();
  }
  /** The access in flight was completed by emulation (it retires without a TLB fill). */
  emulatedStore = false;

  /** complete_emulated_mmio(): the VMM handled run->mmio; the emulated access retires. */
  private completeEmulatedMmio(): number {
    this.mmioNeeded = false;
    count(this.vm.ctx.metrics, Op.guest_access);
    return 1;
  }

  /** vcpu_enter_guest(): publish IN_GUEST_MODE, then re-check requests (Dekker with kickers). */
  enterGuest(): void {
    const w = this.w;
    for (;;) {
      const e = this.vm.epoch.enterIfMoved(this.idx, this.epochSeen);
      // A newer epoch lets tables retired before it be freed: drop the walker's cached tables.
      if (e !== this.epochSeen) {
        w[VcpuLayout.kVcpuPscGen] = (w[VcpuLayout.kVcpuPscGen]! + 1) | 0;
        this.syncOnEpoch();
      }
      this.epochSeen = e;
      Atomics.store(w, VcpuLayout.kVcpuMode, VcpuMode.IN_GUEST_MODE);
      if (Atomics.load(w, VcpuLayout.kVcpuRequests) === 0) return;
      Atomics.store(w, VcpuLayout.kVcpuMode, VcpuMode.OUTSIDE_GUEST_MODE);
      this.processRequests();
    }
  }

  exitGuest(): void {
    if (this.w[VcpuLayout.kVcpuPmlIndex] !== 0) pmlDrain(this);
    Atomics.store(this.w, VcpuLayout.kVcpuMode, VcpuMode.OUTSIDE_GUEST_MODE);
    Atomics.notify(this.w, VcpuLayout.kVcpuMode);
    this.processRequests();
    this.vm.epoch.exit(this.idx);
    this.epochSeen = EpochLayout.kEpochIdle;
  }

  /** Epoch this vCPU last published (kEpochIdle outside a run slice). */
  private epochSeen = EpochLayout.kEpochIdle;

  /** A kick arrived (mode was moved to EXITING): leave guest mode, serve requests, re-enter. */
  private handleKick(): void {
    const w = this.w;
    if (w[VcpuLayout.kVcpuPmlIndex] !== 0) pmlDrain(this);
    Atomics.store(w, VcpuLayout.kVcpuMode, VcpuMode.OUTSIDE_GUEST_MODE);
    Atomics.notify(w, VcpuLayout.kVcpuMode);
    this.f[StatWord.exits]!++;
    this.processRequests();
    this.enterGuest();
  }

  private processRequests(): void {
    const req = Atomics.exchange(this.w, VcpuLayout.kVcpuRequests, 0);
    if ((req & KvmReq.KVM_REQ_TLB_FLUSH) !== 0) {
      tlbFlushAll(this.w);
      this.f[StatWord.tlb_flush]!++;
      count(this.vm.ctx.metrics, Op.tlb_flush_vcpu);
    }
    if ((req & KvmReq.KVM_REQ_UPDATE_CPU_DIRTY_LOGGING) !== 0) this.pml = pmlEnabled(this.vm);
    // KVM_REQ_FLUSH_CPU_DIRTY_LOG needs nothing more: the exit that served it drained PML.
  }

  countFastFault(): void {
    this.f[StatWord.pf_fast]!++;
  }

  /**
   * mmu_topup_memory_caches(): enough page-table pages for one fault, before mmu_lock. Returns
   * true when it had to leave the epoch to get them (topupMmuCacheQuiescent): the fault must then
   * start over, since the epoch is also its SRCU read side — a memslot update may have passed
   * its grace period meanwhile, and the slot the fault looked up may be gone.
   */
  topupMmuCache(): boolean {
    const w = this.w;
    const n = w[VcpuLayout.kVcpuMmuCacheCount]!;
    if (n >= VcpuLayout.kMmuCacheMin) return false;
    const got = this.vm.pool.allocBatch(w, VcpuLayout.kVcpuMmuCache + n, VcpuLayout.kMmuCacheMax - n);
    w[VcpuLayout.kVcpuMmuCacheCount] = n + got;
    if (n + got !== 0) return false;
    this.topupMmuCacheQuiescent();
    return true;
  }

  /**
   * The pool is empty, typically of tables retired but not yet reclaimable. mmu_topup_memory_caches()
   * runs outside any RCU read-side section, so leave the epoch (this vCPU holds no table here; its
   * cached ones are dropped on re-entry) and kick the other vCPUs so each republishes a newer
   * epoch at its next entry; then let allocBatch's reclaim free what nobody can reach. Bounded:
   * ENOMEM if the pool stays empty for ~100 ms.
   */
  private topupMmuCacheQuiescent(): void {
    const vm = this.vm;
    const w = this.w;
    vm.epoch.exit(this.idx);
    try {
      kvmMakeAllCpusRequest(vm, 0, false);
      const nap = new Int32Array(new SharedArrayBuffer(4));
      for (let attempt = 0; attempt < 100; attempt++) {
        const got = vm.pool.allocBatch(w, VcpuLayout.kVcpuMmuCache, VcpuLayout.kMmuCacheMax);
        if (got > 0) {
          w[VcpuLayout.kVcpuMmuCacheCount] = got;
          return;
        }
        Atomics.wait(nap, 0, 0, 1);
      }
      fail('ENOMEM', `VM ${vm.id}: page-table page pool exhausted`);
    } finally {
      this.epochSeen = vm.epoch.enterIfMoved(this.idx, EpochLayout.kEpochIdle);
      w[VcpuLayout.kVcpuPscGen] = (w[VcpuLayout.kVcpuPscGen]! + 1) | 0;
      // The pages just taken may come from a growth this vCPU slept through.
      this.syncOnEpoch();
    }
  }

  /**
   * Top up for a noslot fault: false instead of ENOMEM when the pool cannot give the pages one
   * 4K mapping may need (the pool is sized for the memslots; an MMIO SPTE then goes uncached).
   */
  tryTopupMmuCache(): boolean {
    const w = this.w;
    const n = w[VcpuLayout.kVcpuMmuCacheCount]!;
    if (n >= PgLevel.PT64_ROOT_4LEVEL - 1) return true;
    const got = this.vm.pool.allocBatch(w, VcpuLayout.kVcpuMmuCache + n, VcpuLayout.kMmuCacheMax - n);
    w[VcpuLayout.kVcpuMmuCacheCount] = n + got;
    return n + got >= PgLevel.PT64_ROOT_4LEVEL - 1;
  }

  takeMmuPage(): number {
    const w = this.w;
    const n = w[VcpuLayout.kVcpuMmuCacheCount]! - 1;
    if (n < 0) fail('ENOMEM', `VM ${this.vm.id}: vCPU ${this.id} page cache empty under mmu_lock`);
    w[VcpuLayout.kVcpuMmuCacheCount] = n;
    return w[VcpuLayout.kVcpuMmuCache + n]!;
  }

  returnMmuPage(sp: number): void {
    const w = this.w;
    const n = w[VcpuLayout.kVcpuMmuCacheCount]!;
    w[VcpuLayout.kVcpuMmuCache + n] = sp;
    w[VcpuLayout.kVcpuMmuCacheCount] = n + 1;
  }

  /** Pages this vCPU holds in its cache (for the audit). */
  cachedMmuPages(): number[] {
    const w = this.w;
    const out: number[] = [];
    for (let i = 0; i < w[VcpuLayout.kVcpuMmuCacheCount]!; i++) out.push(w[VcpuLayout.kVcpuMmuCache + i]!);
    return out;
  }

  /** The host zeroed a newly populated folio of `order`. */
  countZeroing(order: number): void {
    const m = this.vm.ctx.metrics;
    count(m, Op.frame_alloc);
    countN(m, Op.page_zero_4k, 1 << order);
  }

  /** Every scalar KVM vCPU stat by name (struct kvm_vcpu_stat; histograms are in getStatsFd()). */
  getStats(): VcpuStats {
    const out = {} as VcpuStats;
    for (const d of kVcpuStatDescs) {
      if (d.size === 1) out[d.name as (typeof kVcpuStatNames)[number]] = this.f[VcpuLayout.kVcpuStats + d.offset / 8]!;
    }
    return out;
  }

  /** KVM_GET_STATS_FD on the vCPU: id "kvm-<pid>/vcpu-<vcpu_id>", x86's descriptors in KVM's order. */
  getStatsFd(): Buffer {
    return encodeBinaryStats(`kvm-${process.pid}/vcpu-${this.id}`, kVcpuStatDescs, (word) => this.f[VcpuLayout.kVcpuStats + word]!);
  }

  /** The harness's own per-vCPU counters (not KVM stats). */
  harnessStats(): HarnessVcpuStats {
    const out = {} as HarnessVcpuStats;
    kHarnessVcpuStatNames.forEach((name, i) => (out[name] = this.f[VcpuLayout.kVcpuDirtyRingFullExits + i]!));
    return out;
  }

  modeledNs(): number {
    return this.f[VcpuLayout.kVcpuStatModeledNs]!;
  }
  accesses(): number {
    return this.f[VcpuLayout.kVcpuStatAccesses]!;
  }
  /** The pf_taken stat (EPT-violation exits into the fault path) without building getStats(). */
  pfTaken(): number {
    return this.f[VcpuLayout.kVcpuStats + VcpuStat.pf_taken]!;
  }
  wallNs(): number {
    return this.f[VcpuLayout.kVcpuStatWallNs]!;
  }
}
