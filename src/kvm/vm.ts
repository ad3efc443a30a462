/**
 * A VM: KVM's `struct kvm` with the uAPI that selftests drive (KVM_SET_USER_MEMORY_REGION2,
 * KVM_CREATE_VCPU, stats) plus the mmu_notifier entry point a host-side invalidation uses.
 *
 * All state that threads share lives in SABs; a `Vm` object is one thread's view of it. The main
 * thread creates VMs; workers `Vm.attach()` the handle. Memslots (memslots.ts) and the page-table
 * pool (pt-pages.ts) change while vCPUs run: the slot sets live in shared memory and are swapped
 * under SRCU, the pool grows in place; vCPUs pick both up at their next guest entry. VMAs and
 * vCPUs added later reach a worker with the next handle (kVmLayoutGen); KVM_CREATE_VCPU is
 * still refused while vCPUs run (run-exclusion.ts).
 */
import { MessageChannel, receiveMessageOnPort, type MessagePort } from 'node:worker_threads';
import { allocSab } from '../shm/arena.js';
import { EpochDomain } from '../shm/epoch.js';
import { readLock, readUnlock, writeLock, writeUnlock, type RwReaders } from '../shm/rwlock.js';
import { fail } from '../host/errno.js';
import type { Host, HostThread, NumaPolicy } from '../host/host.js';
import { Vma, type VmaHandle, type BackingSource, backingPageOrder, dontneedExtent, hostFault, isBackingSource, madviseDontneed, truncatePageCache } from '../host/mm.js';
import { count, countN, countWaitNs, type Metrics } from '../metrics/counters.js';
import { Op } from '../metrics/ops.js';
import {
  KVM_MEM_GUEST_MEMFD, KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_READONLY, KVM_MEMSLOT_INVALID, KVM_USER_MEM_SLOTS, Memslot, kMaxGfn, kValidMemslotFlags, TASK_SIZE_MAX,
} from './memslot.js';
import { Memslots, MsRec, type MemslotsHandle } from './memslots.js';
import { PtPool, type PtPoolHandle, kPtPoolMaxPages } from './mmu/tdp/pt-pages.js';
import { ShadowPages, ShadowCtl, SpInfo, type ShadowMmuHandle } from './mmu/shadow/mmu-page.js';
import { RmapArena, RmapIterator, type RmapArenaHandle } from './mmu/shadow/rmap.js';
import { rmapZapGfnRange, slotRmapHeadBytes } from './mmu/shadow/rmap-ops.js';
import { kvmMmuCommitZapPage, kvmMmuPrepareZapPage, kvmShadowZapAll } from './mmu/shadow/zap.js';
import { TimelineRwlock } from '../shm/timeline-rwlock.js';
import type { GuestPtMemory } from './mmu/shadow/gpte.js';
import { TdpIter } from './mmu/tdp/iter.js';
import { tdpMmuZapLeafs, tdpMmuZapRange } from './mmu/tdp/zap.js';
import { PgLevel, PtLayout } from './mmu/spte.js';
import { kvmFlushRemoteTlbs } from './requests.js';
import { kvmMmuInvalidateBegin, kvmMmuInvalidateEnd, kvmMmuInvalidateRangeAdd } from './invalidate.js';
import { VmLayout } from './vm-layout.js';
import { withVcpusStopped } from './run-exclusion.js';
import { VcpuLayout, KvmReq } from './vcpu-layout.js';
import { kvmMakeAllCpusRequest } from './requests.js';
import { type DirtyStrategy, decodeStrategy, encodeStrategy, kDefaultDirtyStrategy, Strat } from './dirty/strategy.js';
import { kvmMmuSlotApplyFlags, type ApplyFlagsOutcome } from './dirty/apply-flags.js';
import { manualProtectAndInitSet } from './dirty/masked.js';
import { getDirtyLog, markPageDirtyInSlot } from './dirty/bitmap.js';
import { clearDirtyLog, type ClearDirtyLog } from './dirty/clear.js';
import { allocDirtyRing, harvestDirtyRings, resetDirtyRings } from './dirty/ring.js';
import { Spte } from './mmu/spte.js';
import { Vcpu } from './vcpu.js';
import { synchronizeSrcu } from './srcu.js';
import { type VmStats, type VcpuStats, readVmStats, vmStatsFd } from './stats.js';
import { spinLock, spinUnlock } from '../shm/spinlock.js';
import { type AttributesPath, type KvmMemoryAttributes, kAttrBitmapBytes, kvmMmuInitMemslotMemoryAttributes, kvmVmSetMemoryAttributes } from './attributes.js';
import {
  GuestMemfd, KVM_X86_DEFAULT_VM, KVM_X86_SW_PROTECTED_VM, type InPlaceSplit, type KvmCreateGuestMemfd, attachGuestMemfd, kvmGmemCreate,
} from './guest_memfd.js';
import type { GmemFile, GmemFileHandle } from '../gmem/gmem-file.js';
import {
  type Cap, type KvmEnableCap, KVM_MAX_VCPUS, KVM_MAX_VCPU_IDS, KVM_X86_QUIRK_SLOT_ZAP_ALL, kvmArchNrMemslotAsIds, kvmCheckExtension,
  kvmVmIoctlEnableCap,
} from './caps.js';

/** What a thread brings to every VM it touches: its counters and its frame caches. */
export interface ThreadCtx {
  metrics: Metrics;
  hostThread: HostThread;
}

export interface VmOptions {
  /**
   * kvm->max_vcpus, what KVM_CHECK_EXTENSION(KVM_CAP_MAX_VCPUS) on the VM reports: at most this
   * many vCPUs (1..KVM_MAX_VCPUS = 1024, the default); sizes the epoch domain.
   */
  maxVcpus?: number;
  /** Dirty-logging strategy (module parameters / kernel generation); defaults: upstream KVM. */
  strategy?: Partial<DirtyStrategy>;
  /** KVM_CREATE_VM's type: KVM_X86_DEFAULT_VM (0) or KVM_X86_SW_PROTECTED_VM (1). */
  type?: number;
  /**
   * Which ioctl sets memory attributes on a VM with private memory (a module parameter in the
   * in-place conversion series; mutually exclusive): 'vm' KVM_SET_MEMORY_ATTRIBUTES (6.8, the
   * default), 'gmem' KVM_SET_MEMORY_ATTRIBUTES2 on the guest_memfd.
   */
  attributes?: AttributesPath;
  /**
   * tdp_enabled (kvm-intel.ept / kvm_amd.npt): 'tdp' (the default) runs the TDP MMU; 'shadow'
   * (ept=0) runs the legacy shadow MMU, which shadows the guest's own page tables (the guest must
   * run with paging: Vcpu.setGuestCr3) and takes mmu_lock for write on every fault.
   */
  mmu?: MmuMode;
  /**
   * Memslot rmaps with the TDP MMU: 'lazy' (5.13+, the default) until the first shadow root (a
   * nested guest), 'eager' at every memslot's creation (before the lazy-rmap series). The shadow
   * MMU always has them.
   */
  rmaps?: RmapsMode;
  /**
   * Place vCPU-side mmu_lock holds on a modeled-time timeline (mmu-lock.ts), so waiting for the
   * lock shows in modeled time: on by default with the shadow MMU, off with the TDP MMU (whose
   * vCPUs only share it for read unless a nested guest runs).
   */
  lockModel?: boolean;
}

export type MmuMode = 'tdp' | 'shadow';
export type RmapsMode = 'eager' | 'lazy';

export interface UserspaceMemoryRegion2 {
  slot: number;
  flags: number;
  guestPhysAddr: number;
  memorySize: number;
  userspaceAddr: number;
  /** With KVM_MEM_GUEST_MEMFD: the file (KVM_CREATE_GUEST_MEMFD's fd) and guest_memfd_offset (bytes). */
  guestMemfd?: GuestMemfd;
  guestMemfdOffset?: number;
}

export interface MmapOptions {
  size: number;
  backing: BackingSource;
  policy?: NumaPolicy;
}

export interface VmHandle {
  readonly id: number;
  readonly maxVcpus: number;
  readonly words: SharedArrayBuffer;
  readonly epoch: SharedArrayBuffer;
  readonly pool: PtPoolHandle;
  /** The memslot sets: shared, so slots need no re-attach. */
  readonly memslots: MemslotsHandle;
  readonly vmas: VmaHandle[];
  readonly vcpus: SharedArrayBuffer[];
  /** Per-vCPU dirty rings (null when the ring is off). */
  readonly rings: (SharedArrayBuffer | null)[];
  /** kVmLayoutGen when the handle was taken (VMAs and vCPUs). */
  readonly layoutGen: number;
  readonly type: number;
  readonly attrPath: AttributesPath;
  /** The 'vm' attribute path's bitmap (SW_PROTECTED VMs only). */
  readonly attrBits: SharedArrayBuffer | null;
  readonly gmems: { h: GmemFileHandle; split: InPlaceSplit }[];
  readonly mmu: MmuMode;
  readonly rmapsMode: RmapsMode;
  readonly shadow: ShadowMmuHandle;
  readonly rmaps: RmapArenaHandle;
  readonly lockModel: SharedArrayBuffer | null;
}

/** Participants in the VM's epoch domain: one per vCPU plus the VMM thread. */
function vmmParticipant(maxVcpus: number): number {
  return maxVcpus;
}

const kHvaBase = 0x40000000;
/** A VM without the TDP MMU has no mmu_lock readers (withMmuReadLock takes the write side). */
const kNoReaders: RwReaders = { words: [], at: [] };

export class Vm {
  readonly id: number;
  /** Frame owner id (0 means "no owner"). */
  readonly owner: number;
  readonly maxVcpus: number;
  readonly w: Int32Array;
  readonly epoch: EpochDomain;
  pool: PtPool;
  /** This thread's iterator for VMM-side operations. */
  iter: TdpIter;
  /** The memslot sets (shared) and, on the VMM thread, its id hash and gfn arrays. */
  readonly ms: Memslots;
  /**
   * This thread's memslot generation (kvm_memslots()->generation) and the set it names: the VMM's
   * current one on the VMM thread, the one its vCPUs last entered the guest with elsewhere.
   */
  generation: number;
  activeSet: Int32Array;
  readonly vmas: Vma[] = [];
  readonly vcpuWords: Int32Array[] = [];
  readonly rings: (SharedArrayBuffer | null)[] = [];
  readonly vcpus: Vcpu[] = [];
  /** KVM_CREATE_GUEST_MEMFD's files, by index (memslot records name them). */
  readonly gmems: GuestMemfd[] = [];
  layoutGen = 0;
  /** KVM_CREATE_VM's type. */
  readonly vmType: number;
  /** kvm_arch_has_private_mem(): a KVM_X86_SW_PROTECTED_VM. */
  readonly privateMem: boolean;
  readonly attrPath: AttributesPath;
  /** The 'vm' path's attribute bitmap (1 bit per gfn), or null. */
  readonly attrBits: Int32Array | null;
  /**
   * The epoch participant and mmu_lock reader indicator this thread's VMM-side calls use: the
   * VMM's own, or, while a vCPU's thread handles that vCPU's exit (the selftests' vCPU threads
   * call KVM_SET_MEMORY_ATTRIBUTES themselves), the vCPU's, which is free outside KVM_RUN.
   */
  private vmmIdx: number;
  private vmmReaderWords: Int32Array;
  private vmmReaderAt: number;
  private nextHva = kHvaBase;
  /**
   * mmu_lock's readers, for the write side to drain (rwlock.ts): the VMM's indicator and every
   * vCPU's. Rebuilt whenever vcpuWords changes.
   */
  mmuLockReaders: RwReaders = { words: [], at: [] };
  /**
   * This thread's shard of the page stats (mmu/page-stats.ts): the words of the vCPU of this VM
   * running on this thread (run() puts them here), or null for the VMM's shard in the VM's words.
   */
  statShard: Int32Array | null = null;
  /** Page-table pages every slot needs mapped at 4K (the pool's sizing, kept as slots change). */
  private poolNeed = 1;
  /** Of those, the 4K leaf tables (one per 512 pages of each slot): what a 4K mapping really uses. */
  private poolLeafNeed = 0;
  /** tdp_enabled: the TDP MMU maps the guest (false: the shadow MMU, `--mmu shadow`). */
  readonly tdpMmuEnabled: boolean;
  readonly rmapsMode: RmapsMode;
  /** The shadow MMU's pages (kvm_mmu_page metadata, hash, stats): present on every VM, used by shadow roots. */
  readonly sp: ShadowPages;
  /** Memslot rmaps (allocated per slot when kvm_memslots_have_rmaps()). */
  readonly rmaps: RmapArena;
  readonly rmapIter: RmapIterator;
  /** The modeled-time mmu_lock timeline, or null (mmu-lock.ts). */
  readonly lockModel: TimelineRwlock | null;
  /** Guest memory as the shadow MMU's guest walk reads it (gfn -> hva -> frame content). */
  readonly guestMem: GuestPtMemory;
  /** Scratch for the shadow MMU's cold paths (parent lists, zap lists); mmu_lock held for write. */
  readonly shadowScratch: number[] = [];
  readonly shadowInvalid: number[] = [];

  private constructor(readonly host: Host, readonly ctx: ThreadCtx, h: VmHandle) {
    this.id = h.id;
    this.owner = h.id + 1;
    this.maxVcpus = h.maxVcpus;
    this.w = new Int32Array(h.words);
    this.epoch = new EpochDomain(h.epoch, h.maxVcpus + 1);
    this.pool = new PtPool(h.pool, this.w, this.epoch);
    this.iter = new TdpIter(this.pool.pt);
    this.ms = new Memslots(h.memslots, (id) => this.vmaById(id), (i) => this.gmems[i]?.file ?? null);
    this.generation = Atomics.load(this.w, VmLayout.kVmMemslotGen);
    this.activeSet = this.ms.sets[this.generation & 1]!;
    this.vmType = h.type;
    this.privateMem = h.type === KVM_X86_SW_PROTECTED_VM;
    this.attrPath = h.attrPath;
    this.attrBits = h.attrBits ? new Int32Array(h.attrBits) : null;
    this.vmmIdx = vmmParticipant(h.maxVcpus);
    this.vmmReaderWords = this.w;
    this.vmmReaderAt = VmLayout.kVmMmuLockVmmReader;
    this.tdpMmuEnabled = h.mmu === 'tdp';
    this.rmapsMode = h.rmapsMode;
    this.sp = new ShadowPages(h.shadow);
    this.rmaps = new RmapArena(h.rmaps);
    this.rmapIter = new RmapIterator(this.rmaps);
    this.lockModel = h.lockModel === null ? null : new TimelineRwlock(h.lockModel);
    this.guestMem = this.makeGuestMem();
    this.loadLayout(h);
  }

  /** KVM_CREATE_VM */
  static create(host: Host, id: number, ctx: ThreadCtx, opts: VmOptions = {}): Vm {
    const maxVcpus = opts.maxVcpus ?? KVM_MAX_VCPUS;
    if (!Number.isInteger(id) || id < 0 || id >= 4095) fail('EINVAL', `VM id must be 0..4094, got ${id}`);
    if (!Number.isInteger(maxVcpus) || maxVcpus < 1 || maxVcpus > KVM_MAX_VCPUS) fail('EINVAL', `maxVcpus must be 1..${KVM_MAX_VCPUS} (KVM_MAX_VCPUS), got ${maxVcpus}`);
    const type = opts.type ?? KVM_X86_DEFAULT_VM;
    // kvm_arch_init_vm(): only the types KVM_CAP_VM_TYPES reports.
    if (type !== KVM_X86_DEFAULT_VM && type !== KVM_X86_SW_PROTECTED_VM) fail('EINVAL', `KVM_CREATE_VM: type ${type} is not supported (KVM_CAP_VM_TYPES: KVM_X86_DEFAULT_VM, KVM_X86_SW_PROTECTED_VM)`);
    const attrPath = opts.attributes ?? 'vm';
    if (attrPath !== 'vm' && attrPath !== 'gmem') fail('EINVAL', `attributes path must be 'vm' or 'gmem', got '${String(attrPath)}'`);
    const words = allocSab(VmLayout.kVmWords * 4);
    const epoch = EpochDomain.create(maxVcpus + 1);
    const poolHandle = PtPool.createHandle(64);
    // The xarray's stand-in: 128 MiB of SAB, committed by the OS only where attributes are set.
    const attrBits = type === KVM_X86_SW_PROTECTED_VM && attrPath === 'vm' ? allocSab(kAttrBitmapBytes) : null;
    const mmu = opts.mmu ?? 'tdp';
    if (mmu !== 'tdp' && mmu !== 'shadow') fail('EINVAL', `mmu must be 'tdp' or 'shadow', got '${String(mmu)}'`);
    const rmapsMode = opts.rmaps ?? 'lazy';
    if (rmapsMode !== 'eager' && rmapsMode !== 'lazy') fail('EINVAL', `rmaps must be 'eager' or 'lazy', got '${String(rmapsMode)}'`);
    // kvm_is_vm_type_supported(): KVM_X86_SW_PROTECTED_VM needs the TDP MMU (tdp_mmu_enabled).
    if (mmu === 'shadow' && type === KVM_X86_SW_PROTECTED_VM) fail('EINVAL', 'KVM_CREATE_VM: KVM_X86_SW_PROTECTED_VM needs the TDP MMU (ept=1, tdp_mmu=1); this VM runs the shadow MMU');
    const lockModel = (opts.lockModel ?? mmu === 'shadow') ? TimelineRwlock.create({ capacity: 1 << 16 }).sab : null;
    const h: VmHandle = {
      id, maxVcpus, words, epoch: epoch.sab, pool: poolHandle, memslots: Memslots.createHandle(), vmas: [], vcpus: [], rings: [], layoutGen: 0,
      type, attrPath, attrBits, gmems: [], mmu, rmapsMode, shadow: ShadowPages.createHandle(64), rmaps: RmapArena.createHandle(), lockModel,
    };
    const vm = new Vm(host, ctx, h);
    Atomics.store(vm.w, VmLayout.kVmStrategy, encodeStrategy({ ...kDefaultDirtyStrategy, ...opts.strategy }));
    vm.pool.initFree();
    // The root (one 4-level TDP root; this model has no SMM or guest-mode roots).
    const root = new Int32Array(1);
    vm.pool.allocBatch(root, 0, 1);
    vm.pool.setInfo(root[0]!, PgLevel.PT64_ROOT_4LEVEL, 0);
    Atomics.store(vm.w, VmLayout.kVmRoot, root[0]!);
    // kvm_memslots_have_rmaps(): always without the TDP MMU; with it, from creation only when eager.
    if (mmu === 'shadow' || rmapsMode === 'eager') Atomics.store(vm.sp.ctl, ShadowCtl.kMemslotsHaveRmaps, 1);
    Atomics.store(vm.w, VmLayout.kVmOnline, 1);
    return vm;
  }

  static attach(host: Host, h: VmHandle, ctx: ThreadCtx): Vm {
    return new Vm(host, ctx, h);
  }

  /**
   * Pick up VMAs and vCPUs added since this thread attached (same thread, a newer handle). Only
   * the new ones are built: O(what changed). Memslots and the pool need nothing here.
   */
  reattach(h: VmHandle): void {
    if (h.layoutGen === this.layoutGen) return;
    this.loadLayout(h);
  }

  private loadLayout(h: VmHandle): void {
    for (let i = this.vmas.length; i < h.vmas.length; i++) this.vmas.push(new Vma(h.vmas[i]!));
    for (let i = this.gmems.length; i < h.gmems.length; i++) this.gmems.push(attachGuestMemfd(this, i, h.gmems[i]!.h, h.gmems[i]!.split));
    for (let i = this.vcpuWords.length; i < h.vcpus.length; i++) this.vcpuWords.push(new Int32Array(h.vcpus[i]!));
    this.rebuildMmuLockReaders();
    for (let i = this.rings.length; i < h.rings.length; i++) this.rings.push(h.rings[i]!);
    this.layoutGen = h.layoutGen;
  }

  private rebuildMmuLockReaders(): void {
    this.mmuLockReaders = {
      words: [this.w, ...this.vcpuWords],
      at: [VmLayout.kVmMmuLockVmmReader, ...this.vcpuWords.map(() => VcpuLayout.kVcpuMmuLockReader)],
    };
  }

  /** The VMM thread's id hash of memslots, (as_id << 16 | id) -> slot (empty on other threads). */
  get slots(): Map<number, Memslot> {
    return this.ms.byKey;
  }
  /** The VMM thread's address space 0 slots sorted by base gfn (empty on other threads). */
  get memslots(): Memslot[] {
    return this.ms.sorted[0]!;
  }

  /**
   * A vCPU enters the guest after the epoch moved: take the active memslot set (SRCU read side;
   * the pair is described in memslots.ts). Returns the generation.
   */
  syncMemslots(): number {
    const g = Atomics.load(this.w, VmLayout.kVmMemslotGen);
    if (g !== this.generation) {
      this.generation = g;
      this.activeSet = this.ms.sets[g & 1]!;
    }
    return g;
  }

  /** search_memslots() in this thread's memslot set (the vCPU side of gfn_to_memslot()). */
  lookupMemslot(gfn: number): Memslot | null {
    return this.ms.search(this.activeSet, gfn);
  }

  /**
   * The store oracle's lookup (vcpu.ts storeChecked), not KVM's: the newest published set. Safe
   * from a vCPU in guest mode: the VMM edits that set again only after the next publish's
   * synchronize_srcu, which waits for this vCPU to re-enter (the pair: the VMM's seq-cst add of
   * kVmMemslotGen, this seq-cst load of it).
   */
  lookupMemslotNewest(gfn: number): Memslot | null {
    return this.ms.search(this.ms.sets[Atomics.load(this.w, VmLayout.kVmMemslotGen) & 1]!, gfn);
  }

  /** The pool grew (another thread announced it): re-create this thread's views of it. */
  refreshPool(): void {
    this.pool.refresh();
    this.sp.refresh();
    this.iter.pt = this.pool.pt;
  }

  /**
   * VMA ids are dense (their index). A thread that meets a newer one (a slot over memory the VMM
   * mapped after this thread attached) takes it from its VMA port, to which the VMM posted it
   * before any slot over it could be published (the pair: the VMM's postMessage, then its
   * seq-cst publish of the slot; the worker's seq-cst read of the set, then receiveMessageOnPort(),
   * which takes every message queued before).
   */
  private vmaById(id: number): Vma | null {
    while (id >= this.vmas.length && this.vmaPort !== null) {
      const m = receiveMessageOnPort(this.vmaPort);
      if (m === undefined) break;
      const h = m.message as VmaHandle;
      if (h.id === this.vmas.length) this.vmas.push(new Vma(h));
    }
    return this.vmas[id] ?? null;
  }

  /** This thread's end of a VMA port (watchVmas()) for the current phase, or null. */
  vmaPort: MessagePort | null = null;

  /** VMM side: the ports new VMAs are posted to (one per worker task of the running phase). */
  private readonly vmaWatchers = new Set<MessagePort>();

  /**
   * A port that receives every VMA this VM maps from now on, for a worker that runs its vCPUs
   * while the VMM maps memory for new slots: transfer `port` in the task, `unwatch()` after it.
   */
  watchVmas(): { port: MessagePort; unwatch: () => void } {
    const ch = new MessageChannel();
    ch.port1.unref();
    this.vmaWatchers.add(ch.port1);
    return {
      port: ch.port2,
      unwatch: () => {
        this.vmaWatchers.delete(ch.port1);
        ch.port1.close();
      },
    };
  }

  get root(): number {
    return this.w[VmLayout.kVmRoot]!;
  }

  handle(): VmHandle {
    return {
      id: this.id, maxVcpus: this.maxVcpus, words: this.w.buffer as SharedArrayBuffer, epoch: this.epoch.sab,
      pool: this.pool.handle, memslots: this.ms.handle, rings: this.rings.slice(),
      vmas: this.vmas.map((v) => v.handle), vcpus: this.vcpuWords.map((w) => w.buffer as SharedArrayBuffer),
      layoutGen: this.layoutGen, type: this.vmType, attrPath: this.attrPath,
      attrBits: this.attrBits ? (this.attrBits.buffer as SharedArrayBuffer) : null,
      gmems: this.gmems.map((g) => ({ h: g.file.handle, split: g.inPlaceSplit })),
      mmu: this.tdpMmuEnabled ? 'tdp' : 'shadow', rmapsMode: this.rmapsMode, shadow: this.sp.handle, rmaps: this.rmaps.handle,
      lockModel: this.lockModel === null ? null : this.lockModel.sab,
    };
  }

  private bumpLayout(): void {
    this.layoutGen = Atomics.add(this.w, VmLayout.kVmLayoutGen, 1) + 1;
  }

  /** Binary search of address space 0 (search_memslots) in the VMM thread's array. */
  searchMemslots(gfn: number): Memslot | null {
    const a = this.memslots;
    let lo = 0;
    let hi = a.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const s = a[mid]!;
      if (gfn < s.baseGfn) hi = mid - 1;
      else if (gfn >= s.baseGfn + s.npages) lo = mid + 1;
      else return s;
    }
    return null;
  }

  /**
   * The VMM process's mmap(): an anonymous or hugetlb mapping to back memslots. Aligned to the
   * larger of 2 MiB and the backing page size, as memstress aligns guest memory.
   */
  mmap(opts: MmapOptions): number {
    if (!isBackingSource(opts.backing)) fail('EINVAL', `unknown backing source '${String(opts.backing)}'`);
    if (!(opts.size > 0) || opts.size % 4096 !== 0) fail('EINVAL', `mmap size must be a positive multiple of 4 KiB, got ${opts.size}`);
    const align = 4096 * 2 ** Math.max(9, backingPageOrder(opts.backing));
    const hva = Math.ceil(this.nextHva / align) * align;
    const policy = opts.policy ?? { mode: 'preferred', node: this.id % this.host.zones.length };
    if (policy.node < 0 || policy.node >= this.host.zones.length) fail('EINVAL', `NUMA node ${policy.node} does not exist (host has ${this.host.zones.length})`);
    const vma = Vma.create(this.vmas.length, this.owner, opts.backing, hva / 4096, opts.size / 4096, policy);
    this.nextHva = hva + opts.size;
    this.vmas.push(vma);
    for (const p of this.vmaWatchers) p.postMessage(vma.handle);
    this.bumpLayout();
    return hva;
  }

  private vmaCovering(hva: number, bytes: number): Vma | null {
    const first = hva / 4096;
    const n = bytes / 4096;
    for (const v of this.vmas) if (first >= v.startPage && first + n <= v.startPage + v.npages) return v;
    return null;
  }

  /** KVM_SET_USER_MEMORY_REGION2, following __kvm_set_memory_region(), under slots_lock. */
  setUserMemoryRegion2(r: UserspaceMemoryRegion2): void {
    this.withSlotsLock(() => this.setUserMemoryRegion2Locked(r));
  }

  private setUserMemoryRegion2Locked(r: UserspaceMemoryRegion2): void {
    for (const k of ['slot', 'flags', 'guestPhysAddr', 'memorySize', 'userspaceAddr'] as const) {
      if (!Number.isSafeInteger(r[k]) || r[k] < 0) fail('EINVAL', `region.${k} must be a non-negative integer, got ${String(r[k])}`);
    }
    if ((r.flags & ~kValidMemslotFlags) !== 0) fail('EINVAL', `invalid memslot flags 0x${r.flags.toString(16)}`);
    // check_memory_region_flags(): a guest_memfd slot cannot log dirty pages nor be read-only.
    if ((r.flags & KVM_MEM_GUEST_MEMFD) !== 0 && (r.flags & (KVM_MEM_LOG_DIRTY_PAGES | KVM_MEM_READONLY)) !== 0) {
      fail('EINVAL', `slot ${r.slot}: KVM_MEM_GUEST_MEMFD with ${(r.flags & KVM_MEM_LOG_DIRTY_PAGES) !== 0 ? 'KVM_MEM_LOG_DIRTY_PAGES (dirty logging of guest_memfd memory is not supported)' : 'KVM_MEM_READONLY'}`);
    }
    const asId = Math.floor(r.slot / 65536);
    const id = r.slot % 65536;
    // as_id >= kvm_arch_nr_memslot_as_ids(kvm): address space 1 exists only with SMM.
    const nrAsIds = kvmArchNrMemslotAsIds(this.host);
    if (asId >= nrAsIds || id >= KVM_USER_MEM_SLOTS) fail('EINVAL', `slot ${r.slot}: id must be < ${KVM_USER_MEM_SLOTS} and address space < ${nrAsIds}${nrAsIds === 1 ? ' (this host has no SMM address space)' : ''}`);
    if (r.memorySize % 4096 !== 0) fail('EINVAL', `memory_size 0x${r.memorySize.toString(16)} is not page aligned`);
    if (r.guestPhysAddr % 4096 !== 0) fail('EINVAL', `guest_phys_addr 0x${r.guestPhysAddr.toString(16)} is not page aligned`);
    if (r.userspaceAddr % 4096 !== 0) fail('EINVAL', `userspace_addr 0x${r.userspaceAddr.toString(16)} is not page aligned`);
    // access_ok(userspace_addr, memory_size): the range must end at or below USER_PTR_MAX
    // (TASK_SIZE_MAX); checked before the slot is looked up, so a delete is checked too.
    if (r.userspaceAddr + r.memorySize > TASK_SIZE_MAX) {
      fail('EINVAL', `userspace_addr range [0x${r.userspaceAddr.toString(16)}, 0x${(r.userspaceAddr + r.memorySize).toString(16)}) ends above the user address limit 0x${TASK_SIZE_MAX.toString(16)} (TASK_SIZE_MAX, 4-level paging)`);
    }
    const npages = r.memorySize / 4096;
    const baseGfn = r.guestPhysAddr / 4096;
    if (baseGfn + npages > kMaxGfn + 1) fail('EINVAL', `guest range ends at 0x${(r.guestPhysAddr + r.memorySize).toString(16)}, past this model's 42-bit (4 TiB) guest physical address space`);
    const key = (asId << 16) | id;
    const old = this.slots.get(key) ?? null;
    count(this.ctx.metrics, Op.memslot_update);
    if (npages === 0) {
      if (old === null) fail('EINVAL', `slot ${r.slot} does not exist, cannot delete it`);
      this.deleteMemslot(old);
      return;
    }
    if (old === null) {
      this.checkOverlap(asId, baseGfn, npages, null);
      const gmem = (r.flags & KVM_MEM_GUEST_MEMFD) !== 0 ? this.checkGmemBinding(r, asId, npages) : null;
      this.createMemslot(id, asId, r.flags, baseGfn, npages, r.userspaceAddr, gmem);
      return;
    }
    if (((r.flags ^ old.flags) & KVM_MEM_GUEST_MEMFD) !== 0) fail('EINVAL', `slot ${r.slot}: KVM_MEM_GUEST_MEMFD cannot change on an existing slot`);
    if (r.userspaceAddr !== old.userspaceAddr || npages !== old.npages || ((r.flags ^ old.flags) & 2) !== 0) {
      fail('EINVAL', `slot ${r.slot}: only base_gfn (move) or KVM_MEM_LOG_DIRTY_PAGES (flags-only) may change on an existing slot`);
    }
    if (baseGfn !== old.baseGfn) {
      this.checkOverlap(asId, baseGfn, npages, old);
      this.moveMemslot(old, baseGfn, r.flags);
      return;
    }
    if (r.flags !== old.flags) this.commitFlagsOnly(old, r.flags);
  }

  /**
   * kvm_gmem_bind(): the file is this VM's, guest_memfd_offset is page aligned and the slot fits
   * in the file (EINVAL), and no other slot is bound to any of those file pages (EINVAL, as KVM).
   */
  private checkGmemBinding(r: UserspaceMemoryRegion2, asId: number, npages: number): { index: number; pgoff: number } {
    const fd = r.guestMemfd;
    const off = r.guestMemfdOffset ?? 0;
    if (fd === undefined || fd.vm.id !== this.id || this.gmems[fd.index] !== fd) fail('EINVAL', `slot ${r.slot}: KVM_MEM_GUEST_MEMFD needs a guest_memfd created on this VM`);
    if (asId !== 0) fail('EINVAL', `slot ${r.slot}: guest_memfd slots live in address space 0`);
    if (!Number.isSafeInteger(off) || off < 0 || off % 4096 !== 0 || off + npages * 4096 > fd.size) {
      fail('EINVAL', `slot ${r.slot}: guest_memfd_offset 0x${off.toString(16)} + size 0x${(npages * 4096).toString(16)} must be page aligned and inside the file (0x${fd.size.toString(16)})`);
    }
    const pgoff = off / 4096;
    for (const s of this.gmemBindings(fd.file)) {
      if (pgoff < s.gmemPgoff + s.npages && s.gmemPgoff < pgoff + npages) fail('EINVAL', `slot ${r.slot}: guest_memfd pages [0x${pgoff.toString(16)}, 0x${(pgoff + npages).toString(16)}) are already bound to slot ${s.id}`);
    }
    return { index: fd.index, pgoff };
  }

  /** The slots bound to `file` in the newest published set (any thread; slots_lock keeps it still). */
  gmemBindings(file: GmemFile): Memslot[] {
    const out: Memslot[] = [];
    for (const s of this.ms.all(this.newestSet())) if (s.gmem !== null && s.gmem.ino === file.ino) out.push(s);
    return out;
  }

  /** The slots over gfns [start, end) in the newest published set (any thread). */
  slotsInGfnRange(start: number, end: number): Memslot[] {
    return this.ms.inSetRange(this.newestSet(), start, end);
  }

  private newestSet(): Int32Array {
    return this.ms.sets[Atomics.load(this.w, VmLayout.kVmMemslotGen) & 1]!;
  }

  /** Run fn under kvm->slots_lock (memslot updates, attribute changes; any thread). */
  withSlotsLock<T>(fn: () => T): T {
    spinLock(this.w, VmLayout.kVmSlotsLock);
    try {
      return fn();
    } finally {
      spinUnlock(this.w, VmLayout.kVmSlotsLock);
    }
  }

  /**
   * Run VM ioctls on the thread of `vcpu`, while it is out of KVM_RUN (handling its own exit, as
   * the selftests' vCPU threads do): VMM-side locking uses the vCPU's epoch slot and reader
   * indicator, so VMM calls on several threads never share one.
   */
  asVcpuThread<T>(vcpu: Vcpu, fn: () => T): T {
    const [idx, words, at] = [this.vmmIdx, this.vmmReaderWords, this.vmmReaderAt];
    this.vmmIdx = vcpu.idx;
    this.vmmReaderWords = this.vcpuWords[vcpu.idx]!;
    this.vmmReaderAt = VcpuLayout.kVcpuMmuLockReader;
    try {
      return fn();
    } finally {
      this.vmmIdx = idx;
      this.vmmReaderWords = words;
      this.vmmReaderAt = at;
    }
  }

  /** kvm->arch.hypercall_exit_enabled (any thread; read at each hypercall). */
  get hypercallExitMask(): number {
    return Atomics.load(this.w, VmLayout.kVmHypercallExit);
  }

  /** KVM_CREATE_GUEST_MEMFD (guest_memfd.ts). VMM thread; before the workers that use it attach. */
  createGuestMemfd(args: KvmCreateGuestMemfd): GuestMemfd {
    const fd = kvmGmemCreate(this, this.gmems.length, args);
    this.gmems.push(fd);
    this.bumpLayout();
    return fd;
  }

  /** KVM_SET_MEMORY_ATTRIBUTES on the VM fd (attributes.ts). */
  setMemoryAttributes(a: KvmMemoryAttributes): void {
    kvmVmSetMemoryAttributes(this, a);
  }

  /** O(log n): the VMM's gfn array of the address space (KVM walks its gfn tree the same way). */
  private checkOverlap(asId: number, baseGfn: number, npages: number, self: Memslot | null): void {
    const s = this.ms.overlap(asId, baseGfn, npages, self);
    if (s !== null) fail('EEXIST', `gfn range [0x${baseGfn.toString(16)}, 0x${(baseGfn + npages).toString(16)}) overlaps slot ${s.id}`);
  }

  /**
   * KVM_MR_CREATE (kvm_create_memslot() via kvm_set_memslot()): the pool is sized for the new
   * slot first (ENOMEM leaves nothing changed), then the slot is built and published while vCPUs
   * run. A slot created with logging on: nothing is mapped yet, so only the bitmap and PML matter.
   */
  private createMemslot(id: number, asId: number, flags: number, baseGfn: number, npages: number, userspaceAddr: number, gmem: { index: number; pgoff: number } | null = null): void {
    const vma = this.vmaCovering(userspaceAddr, npages * 4096);
    this.ensurePoolCapacity(slotPoolPages(npages), slotLeafPages(npages));
    const slot = this.ms.create(id, asId, flags, baseGfn, npages, userspaceAddr, vma, null, gmem);
    this.poolNeed += slotPoolPages(npages);
    this.poolLeafNeed += slotLeafPages(npages);
    kvmMmuInitMemslotMemoryAttributes(this, slot);
    if (slot.dirtyLogging()) this.initDirtyBitmap(slot);
    this.activateMemslotWithRmaps(slot, null);
    if (slot.dirtyLogging()) this.dirtyLoggingSlots(1);
  }

  /**
   * KVM_MR_MOVE (kvm_move_memslot() via kvm_set_memslot()): the old range is zapped
   * (kvm_arch_flush_shadow_memslot() on the invalidated old slot) and faults in again at the new
   * base; lpage_info is recomputed for the new base (kvm_alloc_memslot_metadata()); the dirty
   * bitmap is the old one when the slot logs before and after (kvm_prepare_memory_region():
   * `new->dirty_bitmap = old->dirty_bitmap`), so what was dirtied before the move is still
   * reported, and INITIALLY_SET does not set it to all ones again. A move that turns logging on
   * allocates a fresh bitmap, as a CREATE does. The new slot replaces the old one in one swap.
   */
  private moveMemslot(old: Memslot, baseGfn: number, flags: number): void {
    const keep = old.dirtyLogging() && (flags & KVM_MEM_LOG_DIRTY_PAGES) !== 0;
    const slot = this.ms.create(old.id, old.asId, flags, baseGfn, old.npages, old.userspaceAddr, old.vma, keep ? old : null);
    if (slot.dirtyLogging() && !keep) this.initDirtyBitmap(slot);
    this.invalidateMemslot(old);
    if (old.dirtyLogging()) this.dirtyLoggingSlots(-1);
    this.activateMemslotWithRmaps(slot, old);
    this.freeSlotRmaps(old);
    this.ms.release(old, keep);
    if (slot.dirtyLogging()) this.dirtyLoggingSlots(1);
  }

  /** KVM_MR_DELETE (kvm_delete_memslot() via kvm_set_memslot()). */
  private deleteMemslot(slot: Memslot): void {
    this.invalidateMemslot(slot);
    // kvm_mmu_slot_apply_flags() for a DELETE of a logging slot: CPU dirty logging is updated.
    if (slot.dirtyLogging()) this.dirtyLoggingSlots(-1);
    this.activateMemslot(null, slot);
    this.poolNeed -= slotPoolPages(slot.npages);
    this.poolLeafNeed -= slotLeafPages(slot.npages);
    this.freeSlotRmaps(slot);
    // Dirty bits of a logging slot go with it, as in KVM (kvm_destroy_dirty_bitmap()).
    this.ms.release(slot, false);
  }

  /**
   * kvm_invalidate_memslot(): the slot is marked KVM_MEMSLOT_INVALID (KVM swaps in an invalid copy;
   * the flag set in place in the shared record is what that copy's readers see) and SRCU is
   * synchronized, so every fault that saw it valid has finished (and installed what it installs);
   * faults from now on retry (kvm_mmu_faultin_pfn()). Then kvm_arch_flush_shadow_memslot() zaps
   * the slot's SPTEs and flushes, before the ioctl returns: nothing maps the old range afterwards.
   * Only roots of the slot's address space; there is no SMM root (no vCPU enters SMM here).
   */
  private invalidateMemslot(slot: Memslot): void {
    slot.setFlags(slot.flags | KVM_MEMSLOT_INVALID);
    synchronizeSrcu(this);
    // kvm_arch_flush_shadow_memslot(): with KVM_X86_QUIRK_SLOT_ZAP_ALL (on unless disabled with
    // KVM_CAP_DISABLE_QUIRKS2) every SPTE of every address space goes (kvm_mmu_zap_all_fast(),
    // here a zap of all leaves: the vCPUs fault everything in again), else only the slot's.
    const zapAll = (this.disabledQuirks & KVM_X86_QUIRK_SLOT_ZAP_ALL) === 0;
    if (zapAll || slot.asId === 0) {
      const [start, end] = zapAll ? [0, kMaxGfn + 1] : [slot.baseGfn, slot.endGfn];
      this.withMmuWriteLock(() => {
        if (tdpMmuZapLeafs(this, start, end)) kvmFlushRemoteTlbs(this);
        // The shadow MMU's half: all of it through active_mmu_pages (kvm_mmu_zap_all_fast()'s
        // effect), or the slot's rmaps and the pages shadowing its gfns.
        if (this.sp.usedPages() > 0) {
          if (zapAll) kvmShadowZapAll(this);
          else this.shadowZapSlot(slot);
        }
      });
    }
    if (this.memslotHook !== null) this.memslotHook(slot);
  }

  /**
   * Test hook: called by a delete or move after the slot was invalidated, SRCU synchronized and
   * its SPTEs zapped, before it leaves the sets (faults meanwhile must retry, not map it).
   */
  memslotHook: ((slot: Memslot) => void) | null = null;

  /** kvm_swap_active_memslots() via kvm_activate_memslot() (memslots.ts): `add` replaces `remove`. */
  private activateMemslot(add: Memslot | null, remove: Memslot | null, afterSwap: (() => void) | null = null): void {
    if (remove !== null) this.ms.index(remove, false);
    if (add !== null) this.ms.index(add, true);
    // The fault path searches address space 0 only (no vCPU enters SMM in this model).
    const shared = (add ?? remove)!.asId === 0;
    this.generation = this.ms.publish(this.w, VmLayout.kVmMemslotGen, (set) => {
      if (!shared) return;
      if (remove !== null) this.ms.removeFrom(set, remove);
      if (add !== null) this.ms.insertInto(set, add);
    }, () => {
      afterSwap?.();
      synchronizeSrcu(this);
    });
    this.activeSet = this.ms.sets[this.generation & 1]!;
  }

  /**
   * kvm_prepare_memory_region() + kvm_swap_active_memslots() for a new slot with respect to lazy
   * rmaps: slots_arch_lock is held from the check of kvm_memslots_have_rmaps() (allocating the
   * slot's rmaps if so) until the new set is published, and dropped before the SRCU wait, as KVM
   * does. So a first shadow root (onFirstShadowRoot, which takes the same lock and walks the newest
   * set) either sees the slot published or ran before the check: never a live slot without rmaps.
   */
  private activateMemslotWithRmaps(add: Memslot, remove: Memslot | null): void {
    spinLock(this.w, VmLayout.kVmSlotsArchLock);
    let held = true;
    const release = () => {
      if (held) spinUnlock(this.w, VmLayout.kVmSlotsArchLock);
      held = false;
    };
    try {
      if (this.memslotsHaveRmaps()) this.allocSlotRmaps(add);
      this.activateMemslot(add, remove, release);
    } finally {
      release();
    }
  }

  /** kvm->nr_memslots_dirty_logging moved: vCPUs re-read CPU dirty logging (PML) at entry. */
  private dirtyLoggingSlots(delta: number): void {
    Atomics.add(this.w, VmLayout.kVmNrSlotsDirtyLogging, delta);
    kvmMakeAllCpusRequest(this, KvmReq.KVM_REQ_UPDATE_CPU_DIRTY_LOGGING, false);
  }

  /** KVM_MR_FLAGS_ONLY: toggling dirty logging goes through kvm_mmu_slot_apply_flags(). */
  private commitFlagsOnly(slot: Memslot, flags: number): void {
    const logNow = (flags & KVM_MEM_LOG_DIRTY_PAGES) !== 0;
    const logBefore = slot.dirtyLogging();
    // kvm_prepare_memory_region(): a fresh bitmap (all ones under INITIALLY_SET) before the flip.
    if (logNow && !logBefore) this.initDirtyBitmap(slot);
    slot.setFlags(flags);
    // kvm_swap_active_memslots(): no fault that read the old flags is still running past here.
    synchronizeSrcu(this);
    if (logNow !== logBefore) this.lastApplyFlags = kvmMmuSlotApplyFlags(this, slot, logNow);
  }

  /** What the last enable/disable of dirty logging did (splits, TLB flushes). */
  lastApplyFlags: ApplyFlagsOutcome = { splits: 0, tlbFlushes: 0 };

  private initDirtyBitmap(slot: Memslot): void {
    const bm = slot.dirtyBitmap;
    bm.fill(0);
    if (manualProtectAndInitSet(this)) {
      for (let i = 0; i < slot.npages; i++) bm[i >>> 5]! |= 1 << (i & 31);
    }
  }

  /** Current dirty-logging strategy. */
  get dirtyStrategy(): DirtyStrategy {
    return decodeStrategy(Atomics.load(this.w, VmLayout.kVmStrategy));
  }
  /** Choose the strategy; EBUSY while any slot logs (KVM's module parameters are read at enable). */
  setDirtyStrategy(s: Partial<DirtyStrategy>): void {
    if (Atomics.load(this.w, VmLayout.kVmNrSlotsDirtyLogging) !== 0) fail('EBUSY', 'change the dirty-logging strategy while no slot logs');
    Atomics.store(this.w, VmLayout.kVmStrategy, encodeStrategy({ ...this.dirtyStrategy, ...s }));
  }

  /**
   * KVM_ENABLE_CAP on the VM (caps.ts): `enableCap(cap, args[0], flags)` or a struct
   * kvm_enable_cap; `cap` is a KVM_CAP_* name or number.
   */
  enableCap(cap: Cap | KvmEnableCap, arg0 = 0, flags = 0): void {
    kvmVmIoctlEnableCap(this, typeof cap === 'object' ? cap : { cap, flags, args: [arg0] });
  }

  /** KVM_CHECK_EXTENSION on the VM fd. */
  checkExtension(cap: Cap): number {
    return kvmCheckExtension(this.host, this, cap);
  }

  /** kvm->arch.max_vcpu_ids (KVM_ENABLE_CAP(KVM_CAP_MAX_VCPU_ID)); 0 = unset. VMM thread only. */
  maxVcpuIds = 0;

  /** kvm->arch.disabled_quirks (KVM_ENABLE_CAP(KVM_CAP_DISABLE_QUIRKS2)). VMM thread only. */
  disabledQuirks = 0;

  /** KVM_GET_DIRTY_LOG */
  getDirtyLog(slot: number): Uint32Array {
    return getDirtyLog(this, slot);
  }
  /** KVM_CLEAR_DIRTY_LOG; returns the number of pages re-armed. */
  clearDirtyLog(log: ClearDirtyLog): number {
    return clearDirtyLog(this, log);
  }
  /** Collect DIRTY ring entries of every vCPU (marking them RESET); returns how many. */
  harvestDirtyRings(sink: (slot: number, offset: number) => void): number {
    return harvestDirtyRings(this, sink);
  }
  /** KVM_RESET_DIRTY_RINGS; returns the number of entries reset. */
  resetDirtyRings(): number {
    return resetDirtyRings(this);
  }

  /** mark_page_dirty_in_slot() */
  markPageDirtyInSlot(slot: Memslot, gfn: number, vcpu: Vcpu | null): void {
    markPageDirtyInSlot(this, slot, gfn, vcpu);
  }

  /** A writable SPTE was created: with folio-dirty 'on-create', the folio is dirty now. */
  onWritableSpte(pfn: number, level: number, fast: boolean): void {
    if (fast || (this.w[VmLayout.kVmStrategy]! & Strat.kStratFolioOnZap) !== 0) return;
    this.folioMarkDirty(pfn);
  }

  /** A dirty SPTE lost W or D (or went away): with 'on-zap', the folio is dirty now. */
  onSpteCleaned(oldFlags: number, pfn: number): void {
    if ((this.w[VmLayout.kVmStrategy]! & Strat.kStratFolioOnZap) === 0 || (oldFlags & Spte.SPTE_DIRTY) === 0) return;
    this.folioMarkDirty(pfn);
  }

  private folioMarkDirty(pfn: number): void {
    count(this.ctx.metrics, Op.folio_mark_dirty);
    this.host.frames.markDirty(pfn);
  }

  /** Page-table pages for VMM-side splits (the VMM thread's mmu cache). */
  private readonly vmmPages = new Int32Array(64);
  private vmmPageCount = 0;
  takeVmmPage(): number {
    if (this.vmmPageCount === 0) {
      this.vmmPageCount = this.pool.allocBatch(this.vmmPages, 0, this.vmmPages.length);
      if (this.vmmPageCount === 0) fail('ENOMEM', `VM ${this.id}: page-table page pool exhausted while splitting huge pages`);
    }
    return this.vmmPages[--this.vmmPageCount]!;
  }
  returnVmmPage(sp: number): void {
    this.vmmPages[this.vmmPageCount++] = sp;
  }
  /** Give unused VMM-side pages back (end of every VMM-side operation, so the audit balances). */
  releaseVmmPages(): void {
    if (this.vmmPageCount > 0) this.pool.freeUnused(this.vmmPages, 0, this.vmmPageCount);
    this.vmmPageCount = 0;
  }

  /**
   * Capacity for every slot mapped at 4K (plus `extra` pages for a slot about to be created), and
   * slack for tables waiting out their epoch. O(1): the slots' need is kept as they change.
   *
   * Growth while vCPUs run (pt-pages.ts): the pool grows in place and the capacity is announced;
   * synchronize SRCU, so every vCPU in KVM_RUN has re-entered the guest and refreshed its views
   * of the pool (Vcpu.enterGuest); only then do the new pages join the free stack. Nothing is
   * copied, so no A/D bit a vCPU sets meanwhile can be lost.
   */
  private ensurePoolCapacity(extra = 0, extraLeaf = 0): void {
    // Fixed pages plus each vCPU's topup cache: in use whatever the slots map.
    const fixed = 16 + this.maxVcpusInUse() * 8;
    const need = Math.ceil((this.poolNeed + extra) * 1.03) + fixed;
    const cap = this.pool.capacity;
    if (need <= cap) return;
    if (need > kPtPoolMaxPages) fail('ENOMEM', `VM ${this.id}: mapping every memslot at 4K needs ${need} page-table pages, more than the pool reserves (${kPtPoolMaxPages}, 2 TiB of guest memory at 4K)`);
    // Grow with headroom so adding slots or vCPUs one by one grows the pool a few times, not each
    // time (1/64 more each time: creating 64 vCPUs over a 64 GiB slot grows it a few times).
    const to = Math.min(kPtPoolMaxPages, Math.max(need, cap + Math.max(64, cap >> 6)));
    // Back the share of the new pages a 4K mapping of every slot would use (pt-pages.ts grow()):
    // the sizing reserves two tables per level per slot, which for many small slots is several
    // times what they can use (6 pages for a 2 MiB slot that maps through 1), and backing all of
    // it would make 32764 small slots cost 0.9 GiB of RSS before anything faults.
    const used = this.poolLeafNeed + extraLeaf + fixed;
    this.pool.grow(to, Math.ceil((to - cap) * Math.min(1, used / need)));
    this.sp.grow(to);
    this.iter.pt = this.pool.pt;
    // The harness's own grace period (KVM's pages need none): not priced.
    synchronizeSrcu(this, false);
    this.pool.pushFree(cap, to);
  }

  /**
   * Run a VMM-side update that still needs every vCPU out of KVM_RUN, else EBUSY
   * (run-exclusion.ts): only KVM_CREATE_VCPU now.
   */
  private withVcpusStopped<T>(what: string, fn: () => T): T {
    return withVcpusStopped(this.w, this.vcpuWords, this.exclusion, what, fn);
  }
  private readonly exclusion = { depth: 0 };

  private maxVcpusInUse(): number {
    return this.vcpuWords.length;
  }

  /**
   * KVM_CREATE_VCPU(id), following kvm_vm_ioctl_create_vcpu(): the id is the APIC id, sparse,
   * below KVM_MAX_VCPU_IDS (and below KVM_CAP_MAX_VCPU_ID's value when set,
   * kvm_arch_vcpu_precreate), at most kvm->max_vcpus vCPUs, a taken id is EEXIST. The vCPU gets
   * the next dense index (vcpu->vcpu_idx), which arrays, rings and the epoch domain use.
   */
  createVcpu(id = this.vcpuWords.length): Vcpu {
    return this.withVcpusStopped(`create vCPU ${id}`, () => this.createVcpuStopped(id));
  }

  private createVcpuStopped(id: number): Vcpu {
    if (!Number.isInteger(id) || id < 0 || id >= KVM_MAX_VCPU_IDS) fail('EINVAL', `vCPU id ${id} must be 0..${KVM_MAX_VCPU_IDS - 1} (below KVM_MAX_VCPU_IDS)`);
    if (this.vcpuWords.length >= this.maxVcpus) fail('EINVAL', `VM ${this.id} already has ${this.vcpuWords.length} vCPUs, its maximum (KVM_CAP_MAX_VCPUS: ${this.maxVcpus})`);
    if (this.maxVcpuIds !== 0 && id >= this.maxVcpuIds) fail('EINVAL', `vCPU id ${id} is not below KVM_CAP_MAX_VCPU_ID (${this.maxVcpuIds}) set on this VM`);
    if (this.vcpuIdx(id) >= 0) fail('EEXIST', `vCPU id ${id} already exists on VM ${this.id}; pick another id`);
    const sab = allocSab(VcpuLayout.kVcpuBytes);
    const w = new Int32Array(sab);
    w[VcpuLayout.kVcpuId] = id;
    this.vcpuWords.push(w);
    this.rebuildMmuLockReaders();
    const ring = Atomics.load(this.w, VmLayout.kVmDirtyRingSize);
    this.rings.push(ring !== 0 ? allocDirtyRing(ring) : null);
    this.ensurePoolCapacity();
    this.bumpLayout();
    return this.vcpu(this.vcpuWords.length - 1);
  }

  /** The dense index of vCPU id `id`, or -1 (kvm_get_vcpu_by_id's scan; cold path). */
  private vcpuIdx(id: number): number {
    return this.vcpuWords.findIndex((w) => w[VcpuLayout.kVcpuId] === id);
  }

  /** kvm_get_vcpu(kvm, idx): this thread's Vcpu object for the vCPU of dense index `idx`. */
  vcpu(idx: number): Vcpu {
    let v = this.vcpus[idx];
    if (v === undefined) {
      if (!(idx >= 0 && idx < this.vcpuWords.length)) fail('ENOENT', `vCPU index ${idx} does not exist (VM ${this.id} has ${this.vcpuWords.length})`);
      v = new Vcpu(this, idx);
      this.vcpus[idx] = v;
    }
    return v;
  }

  /** kvm_get_vcpu_by_id(kvm, id): the vCPU created with id `id`. */
  vcpuById(id: number): Vcpu {
    const idx = this.vcpuIdx(id);
    if (idx < 0) fail('ENOENT', `no vCPU with id ${id} on VM ${this.id}`);
    return this.vcpu(idx);
  }

  get nrVcpus(): number {
    return this.vcpuWords.length;
  }

  /** Run fn with mmu_lock held for write, inside the VMM's epoch section. */
  withMmuWriteLock<T>(fn: () => T): T {
    return this.withMmuLock(true, fn);
  }

  /**
   * Run fn with mmu_lock held for read (TDP MMU walks that cmpxchg), inside the VMM's epoch
   * section. Without the TDP MMU nothing takes the read side (mmu-lock.ts relies on it): the
   * write lock then, as KVM's shadow-MMU paths take it.
   */
  withMmuReadLock<T>(fn: () => T): T {
    return this.withMmuLock(!this.tdpMmuEnabled, fn);
  }

  private withMmuLock<T>(write: boolean, fn: () => T): T {
    const m = this.ctx.metrics;
    const p = this.vmmIdx;
    const rw = this.vmmReaderWords;
    const ra = this.vmmReaderAt;
    const waited = write
      ? writeLock(this.w, VmLayout.kVmMmuLock, this.tdpMmuEnabled ? this.mmuLockReaders : kNoReaders)
      : readLock(this.w, VmLayout.kVmMmuLock, rw, ra);
    count(m, write ? Op.lock_write : Op.lock_read);
    if (waited > 0) countWaitNs(m, Op.lock_wait_ns, waited);
    this.epoch.enter(p);
    try {
      return fn();
    } finally {
      this.epoch.exit(p);
      if (write) writeUnlock(this.w, VmLayout.kVmMmuLock);
      else readUnlock(this.w, VmLayout.kVmMmuLock, rw, ra);
    }
  }

  /** Enter/leave the VMM's epoch section for read-lock walks. */
  vmmEpochEnter(): void {
    this.epoch.enter(this.vmmIdx);
  }
  vmmEpochExit(): void {
    this.epoch.exit(this.vmmIdx);
  }

  /**
   * An mmu_notifier invalidation of guest frames [start, end), as the host's MADV_DONTNEED (or
   * migration, or a hole punch) would send: invalidate_range_start zaps SPTEs and flushes, the
   * host drops its pages (`unmap`), invalidate_range_end bumps mmu_invalidate_seq.
   *
   * The host side decides what it unmaps (dontneedExtent(): hugetlb only whole huge pages) and
   * the notifier covers exactly that hva range, translated back to gfns in every memslot that
   * maps it (kvm_handle_hva_range() walks all slots over the hva range, so an aliasing slot is
   * zapped too). Zapping only the requested gfns would leave SPTEs — e.g. the 511 4K SPTEs of a
   * hugetlb page that dirty logging split — mapping a folio the host has freed.
   */
  invalidateRange(start: number, end: number, opts: { unmap?: boolean; between?: () => void } = {}): void {
    if (!(start >= 0 && end > start && end <= kMaxGfn + 1)) fail('EINVAL', `bad gfn range [${start}, ${end})`);
    count(this.ctx.metrics, Op.invalidate);
    const host = this.hostUnmapRanges(start, end);
    this.withMmuWriteLock(() => {
      kvmMmuInvalidateBegin(this);
      let flush = false;
      for (let i = 0; i < host.length; i += 3) {
        const vma = this.vmas[host[i]!]!;
        const first = host[i + 1]!;
        const last = host[i + 2]!;
        for (const s of this.ms.onVmaPages(vma, first, last)) {
          if (s.asId !== 0) continue;
          const lo = Math.max(first, s.vmaOffset);
          const hi = Math.min(last, s.vmaOffset + s.npages);
          if (lo >= hi) continue;
          const g0 = s.baseGfn + (lo - s.vmaOffset);
          const g1 = s.baseGfn + (hi - s.vmaOffset);
          kvmMmuInvalidateRangeAdd(this, g0, g1);
          if (tdpMmuZapLeafs(this, g0, g1)) flush = true;
          if (rmapZapGfnRange(this, g0, g1)) flush = true;
        }
      }
      if (flush) kvmFlushRemoteTlbs(this);
    });
    if (opts.unmap !== false) {
      for (let i = 0; i < host.length; i += 3) {
        madviseDontneed(this.ctx.hostThread, this.vmas[host[i]!]!, host[i + 1]!, host[i + 2]! - host[i + 1]!);
      }
    }
    opts.between?.();
    this.withMmuWriteLock(() => kvmMmuInvalidateEnd(this));
    // A VMM-side call leaves nothing in this thread's caches: the audit can run right after.
    this.ctx.hostThread.drain();
  }

  /**
   * MADV_DONTNEED of the VMM's own memory behind gfns [start, end) of `slot` (the shared copy of
   * a guest_memfd slot after a conversion to private), with its mmu_notifier invalidation, from
   * any thread: unlike invalidateRange() it covers only this slot (no alias slots over the same
   * hva range, which a guest_memfd slot's shared side never has here).
   */
  discardSharedGfns(slot: Memslot, start: number, end: number): void {
    const vma = slot.vma;
    if (vma === null) return;
    count(this.ctx.metrics, Op.invalidate);
    const ext = [0, 0];
    dontneedExtent(vma, slot.vmaOffset + (start - slot.baseGfn), end - start, ext);
    const g0 = Math.max(slot.baseGfn, slot.baseGfn + (ext[0]! - slot.vmaOffset));
    const g1 = Math.min(slot.endGfn, slot.baseGfn + (ext[1]! - slot.vmaOffset));
    this.withMmuWriteLock(() => {
      kvmMmuInvalidateBegin(this);
      kvmMmuInvalidateRangeAdd(this, g0, g1);
      if (tdpMmuZapLeafs(this, g0, g1) || rmapZapGfnRange(this, g0, g1)) kvmFlushRemoteTlbs(this);
    });
    madviseDontneed(this.ctx.hostThread, vma, ext[0]!, ext[1]! - ext[0]!);
    this.withMmuWriteLock(() => kvmMmuInvalidateEnd(this));
  }

  /**
   * The host ranges an invalidation of gfns [start, end) really unmaps, as (vma index, first page,
   * end page) triples: each memslot's part of the gfn range in hva terms, widened by the host
   * (dontneedExtent()). VMM-side and cold: allocation is fine here.
   */
  private hostUnmapRanges(start: number, end: number): number[] {
    const out: number[] = [];
    const ext = [0, 0];
    for (const s of this.ms.inGfnRange(0, start, end)) {
      const lo = Math.max(start, s.baseGfn);
      const hi = Math.min(end, s.endGfn);
      if (lo >= hi || s.vma === null) continue;
      dontneedExtent(s.vma, s.vmaOffset + (lo - s.baseGfn), hi - lo, ext);
      out.push(this.vmas.indexOf(s.vma), ext[0]!, ext[1]!);
    }
    return out;
  }

  // ---- Shadow MMU and rmaps ----

  /** kvm_memslots_have_rmaps() (the acquire pairs with onFirstShadowRoot()'s publish). */
  memslotsHaveRmaps(): boolean {
    return Atomics.load(this.sp.ctl, ShadowCtl.kMemslotsHaveRmaps) !== 0;
  }

  /** The slot's rmapBase in this.rmaps, or -1 when it has no rmaps. */
  slotRmapBase(slot: Memslot): number {
    return Atomics.load(slot.words, MsRec.kRmap) - 1;
  }

  /** memslot_rmap_alloc(): zeroed heads for every level (kvcalloc: priced per 4K zeroed). */
  private allocSlotRmaps(slot: Memslot): void {
    if (this.slotRmapBase(slot) >= 0) return;
    const base = this.rmaps.allocSlot(slot.baseGfn, slot.npages);
    countN(this.ctx.metrics, Op.rmap_alloc_4k, Math.ceil(slotRmapHeadBytes(slot.baseGfn, slot.npages) / 4096));
    // Publish after the heads exist (the pair: slotRmapBase()'s Atomics.load).
    Atomics.store(slot.words, MsRec.kRmap, base + 1);
  }

  private freeSlotRmaps(slot: Memslot): void {
    const base = this.slotRmapBase(slot);
    if (base < 0) return;
    Atomics.store(slot.words, MsRec.kRmap, 0);
    this.rmaps.freeSlot(base, slot.baseGfn, slot.npages);
  }

  /**
   * mmu_first_shadow_root_alloc(): the first shadow root of a TDP VM with lazy rmaps allocates
   * rmaps for every memslot (both address spaces) under slots_arch_lock, then publishes
   * shadow_root_allocated (smp_store_release) — memslot updates wait meanwhile, which is the
   * spike the lazy-rmap series trades for the memory. Returns the modeled ns it took (0 if the
   * rmaps existed already). Called by the vCPU loading its first shadow root before it takes
   * mmu_lock (mmu_alloc_shadow_roots(): slots_arch_lock nests outside mmu_lock), so the other
   * vCPUs' faults go on meanwhile.
   */
  onFirstShadowRoot(): number {
    if (Atomics.load(this.sp.ctl, ShadowCtl.kShadowRootAllocated) !== 0) return 0;
    const m = this.ctx.metrics;
    const t0 = m.t;
    const w0 = performance.now();
    if (!this.memslotsHaveRmaps()) {
      spinLock(this.w, VmLayout.kVmSlotsArchLock);
      try {
        if (!this.memslotsHaveRmaps()) {
          const before = this.rmaps.bytes().heads;
          for (const s of this.allSlotsAllSpaces()) this.allocSlotRmaps(s);
          Atomics.store(this.sp.ctl, ShadowCtl.kMemslotsHaveRmaps, 1);
          // The spike, for the run's report (what it blocked: memslot updates, on slots_arch_lock,
          // and this vCPU's entry into L2; the other vCPUs' TDP faults go on).
          Atomics.store(this.sp.ctl, ShadowCtl.kRmapAllocModeledUs, Math.round((m.t - t0) / 1e3));
          Atomics.store(this.sp.ctl, ShadowCtl.kRmapAllocWallUs, Math.round((performance.now() - w0) * 1e3));
          Atomics.store(this.sp.ctl, ShadowCtl.kRmapAllocKiB, Math.round((this.rmaps.bytes().heads - before) / 1024));
        }
      } finally {
        spinUnlock(this.w, VmLayout.kVmSlotsArchLock);
      }
    }
    Atomics.store(this.sp.ctl, ShadowCtl.kShadowRootAllocated, 1);
    this.rmapAllocNs = m.t - t0;
    return this.rmapAllocNs;
  }
  /** Modeled ns of the lazy rmap allocation on the thread that did it (0 elsewhere). */
  rmapAllocNs = 0;

  /** Every memslot of both address spaces in this thread's view of the newest set (cold). */
  private allSlotsAllSpaces(): Memslot[] {
    const out: Memslot[] = [];
    for (const set of this.ms.sets) {
      for (let i = 1; i <= set[0]!; i++) {
        const sl = this.ms.slot(set[i]!);
        if (!out.includes(sl)) out.push(sl);
      }
    }
    for (const sl of this.slots.values()) if (!out.includes(sl)) out.push(sl);
    return out;
  }

  /** gfn_to_memslot() for the shadow MMU's bookkeeping: this thread's set, else the newest. */
  lookupMemslotAny(gfn: number): Memslot | null {
    return this.ms.search(this.activeSet, gfn) ?? this.lookupMemslotNewest(gfn);
  }

  /**
   * A slot goes without the zap-all quirk: its rmaps are zapped and so is every shadow page of
   * a gfn inside it (kvm_mmu_zap_memslot()). Under mmu_lock for write.
   */
  private shadowZapSlot(slot: Memslot): void {
    const invalid = this.shadowInvalid;
    let any = rmapZapGfnRange(this, slot.baseGfn, slot.endGfn);
    const all: number[] = [];
    for (let sp = this.sp.ctl[ShadowCtl.kListHead]!; sp !== 0; sp = this.sp.get(sp, SpInfo.kListNext)) all.push(sp);
    for (const sp of all) {
      if (this.sp.get(sp, SpInfo.kActive) !== 0 && slot.contains(this.sp.gfn(sp)) && kvmMmuPrepareZapPage(this, sp, invalid)) any = true;
    }
    if (invalid.length > 0) kvmMmuCommitZapPage(this, invalid);
    else if (any) kvmFlushRemoteTlbs(this);
  }

  /** The guest's memory as KVM's guest walk and the VMM's page-table builder see it. */
  private makeGuestMem(): GuestPtMemory {
    const content = this.host.content;
    const pfnOf = (gfn: number, populate: boolean): number => {
      const slot = this.lookupMemslotAny(gfn);
      if (slot === null || slot.vma === null) return -1;
      const idx = slot.vmaOffset + (gfn - slot.baseGfn);
      const pfn = slot.vma.lookup(idx);
      if (pfn >= 0 || !populate) return pfn;
      return hostFault(this.ctx.hostThread, slot.vma, idx);
    };
    return {
      gfnContent: (gfn) => {
        if (content === null) return -1;
        const pfn = pfnOf(gfn, false);
        return pfn < 0 ? -1 : content.lookup(pfn);
      },
      contentOfGfn: (gfn) => {
        if (content === null) fail('EINVAL', 'guest page tables need a host created with page contents (HostOptions.pageContent)');
        const pfn = pfnOf(gfn, true);
        return pfn < 0 ? -1 : content.getOrCreate(pfn);
      },
      words: () => content!.words,
    };
  }

  /** Reclaim retired page-table pages that no walker can reach any more. */
  reclaimPtPages(): number {
    return this.pool.reclaim();
  }

  /** Every x86 VM stat by name, KVM's order; the ones the model does not drive are 0. */
  getStats(): VmStats {
    const st = readVmStats(this.w, this.vcpuWords);
    const s = this.sp;
    st.mmu_shadow_zapped = s.stat(ShadowCtl.kStatShadowZapped);
    st.mmu_pte_write = s.stat(ShadowCtl.kStatPteWrite);
    st.mmu_pde_zapped = s.stat(ShadowCtl.kStatPdeZapped);
    st.mmu_flooded = s.stat(ShadowCtl.kStatFlooded);
    st.mmu_recycled = s.stat(ShadowCtl.kStatRecycled);
    st.mmu_cache_miss = s.stat(ShadowCtl.kStatCacheMiss);
    st.mmu_unsync = s.stat(ShadowCtl.kStatUnsync);
    st.max_mmu_rmap_size = s.stat(ShadowCtl.kStatMaxRmapSize);
    st.max_mmu_page_hash_collisions = s.stat(ShadowCtl.kStatMaxHashCollisions);
    return st;
  }

  vcpuStats(): VcpuStats[] {
    return this.vcpuWords.map((_, i) => this.vcpu(i).getStats());
  }

  /** KVM_GET_STATS_FD on the VM: KVM's binary layout, id "kvm-<pid>" as kvm_create_vm() names it. */
  getStatsFd(): Buffer {
    return vmStatsFd(this.getStats());
  }

  /** Tear the VM down: unmap everything, release host memory (KVM_DESTROY + munmap). */
  destroy(): void {
    this.withMmuWriteLock(() => {
      if (tdpMmuZapRange(this, 0, kMaxGfn + 1)) kvmFlushRemoteTlbs(this);
      if (this.sp.usedPages() > 0) kvmShadowZapAll(this);
    });
    for (const v of this.vmas) {
      madviseDontneed(this.ctx.hostThread, v, 0, v.npages);
      // The memfd behind a shared backing goes with the process: its page cache is freed.
      truncatePageCache(this.ctx.hostThread, v);
    }
    // Each guest_memfd's last reference goes with the VM: its folios are freed.
    for (const g of this.gmems) g.file.truncateAll(this.ctx.hostThread);
    this.ctx.hostThread.drain();
    this.reclaimPtPages();
    Atomics.store(this.w, VmLayout.kVmOnline, 0);
  }
}

/** The 4K leaf tables a slot of npages uses when all of it is mapped at 4K. */
function slotLeafPages(npages: number): number {
  return Math.ceil(npages / PtLayout.SPTE_ENT_PER_PAGE);
}

/** Page-table pages one slot of `npages` needs mapped at 4K, each level rounded up plus one. */
function slotPoolPages(npages: number): number {
  let need = 0;
  for (let level = 1; level < PgLevel.PT64_ROOT_4LEVEL; level++) need += Math.ceil(npages / PtLayout.SPTE_ENT_PER_PAGE ** level) + 1;
  return need;
}
