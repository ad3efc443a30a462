/**
 * Host sizing: what a memstress-style run will cost this machine, checked before anything is
 * allocated, and the machine's available memory (MemAvailable, capped by a cgroup limit).
 *
 * The harness keeps no guest page contents, so a run's footprint is its metadata: the frame
 * table (the memmap, populated at host creation: 8 B per host frame) and buddy bitmaps, the TDP
 * page-table pool (preallocated for every guest page of a memslot), the VMM's host page tables,
 * dirty bitmaps, lpage_info, vCPU words and dirty rings, plus Node's baseline RSS for the main
 * thread and each worker. Figures are per-unit costs measured on runs of 64 MiB, 512 MiB and
 * 1 GiB guests and a 64 GiB host (test/host-sizing-estimate.test.ts), rounded up: the estimate
 * is meant to be at or above the measured peak RSS, within 1.5x.
 */
import { freemem } from 'node:os';
import { readFileSync } from 'node:fs';
import { formatSize, parseSize, UsageError } from './flags.js';
import type { MemstressConfig, MemstressLayout } from './memstress-vm.js';
import { backingPageOrder, isHugetlbBacking } from '../host/mm.js';

/** Host size and hugetlb pools that fit the scenario. */
export function sizeHost(c: MemstressConfig, l: MemstressLayout): { memory: number; hugepages2m: number; hugepages1g: number } {
  const perVm = l.guestPages * 4096;
  const huge = isHugetlbBacking(c.backing) ? 4096 * 2 ** backingPageOrder(c.backing) : 0;
  const hugePages = huge ? (perVm / huge) * c.vms : 0;
  const slack = 64 * 2 ** 20;
  // Host.create() reserves each node's share of the hugetlb pool from that node's own memory
  // (hugepages= split over nodes, as hugetlb_hstate_alloc_pages() does), and splits memory evenly
  // over the nodes: so every node must hold ceil(pages / nodes) huge pages, not the total / nodes.
  const perNodeHuge = Math.ceil(hugePages / c.nodes);
  const memory = c.hostMemory ?? (huge ? c.nodes * (perNodeHuge * huge + slack) : perVm * c.vms + slack * c.nodes);
  return { memory, hugepages2m: huge === 2 ** 21 ? hugePages : 0, hugepages1g: huge === 2 ** 30 ? hugePages : 0 };
}

// Measured unit costs (bytes), rounded up.
const enum SizingCost {
  /** Frame table 8 B + buddy free-area bitmaps ~0.27 B per host 4K frame. */
  kPerHostFrame = 9,
  /** TDP page-table pool, ~9.7 B per guest 4K page measured (pt words + info + free stack). */
  kPerGuestPagePt = 12,
  /** The VMM's host page tables (mm.ts), 4 B per 4K page of a non-hugetlb mapping. */
  kPerGuestPageHostPt = 4,
  /** Dirty bitmap (1 bit) + lpage_info, rounded up. */
  kPerGuestPageOther = 1,
  /** vCPU shared words (2 KiB) + the 8 page-table pages per vCPU the pool reserves (4116 B each). */
  kPerVcpu = 40 * 1024,
  /**
   * Per VM: the pool's fixed 16 pages + roots and upper levels, VM words, epoch, and the memslot
   * sets (table, two set arrays, metadata arena: ~24 KiB resident measured with one slot), and the
   * shadow MMU's page metadata, shadowed_translation, hash and counters, which every VM carries:
   * 0.44 MiB of SABs per VM reported for 64 VMs x 2 vCPUs, and 0.47-0.55 MiB of RSS per VM
   * measured (64 VMs against 1, Node 20 and 24), which the 40 KiB per vCPU covers in part.
   */
  kPerVm = 512 * 1024,
  /**
   * Node main thread, V8 heap, WASM histograms: 85 MiB measured with one worker on Node 20; 4 MiB
   * more since the userfaultfd modules load in every run, 8 more since the live view, memslot
   * scenarios and stats modules do (64 VMs x 2 vCPUs on 2 workers measured 125-129 MiB, above the
   * old estimate of 126.4, the high end inside a CI suite run), 8 more since the guest_memfd,
   * attribute and conversion modules do (130.8-131.5 MiB measured alone against an estimate of
   * 134.4: too thin a margin for a loaded CI run).
   */
  kBaseRss = 92 * 2 ** 20,
  /**
   * Node 22 and later start ~23-30 MiB larger (measured on 24.22: 115 vs 87 MiB for -b 512M, and
   * 155 MiB for 64 VMs x 2 vCPUs on 2 workers, above the old estimate of 154.4); with the
   * guest_memfd modules 157.5-161.7 MiB alone and 172.4 MiB inside a CI suite run on 24.22.3,
   * above the estimate of 166.4: 12 MiB more.
   */
  kBaseRssNode22 = 128 * 2 ** 20,
  /** Each piscina worker thread: ~13 MiB measured. */
  kPerWorkerRss = 16 * 2 ** 20,
}

const kNodeMajor = Number(process.versions.node.split('.')[0]);

export interface SizingEstimate {
  bytes: number;
  breakdown: Record<string, number>;
}

export function estimateRunBytes(c: MemstressConfig, l: MemstressLayout, opts: { ringBytesPerVcpu?: number } = {}): SizingEstimate {
  const size = sizeHost(c, l);
  const hostFrames = size.memory / 4096;
  const guestPages = l.guestPages * c.vms;
  const hugetlb = c.backing.includes('hugetlb');
  const vcpus = c.vms * c.vcpus;
  const workers = Math.min(c.workers, vcpus);
  const breakdown = {
    frameTable: hostFrames * SizingCost.kPerHostFrame,
    ptPool: guestPages * SizingCost.kPerGuestPagePt,
    hostPageTables: hugetlb ? 0 : guestPages * SizingCost.kPerGuestPageHostPt,
    bitmapsAndLpage: guestPages * SizingCost.kPerGuestPageOther,
    vmsAndVcpus: c.vms * SizingCost.kPerVm + vcpus * (SizingCost.kPerVcpu + (opts.ringBytesPerVcpu ?? 0)),
    // The shadow MMU: rmap heads (8 B per 4K gfn), shadowed_translation (4 B per SPTE) and the
    // guest's own page tables (8 B per 4K PTE, in slot 0 and the page-content store).
    shadowMmu: c.mmu === 'shadow' ? guestPages * 20 : 0,
    baseRss: (kNodeMajor >= 22 ? SizingCost.kBaseRssNode22 : SizingCost.kBaseRss) + workers * SizingCost.kPerWorkerRss,
  };
  return { bytes: Object.values(breakdown).reduce((a, b) => a + b, 0), breakdown };
}

export interface Available {
  bytes: number;
  source: string;
}

function readNumber(path: string): number | null {
  try {
    const t = readFileSync(path, 'utf8').trim();
    return /^\d+$/.test(t) ? Number(t) : null;
  } catch {
    return null;
  }
}

/** The cgroup's memory headroom (limit − usage), v2 then v1; null without a limit. */
function cgroupHeadroom(root: string): Available | null {
  let path = '';
  try {
    const line = readFileSync(`${root}/proc/self/cgroup`, 'utf8').split('\n').find((x) => x.startsWith('0::'));
    if (line) path = line.slice(3).trim();
  } catch {
    // not Linux, or no /proc
  }
  for (const dir of [`/sys/fs/cgroup${path === '/' ? '' : path}`, '/sys/fs/cgroup']) {
    const max = readNumber(`${root}${dir}/memory.max`); // 'max' (no limit) reads as null
    const cur = readNumber(`${root}${dir}/memory.current`);
    if (max !== null && cur !== null) return { bytes: Math.max(0, max - cur), source: `cgroup ${dir}/memory.max - memory.current` };
  }
  const lim = readNumber(`${root}/sys/fs/cgroup/memory/memory.limit_in_bytes`);
  const use = readNumber(`${root}/sys/fs/cgroup/memory/memory.usage_in_bytes`);
  // v1 reports "no limit" as a huge page-aligned number (PAGE_COUNTER_MAX).
  if (lim !== null && use !== null && lim < 2 ** 60) return { bytes: Math.max(0, lim - use), source: 'cgroup v1 memory.limit_in_bytes - usage_in_bytes' };
  return null;
}

/**
 * The memory this run may use: MMUH_MEMORY_AVAILABLE if set (tests, or a user who knows better),
 * else MemAvailable from /proc/meminfo (os.freemem() elsewhere), capped by the cgroup headroom.
 * `root` prefixes /proc and /sys (tests give a fake tree).
 */
export function availableMemory(env: NodeJS.ProcessEnv = process.env, root = ''): Available {
  const forced = env.MMUH_MEMORY_AVAILABLE;
  if (forced !== undefined && forced !== '') {
    return { bytes: parseSize(forced), source: 'MMUH_MEMORY_AVAILABLE' };
  }
  let avail: Available = { bytes: freemem(), source: 'os.freemem()' };
  try {
    const m = /^MemAvailable:\s+(\d+) kB$/m.exec(readFileSync(`${root}/proc/meminfo`, 'utf8'));
    if (m) avail = { bytes: Number(m[1]) * 1024, source: 'MemAvailable' };
  } catch {
    // keep os.freemem()
  }
  const cg = cgroupHeadroom(root);
  return cg !== null && cg.bytes < avail.bytes ? cg : avail;
}

function mib(bytes: number): string {
  return bytes >= 2 ** 30 ? `${(bytes / 2 ** 30).toFixed(1)} GiB` : `${Math.ceil(bytes / 2 ** 20)} MiB`;
}

/** Refuse a run that will not fit (exit 2), before anything is allocated. */
export function checkRunFits(c: MemstressConfig, l: MemstressLayout, opts: { ringBytesPerVcpu?: number } = {}): void {
  const e = estimateRunBytes(c, l, opts);
  const a = availableMemory();
  if (e.bytes <= a.bytes) return;
  refuseTooBig(c, l, e, a);
}

function refuseTooBig(c: MemstressConfig, l: MemstressLayout, e: SizingEstimate, a: Available): never {
  const top = Object.entries(e.breakdown).sort((x, y) => y[1] - x[1]).slice(0, 2).map(([k, v]) => `${k} ${mib(v)}`).join(', ');
  const host = sizeHost(c, l).memory;
  throw new UsageError(
    `ENOMEM: this run needs about ${mib(e.bytes)} (${top}; ${c.vms} VM(s) x ${formatSize(l.guestPages * 4096)} guest, ` +
      `${mib(host)} host) but ${mib(a.bytes)} is available (${a.source}): use a smaller -b, -v, --vms or --host-memory`,
  );
}

/**
 * The same estimate for a guest_memfd run (conversion-storm): the frame table of `hostBytes`,
 * the TDP pool and the files' per-page state (map 4 B, host-map and pin bytes, the shareability
 * bit) per guest page, the VMM's own host page tables for `vmaPages`, VMs, vCPUs and Node's base.
 * Refuses with ENOMEM (exit 2) when it does not fit.
 */
export function checkGmemRunFits(hostBytes: number, guestPages: number, vmaPages: number, vms: number, vcpus: number, workers: number): void {
  const breakdown = {
    frameTable: (hostBytes / 4096) * SizingCost.kPerHostFrame,
    ptPool: guestPages * SizingCost.kPerGuestPagePt,
    guestMemfd: guestPages * 7,
    hostPageTables: vmaPages * SizingCost.kPerGuestPageHostPt,
    bitmapsAndLpage: guestPages * SizingCost.kPerGuestPageOther,
    vmsAndVcpus: vms * SizingCost.kPerVm + vcpus * SizingCost.kPerVcpu,
    baseRss: (kNodeMajor >= 22 ? SizingCost.kBaseRssNode22 : SizingCost.kBaseRss) + Math.min(workers, vcpus) * SizingCost.kPerWorkerRss,
  };
  const bytes = Object.values(breakdown).reduce((a, b) => a + b, 0);
  const a = availableMemory();
  if (bytes <= a.bytes) return;
  const top = Object.entries(breakdown).sort((x, y) => y[1] - x[1]).slice(0, 2).map(([k, v]) => `${k} ${mib(v)}`).join(', ');
  throw new UsageError(`ENOMEM: this run needs about ${mib(bytes)} (${top}; ${vms} VM(s), ${mib(hostBytes)} host) but ${mib(a.bytes)} is available (${a.source}): use a smaller -b, -v, --vms or --host-memory`);
}
