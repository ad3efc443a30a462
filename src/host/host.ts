/**
 * The emulated host: physical memory (frame table), one buddy zone per NUMA node, hugetlb pools
 * reserved at creation, and per-owner accounting. Created once in the main thread; workers
 * `Host.attach(handle)` to the same SABs.
 */
import { allocSab, Arena } from '../shm/arena.js';
import { fail } from './errno.js';
import { FrameTable, type FrameTableHandle, FrameLayout } from './frame-table.js';
import { Zone, type ZoneHandle, ZoneLayout } from './buddy.js';
import { HugetlbPool, type HugetlbPoolHandle } from './hugetlb.js';
import { PcpCache } from './pcp.js';
import { PageContent, type PageContentHandle } from './page-content.js';

export const enum HostPage {
  kPageShift = 12,
  kPageSize = 1 << HostPage.kPageShift,
  kOrder2M = 9,
  kOrder1G = 18,
}
/** Owners are VMM processes (one per VM); accounting words are padded per owner. */
export const kMaxOwners = 4096;

export interface HostOptions {
  /** Bytes of ordinary (buddy) memory, hugetlb reservations included. */
  memory: number;
  /** NUMA nodes; memory and hugetlb pools are split evenly. Default 1. */
  nodes?: number;
  /** 2 MiB hugetlb pages to reserve (whole host). */
  hugepages2m?: number;
  /** 1 GiB hugetlb pages to reserve (whole host). */
  hugepages1g?: number;
  /** Allocate the 64-bit per-frame content stamps used by the dirty-log and conversion oracles. */
  stamps?: boolean;
  /**
   * KVM built with SMM (CONFIG_KVM_SMM, upstream x86's default): VMs have the SMM address space
   * 1 beside address space 0 (KVM_CAP_MULTI_ADDRESS_SPACE = 2). Off: one address space. Default on.
   */
  smm?: boolean;
  /**
   * Frames that may hold real content (guest page tables, page-content.ts): the store's maximum
   * in 4K pages. 0 (the default): none — guests run without paging.
   */
  pageContent?: number;
}

export interface HostHandle {
  readonly options: Required<HostOptions>;
  readonly frames: FrameTableHandle;
  readonly zones: ZoneHandle[];
  readonly pools2m: HugetlbPoolHandle[];
  readonly pools1g: HugetlbPoolHandle[];
  readonly owners: SharedArrayBuffer;
  readonly content: PageContentHandle | null;
}

export type NumaPolicy = { mode: 'preferred' | 'bind' | 'interleave'; node: number };

export class Host {
  readonly frames: FrameTable;
  readonly zones: Zone[];
  readonly pools2m: HugetlbPool[];
  readonly pools1g: HugetlbPool[];
  /** Frames (4K units) owned per owner, padded. */
  readonly owners: Int32Array;
  readonly options: Required<HostOptions>;
  /** Contents of frames that hold data (guest page tables), or null. */
  readonly content: PageContent | null;

  private constructor(readonly handle: HostHandle) {
    this.options = handle.options;
    this.frames = new FrameTable(handle.frames);
    this.zones = handle.zones.map((z) => new Zone(z));
    this.pools2m = handle.pools2m.map((p) => new HugetlbPool(p));
    this.pools1g = handle.pools1g.map((p) => new HugetlbPool(p));
    this.owners = new Int32Array(handle.owners);
    this.content = handle.content === null ? null : new PageContent(handle.content);
  }

  static attach(handle: HostHandle): Host {
    return new Host(handle);
  }

  static create(opts: HostOptions): Host {
    const nodes = opts.nodes ?? 1;
    if (!Number.isInteger(nodes) || nodes < 1 || nodes > 64) fail('EINVAL', `nodes must be 1..64, got ${nodes}`);
    if (!(opts.memory > 0) || opts.memory % HostPage.kPageSize !== 0) fail('EINVAL', `host memory must be a positive multiple of 4 KiB, got ${opts.memory}`);
    const options: Required<HostOptions> = {
      memory: opts.memory, nodes, hugepages2m: opts.hugepages2m ?? 0, hugepages1g: opts.hugepages1g ?? 0,
      stamps: opts.stamps ?? false, smm: opts.smm ?? true, pageContent: opts.pageContent ?? 0,
    };
    const totalPages = opts.memory / HostPage.kPageSize;
    const nodePages = Math.ceil(totalPages / nodes);
    const nodeStride = Math.ceil(nodePages / (1 << ZoneLayout.kMaxOrder)) * (1 << ZoneLayout.kMaxOrder);
    const nframes = nodeStride * (nodes - 1) + (totalPages - nodePages * (nodes - 1));
    if (nframes >= 2 ** 31) fail('EINVAL', `host memory of ${opts.memory} bytes exceeds the 8 TiB the frame table addresses`);
    const frames = FrameTable.create(nframes, options.stamps);
    const zones: Zone[] = [];
    for (let n = 0; n < nodes; n++) {
      const pages = n < nodes - 1 ? nodePages : totalPages - nodePages * (nodes - 1);
      zones.push(Zone.create(n, n * nodeStride, pages));
    }
    const split = (count: number, n: number) => Math.floor(count / nodes) + (n < count % nodes ? 1 : 0);
    const pools1g: HugetlbPool[] = [];
    const pools2m: HugetlbPool[] = [];
    // Reserve 1G first: they need the least fragmented memory.
    for (const [order, count, pools] of [[HostPage.kOrder1G, options.hugepages1g, pools1g], [HostPage.kOrder2M, options.hugepages2m, pools2m]] as const) {
      for (let n = 0; n < nodes; n++) {
        const want = split(count, n);
        const pool = HugetlbPool.create(order, n, want);
        const got: number[] = [];
        for (let i = 0; i < want; i++) {
          const pfn = zones[n]!.alloc(order);
          if (pfn < 0) fail('ENOMEM', `cannot reserve ${count} hugetlb pages of ${order === HostPage.kOrder1G ? '1 GiB' : '2 MiB'} on node ${n}: host memory too small`);
          frames.initFolio(pfn, order, FrameLayout.kMetaHugetlb, n, 0, 0);
          got.push(pfn);
        }
        for (let i = got.length - 1; i >= 0; i--) pool.add(got[i]!);
        pools.push(pool);
      }
    }
    const handle: HostHandle = {
      options, frames: frames.handle, zones: zones.map((z) => z.handle), pools2m: pools2m.map((p) => p.handle),
      pools1g: pools1g.map((p) => p.handle), owners: allocSab(kMaxOwners * Arena.kPadWords * 4),
      content: options.pageContent > 0 ? PageContent.createHandle(options.pageContent) : null,
    };
    return new Host(handle);
  }

  /** Per-thread allocation context: its own pcp caches. */
  thread(): HostThread {
    return new HostThread(this);
  }

  ownedPages(owner: number): number {
    return Atomics.load(this.owners, owner * Arena.kPadWords);
  }
  account(owner: number, pages: number): void {
    Atomics.add(this.owners, owner * Arena.kPadWords, pages);
  }

  pool(order: number, node: number): HugetlbPool {
    return (order === HostPage.kOrder1G ? this.pools1g : this.pools2m)[node]!;
  }

  hugetlbFree(order: number): number {
    let n = 0;
    for (const p of order === HostPage.kOrder1G ? this.pools1g : this.pools2m) n += p.freeCount();
    return n;
  }

  /** Accounting snapshot for results and the audit. */
  accounting(): HostAccounting {
    const z = this.zones.map((zone) => ({ node: zone.node, pages: zone.npages, free: zone.freePages() }));
    return {
      pages: this.zones.reduce((s, zone) => s + zone.npages, 0),
      free: z.reduce((s, x) => s + x.free, 0),
      hugetlb2m: { total: this.pools2m.reduce((s, p) => s + p.total(), 0), free: this.hugetlbFree(HostPage.kOrder2M) },
      hugetlb1g: { total: this.pools1g.reduce((s, p) => s + p.total(), 0), free: this.hugetlbFree(HostPage.kOrder1G) },
      nodes: z,
      frameTableBytes: this.frames.bytes(),
      buddyBytes: this.zones.reduce((s, zone) => s + zone.bytes(), 0),
    };
  }
}

export interface HostAccounting {
  pages: number;
  free: number;
  hugetlb2m: { total: number; free: number };
  hugetlb1g: { total: number; free: number };
  nodes: { node: number; pages: number; free: number }[];
  frameTableBytes: number;
  buddyBytes: number;
}

/**
 * What one thread needs to allocate frames: its pcp caches per node. Not shared; drain() before
 * the thread reports so the audit balances.
 */
export class HostThread {
  readonly pcps: PcpCache[];
  /** Order of the folio behind the last host fault (host_pfn_mapping_level's input). */
  lastOrder = 0;
  /** Whether the last host fault populated (allocated and zeroed) a folio. */
  populated = false;
  /**
   * The faulting thread as a userfaultfd sees it: its wait-queue entry (the vCPU index; -1 for
   * the VMM thread, which may not fault on registered memory), the wake-board line of the CPU it
   * runs on, whether the access is a write (UFFD_PAGEFAULT_FLAG_WRITE), and, after hostFault()
   * returned kHostFaultUffd, the uffd it sleeps on.
   */
  uffdWaiter = -1;
  uffdCpu = 0;
  faultWrite = false;
  /** The fault is one the wall-clock histograms sample. */
  faultTimed = false;
  uffdBlocked: import('./userfaultfd.js').Userfaultfd | null = null;
  /** >= 0 after a userfault found resolved before the thread slept (kHostFaultUffd still): its modeled ns. */
  uffdSleptNs = -1;
  constructor(readonly host: Host) {
    this.pcps = host.zones.map((z) => new PcpCache(z));
  }

  /** Allocate a folio of `order` for `owner` following `policy`; returns the head pfn or -1 (ENOMEM). */
  allocFolio(order: number, owner: number, policy: NumaPolicy, index: number, refcount = 0): number {
    return this.allocOn(order, owner, policy, index, refcount, false);
  }

  /** A page from the hugetlb pool of its size (never from the buddy allocator). */
  allocHugetlb(order: number, owner: number, policy: NumaPolicy, index: number, refcount = 0): number {
    return this.allocOn(order, owner, policy, index, refcount, true);
  }

  /** Try the policy's node first, then the others unless bound (mempolicy fallback). */
  private allocOn(order: number, owner: number, policy: NumaPolicy, index: number, refcount: number, hugetlb: boolean): number {
    const host = this.host;
    const nodes = host.zones.length;
    const first = policy.mode === 'interleave' ? index % nodes : policy.node;
    const tries = policy.mode === 'bind' ? 1 : nodes;
    for (let t = 0; t < tries; t++) {
      const node = (first + t) % nodes;
      const pfn = hugetlb ? host.pool(order, node).alloc() : order === 0 ? this.pcps[node]!.alloc() : host.zones[node]!.alloc(order);
      if (pfn >= 0) {
        host.frames.initFolio(pfn, order, hugetlb ? FrameLayout.kMetaHugetlb : 0, node, owner, refcount);
        this.account(owner, 1 << order);
        return pfn;
      }
    }
    return -1;
  }

  /** Return a folio whose last reference went away. */
  freeFolio(head: number): void {
    const host = this.host;
    const meta = host.frames.meta(head);
    const order = meta & 0x1f;
    const node = (meta >>> 10) & 0x3f;
    const owner = meta >>> 16;
    this.account(owner, -(1 << order));
    host.frames.clearStamps(head, host.frames.stamps ? 1 << order : 0);
    // A freed page's content is gone (it reads as zero when reused).
    const content = host.content;
    if (content !== null) for (let i = 0; i < 1 << order; i++) content.drop(head + i);
    if ((meta & FrameLayout.kMetaHugetlb) !== 0) {
      host.frames.initFolio(head, order, FrameLayout.kMetaHugetlb, node, 0, 0);
      host.pool(order, node).free(head);
    } else {
      host.frames.initFolio(head, order, 0, node, 0, 0);
      if (order === 0) this.pcps[node]!.free(head);
      else host.zones[node]!.free(head, order);
    }
  }

  /**
   * Per-owner accounting is batched per thread (an atomic add per 4K fault on a shared word is
   * measurable) and published at drain(), which every thread calls before it reports.
   */
  private readonly pending = new Float64Array(kMaxOwners);
  private readonly listed = new Uint8Array(kMaxOwners);
  private readonly pendingOwners: number[] = [];
  private account(owner: number, pages: number): void {
    if (this.listed[owner] === 0) {
      this.listed[owner] = 1;
      this.pendingOwners.push(owner);
    }
    this.pending[owner]! += pages;
  }

  /**
   * Per-thread batches of layers above (a guest_memfd's allocation counter) that publish when
   * this thread drains, as its own accounting does.
   */
  readonly onDrain: (() => void)[] = [];

  drain(): void {
    for (const p of this.pcps) p.drain();
    for (const f of this.onDrain) f();
    for (const o of this.pendingOwners) {
      const d = this.pending[o]!;
      if (d !== 0) this.host.account(o, d);
      this.pending[o] = 0;
      this.listed[o] = 0;
    }
    this.pendingOwners.length = 0;
  }
}
