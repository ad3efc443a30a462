/**
 * Scenario `conversion-storm`: many confidential VMs whose vCPUs share and unshare memory at a
 * set rate inside huge guest_memfd folios — SWIOTLB-like bounce buffers (`--mode bounce`: each
 * vCPU cycles over a small pool of 4K pages) or random ranges (`--mode random`) — under a
 * conversion strategy (conversion-vmm.ts). No upstream test does this at scale; its per-VM
 * setup follows x86/private_mem_conversions_test.c (KVM_X86_SW_PROTECTED_VM, one guest_memfd,
 * KVM_HC_MAP_GPA_RANGE exits handled on the vCPU thread).
 *
 * Phases: `populate` (every vCPU writes its memory once, private: mapped at the folio size),
 * then `--rounds` rounds of `--conversions` conversions per vCPU. After each phase the
 * timeline records pages_4k/2m/1g, the files' folios split and merged, memory allocated twice
 * (a gfn backed by a private frame — in the file, or stranded in a hugetlb page that cannot be
 * freed — and by a shared copy at once), stranded and host-mapped memory. The end adds the
 * accounting per VM and NUMA node: guest_memfd memory private / shared / host-mapped beside the
 * VMA-based view (RSS: what the VMM's own mappings hold, the only part `ps` shows).
 */
import { Runner } from './runner.js';
import { audit } from '../kvm/audit.js';
import { costModelFlag, memstressFlags } from './common-flags.js';
import { UsageError, givenFlags } from './flags.js';
import { assembleResult, statsSnapshot } from './assemble.js';
import { hostInfo, snapshot } from './host-info.js';
import { checkGmemRunFits } from './host-sizing.js';
import type { ScenarioDef, ScenarioIo } from './scenario.js';
import type { RunResult, StatsSnapshot } from './result.js';
import { kConversionStrategies, type ConversionStrategy, type ConversionVmmSpec } from './conversion-vmm.js';
import { fmtTimespec } from './memstress-vm.js';
import { Host } from '../host/host.js';
import { KvmError } from '../host/errno.js';
import { FrameLayout } from '../host/frame-table.js';
import { backingPageOrder, isHugetlbBacking, kBackingSources, type BackingSource } from '../host/mm.js';
import { GUEST_MEMFD_FLAG_MMAP, GmemWord, gmemBackingOrder, kGmemBackings, type GmemBacking, type GmemFile } from '../gmem/gmem-file.js';
import { KVM_MEMORY_ATTRIBUTE_PRIVATE, attrChangeCosts } from '../kvm/attributes.js';
import { KVM_EXIT_HYPERCALL_VALID_MASK } from '../kvm/caps.js';
import { KVM_X86_SW_PROTECTED_VM } from '../kvm/guest_memfd.js';
import { KVM_MEM_GUEST_MEMFD } from '../kvm/memslot.js';
import { Vm, type ThreadCtx } from '../kvm/vm.js';
import { Metrics } from '../metrics/counters.js';
import type { ConversionGuestSpec } from '../workload/conversion-guest.js';

/** Guest memory starts at 4 GiB, 1G aligned (private_mem_conversions_test's BASE_DATA_GPA). */
const kBaseGpa = 2 ** 32;
const kSlot = 10;

export const conversionStorm: ScenarioDef = {
  name: 'conversion-storm',
  summary: 'many VMs x vCPUs share and unshare 4K pages inside huge guest_memfd folios; conversion latency, mapping levels and memory per strategy',
  after: 'tools/testing/selftests/kvm/x86/private_mem_conversions_test.c (its setup, at scale)',
  flags: [
    ...memstressFlags({ bytes: 2 ** 30, vcpus: 1 }).filter((s) => !['backing', 'overlap', 'mmio-every'].includes(s.name)),
    { name: 'backing', type: 'enum', choices: kGmemBackings, default: 'hugetlb-1g', help: 'guest_memfd folio size: 4k, thp-2m, hugetlb-2m, hugetlb-1g' },
    { name: 'conversion', type: 'enum', choices: kConversionStrategies, default: 'in-place', help: 'split-and-double-allocate (shared memory is the VMM\'s, the unused copy punched out), in-place (one folio, 1G split to 4K), in-place-2m-first (1G -> 2M first)' },
    { name: 'attributes', type: 'enum', choices: ['vm', 'gmem'], default: null, help: 'attribute ioctl: vm (KVM_SET_MEMORY_ATTRIBUTES, 6.8) or gmem (KVM_SET_MEMORY_ATTRIBUTES2); default vm for split-and-double-allocate, gmem (required) for in-place' },
    { name: 'mode', type: 'enum', choices: ['bounce', 'random'], default: 'bounce', help: 'bounce: each vCPU cycles over --bounce-pages 4K pages; random: seeded random ranges of 1..--max-range pages' },
    { name: 'conversions', type: 'int', default: 256, min: 1, max: 2 ** 24, help: 'conversions (share + unshare) per vCPU per round' },
    { name: 'rounds', type: 'int', default: 4, min: 1, max: 1000, help: 'rounds of conversions (a timeline point after each)' },
    { name: 'bounce-pages', type: 'int', default: 16, min: 1, max: 2 ** 20, help: 'bounce-buffer pages per vCPU (--mode bounce)' },
    { name: 'max-range', type: 'int', default: 16, min: 1, max: 262144, help: 'largest range in pages (--mode random)' },
    { name: 'uses', type: 'int', default: 8, min: 0, max: 1 << 20, help: 'guest stores to a range while it is shared' },
    { name: 'between', type: 'int', default: 64, min: 0, max: 1 << 24, help: 'random private guest stores between two conversions' },
    { name: 'host-touches', type: 'int', default: 1, min: 0, max: 1 << 20, help: 'stores the device model makes to a range it was just given' },
    { name: 'shared-backing', short: 's', type: 'enum', choices: kBackingSources, default: 'anonymous', help: 'split-and-double-allocate: the VMM memory behind shared gfns (private_mem_conversions_test\'s -s)' },
  ],
  check(f) {
    const notes: string[] = [];
    const given = givenFlags(f);
    const vcpus = (f.vms as number) * (f.vcpus as number);
    if ((f.workers as number) > vcpus) {
      if (given.has('workers')) notes.push(`--workers ${f.workers as number} capped to ${vcpus}, the number of vCPUs`);
      f.workers = vcpus;
    }
    const strategy = f.conversion as ConversionStrategy;
    const inPlace = strategy !== 'split-and-double-allocate';
    if (f.attributes === null) f.attributes = inPlace ? 'gmem' : 'vm';
    if (inPlace && f.attributes !== 'gmem') throw new UsageError(`--conversion ${strategy} converts through the guest_memfd: it needs --attributes gmem (KVM_SET_MEMORY_ATTRIBUTES2)`);
    if (inPlace && given.has('shared-backing')) throw new UsageError(`--shared-backing has no effect with --conversion ${strategy}: shared memory is the guest_memfd's own`);
    if (strategy === 'in-place-2m-first' && f.backing !== 'hugetlb-1g') throw new UsageError('--conversion in-place-2m-first splits 1G folios: it needs --backing hugetlb-1g');
    const pages = (f.bytes as number) / 4096;
    if (!Number.isInteger(pages)) throw new UsageError(`-b ${f.bytes as number} is not a multiple of 4 KiB`);
    const folio = 2 ** gmemBackingOrder(f.backing as GmemBacking);
    if (((f.vcpus as number) * pages) % folio !== 0) throw new UsageError(`guest memory per VM (${f.vcpus as number} x -b) must be a multiple of the ${f.backing as string} folio`);
    if (f.mode === 'bounce' && (f['bounce-pages'] as number) > pages) throw new UsageError(`--bounce-pages ${f['bounce-pages'] as number} is more than a vCPU's ${pages} pages`);
    if (f.mode === 'random' && (f['max-range'] as number) > pages) throw new UsageError(`--max-range ${f['max-range'] as number} is more than a vCPU's ${pages} pages`);
    if (f.mode === 'bounce' && given.has('max-range')) throw new UsageError('--max-range has no effect with --mode bounce');
    if (f.mode === 'random' && given.has('bounce-pages')) throw new UsageError('--bounce-pages has no effect with --mode random');
    return notes;
  },
  async run(f, io) {
    return runConversionStorm(f, io);
  },
};

interface StormSetup {
  host: Host;
  vms: Vm[];
  cost: Float64Array;
  pagesPerVcpu: number;
}

function setupStorm(f: Record<string, unknown>): StormSetup {
  const nVms = f.vms as number;
  const vcpus = f.vcpus as number;
  const pagesPerVcpu = (f.bytes as number) / 4096;
  const vmPages = vcpus * pagesPerVcpu;
  const backing = f.backing as GmemBacking;
  const strategy = f.conversion as ConversionStrategy;
  const shared = f['shared-backing'] as BackingSource;
  const split = strategy === 'split-and-double-allocate';
  const order = gmemBackingOrder(backing);
  const hugetlb = backing === 'hugetlb-2m' || backing === 'hugetlb-1g';
  // Pools: the files' huge pages, plus the shared side's when it is hugetlb too (every huge page
  // of it may be touched by some range).
  const sharedHuge = split && isHugetlbBacking(shared) ? backingPageOrder(shared) : 0;
  let h2m = 0;
  let h1g = 0;
  const add = (o: number, n: number) => (o === 18 ? (h1g += n) : o === 9 ? (h2m += n) : 0);
  if (hugetlb) add(order, (vmPages >>> order) * nVms);
  if (sharedHuge > 0) add(sharedHuge, (vmPages >>> sharedHuge) * nVms);
  const nodes = f['numa-nodes'] as number;
  const slack = 64 * 2 ** 20 + nVms * vcpus * 2 ** 21;
  const hugeBytes = (h2m * 2 ** 21 + h1g * 2 ** 30);
  // Buddy memory: the files when not hugetlb, and the shared copies (at most what is shared at
  // once; the slack covers a few ranges per vCPU) when the shared side is not hugetlb.
  const buddyBytes = (hugetlb ? 0 : vmPages * 4096 * nVms) + slack;
  const memory = (f['host-memory'] as number | null) ?? Math.ceil((hugeBytes + buddyBytes) / nodes / 2 ** 21) * 2 ** 21 * nodes + (nodes > 1 ? nodes * 2 ** 30 : 0);
  checkGmemRunFits(memory, vmPages * nVms, split ? vmPages * nVms : 0, nVms, nVms * vcpus, f.workers as number);
  const cost = costModelFlag(f['cost-model'] as string);
  try {
    const host = Host.create({ memory, nodes, hugepages2m: h2m, hugepages1g: h1g, stamps: true });
    const ctx: ThreadCtx = { metrics: new Metrics(cost), hostThread: host.thread() };
    const vms: Vm[] = [];
    for (let i = 0; i < nVms; i++) {
      const vm = Vm.create(host, i, ctx, { maxVcpus: vcpus, type: KVM_X86_SW_PROTECTED_VM, attributes: f.attributes as 'vm' | 'gmem' });
      vm.enableCap('KVM_CAP_EXIT_HYPERCALL', KVM_EXIT_HYPERCALL_VALID_MASK);
      // In place, the file serves shared faults too (GUEST_MEMFD_FLAG_MMAP); it starts private.
      const fd = vm.createGuestMemfd({ size: vmPages * 4096, flags: split ? 0 : GUEST_MEMFD_FLAG_MMAP, backing, inPlaceSplit: strategy === 'in-place-2m-first' ? '2m-first' : '4k' });
      // In place, the VMM maps the file itself (MAP_SHARED) for its device model.
      if (!split) fd.mmap({ shared: true });
      const hva = split ? vm.mmap({ size: vmPages * 4096, backing: shared }) : 0x7f0000000000;
      vm.setUserMemoryRegion2({ slot: kSlot, flags: KVM_MEM_GUEST_MEMFD, guestPhysAddr: kBaseGpa, memorySize: vmPages * 4096, userspaceAddr: hva, guestMemfd: fd, guestMemfdOffset: 0 });
      // Everything private to begin with, as a confidential guest's memory is at boot.
      if (f.attributes === 'vm') vm.setMemoryAttributes({ address: kBaseGpa, size: vmPages * 4096, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE });
      for (let v = 0; v < vcpus; v++) vm.createVcpu();
      vms.push(vm);
    }
    ctx.hostThread.drain();
    return { host, vms, cost, pagesPerVcpu };
  } catch (e) {
    if (e instanceof KvmError) throw new UsageError(`cannot set up ${nVms} VM(s) for conversion-storm: ${e.message}`);
    throw e;
  }
}

/** One timeline point: mapping levels and memory after a phase, summed over VMs. */
export interface StormPoint {
  [k: string]: number;
}

function timelinePoint(round: number, vms: Vm[]): StormPoint {
  const p: StormPoint = { round, pages_4k: 0, pages_2m: 0, pages_1g: 0, folioSplits: 0, folioMerges: 0, doubleAllocatedPages: 0, strandedPages: 0, hostMappedPages: 0, gmemPages: 0, sharedCopyPages: 0, sigbus: 0 };
  for (const vm of vms) {
    const s = vm.getStats();
    p.pages_4k! += s.pages_4k;
    p.pages_2m! += s.pages_2m;
    p.pages_1g! += s.pages_1g;
    const slot = vm.memslots[0]!;
    const f = slot.gmem!;
    p.folioSplits! += f.counter(GmemWord.kFolioSplits);
    p.folioMerges! += f.counter(GmemWord.kFolioMerges);
    p.strandedPages! += f.counter(GmemWord.kStranded);
    p.hostMappedPages! += f.counter(GmemWord.kHostMapped);
    p.gmemPages! += f.counter(GmemWord.kAllocated);
    p.sigbus! += f.counter(GmemWord.kSigbus);
    if (slot.vma !== null) {
      const d = doubleAllocated(f, slot.vma, slot.vmaOffset, slot.npages);
      p.doubleAllocatedPages! += d.both;
      p.sharedCopyPages! += d.shared;
    }
  }
  return p;
}

/** Pages backed twice: a private frame (in the file or stranded) and a shared copy at once. */
function doubleAllocated(f: GmemFile, vma: NonNullable<Vm['vmas'][number]>, vmaOffset: number, npages: number): { both: number; shared: number } {
  let both = 0;
  let shared = 0;
  for (let p = 0; p < npages; p++) {
    if (vma.lookup(vmaOffset + p) < 0) continue;
    shared++;
    if (f.holdsPage(p)) both++;
  }
  return { both, shared };
}

/**
 * The accounting seed 000 debates: per VM and NUMA node, guest_memfd memory (private, shared,
 * host-mapped) beside what a VMA-based view (RSS) shows — the VMM's own mappings, plus the
 * guest_memfd pages it has mmap()ed; private guest_memfd memory is invisible to it.
 */
function accounting(host: Host, vms: Vm[]): Record<string, number>[] {
  const frames = host.frames;
  const rows: Record<string, number>[] = [];
  const node = (pfn: number) => (frames.meta(pfn) >>> FrameLayout.kMetaNodeShift) & FrameLayout.kMetaNodeMask;
  for (const vm of vms) {
    const per = new Map<number, Record<string, number>>();
    const row = (n: number) => {
      let r = per.get(n);
      if (r === undefined) per.set(n, (r = { vm: vm.id, node: n, gmemPrivate: 0, gmemShared: 0, gmemHostMapped: 0, stranded: 0, vmaRss: 0, rss: 0 }));
      return r;
    };
    for (const fd of vm.gmems) {
      const f = fd.file;
      for (let p = 0; p < f.npages; p++) {
        const e = f.map[p]!;
        if (e === 0) {
          if (f.hugeHead !== null && f.hugeHead[p >>> f.order] !== 0) row(node(f.hugeHead[p >>> f.order]! - 1)).stranded!++;
          continue;
        }
        const r = row(node(e - 1));
        if (f.isPrivate(p)) r.gmemPrivate!++;
        else r.gmemShared!++;
        if (f.hostMapped[p] !== 0) {
          r.gmemHostMapped!++;
          r.rss!++;
        }
      }
    }
    for (const vma of vm.vmas) {
      for (let p = 0; p < vma.npages; p++) {
        const pfn = vma.lookup(p);
        if (pfn < 0) continue;
        const r = row(node(pfn));
        r.vmaRss!++;
        r.rss!++;
      }
    }
    for (const r of [...per.values()].sort((a, b) => a.node! - b.node!)) rows.push(r);
  }
  return rows;
}

export async function runConversionStorm(f: Record<string, unknown>, io: ScenarioIo): Promise<RunResult> {
  const { host, vms, cost, pagesPerVcpu } = setupStorm(f);
  const strategy = f.conversion as ConversionStrategy;
  const vcpus = f.vcpus as number;
  const nVms = f.vms as number;
  io.print(`conversion-storm: ${nVms} VM(s) x ${vcpus} vCPU(s) x ${(pagesPerVcpu * 4096) / 2 ** 20} MiB, guest_memfd ${f.backing as string}, --conversion ${strategy}, attributes through ${f.attributes === 'vm' ? 'KVM_SET_MEMORY_ATTRIBUTES' : 'KVM_SET_MEMORY_ATTRIBUTES2'}, --mode ${f.mode as string}`);
  const start = snapshot();
  const workers = f.workers as number;
  const runner = new Runner(host, vms, { workers, cost, sliceAccesses: f.slice as number, wallEvery: f['wall-sample'] as number, observer: io.observer });
  const exits: ConversionVmmSpec = { kind: 'conversion-vmm', strategy, hostTouches: f['host-touches'] as number, histogram: 'conversion-storm' };
  const spec = (ref: { vm: number; vcpu: number }, mode: ConversionGuestSpec['mode'], iteration: number): ConversionGuestSpec => ({
    kind: 'conversion', baseGfn: kBaseGpa / 4096 + ref.vcpu * pagesPerVcpu, pages: pagesPerVcpu, mode, conversions: f.conversions as number,
    bouncePages: f['bounce-pages'] as number, maxRangePages: f['max-range'] as number, uses: f.uses as number, between: f.between as number,
    seed: f.seed as number, vm: vms[ref.vm]!.id, vcpu: ref.vcpu, iteration,
  });
  try {
    const timeline: StormPoint[] = [];
    const stats: Record<string, StatsSnapshot> = {};
    // The invariants after every phase, not only at the end (a stale SPTE that a later zap
    // removes would otherwise go unseen).
    const violations: RunResult['audit']['violations'] = [];
    const auditPhase = (name: string) => {
      for (const v of audit(host, vms).violations) violations.push({ ...v, detail: `after ${name}: ${v.detail}` });
    };
    const pop = await runner.phase('populate', (ref) => spec(ref, 'populate', 1), 'populate.page_fault', undefined, { exits });
    auditPhase('populate');
    timeline.push(timelinePoint(0, vms));
    stats.populate = statsSnapshot(vms);
    io.print(`populate: ${fmtTimespec(pop.wallNs)} (modeled ${fmtTimespec(pop.modeledNs)}); pages_1g ${timeline[0]!.pages_1g} pages_2m ${timeline[0]!.pages_2m} pages_4k ${timeline[0]!.pages_4k}`);
    let conversions = 0;
    let failures = 0;
    let rangeEntries = 0;
    let gfns = 0;
    let eagain = 0;
    let memoryFaultExits = 0;
    let doublePageConversions = 0;
    let stormWall = 0;
    let stormModeled = 0;
    for (let r = 1; r <= (f.rounds as number); r++) {
      const ph = await runner.phase(`round-${r}`, (ref) => spec(ref, f.mode as ConversionGuestSpec['mode'], 1 + r), `round-${r}.page_fault`, undefined, { exits });
      const c = ph.conversions;
      conversions += c.toShared + c.toPrivate;
      rangeEntries += c.rangeEntries;
      gfns += c.gfns;
      eagain += c.eagain;
      memoryFaultExits += c.memoryFaultExits;
      doublePageConversions += c.doublePageConversions;
      failures += ph.vcpus.reduce((s, v) => s + v.guestFailures, 0);
      stormWall += ph.wallNs;
      stormModeled += ph.modeledNs;
      auditPhase(`round-${r}`);
      const p = timelinePoint(r, vms);
      timeline.push(p);
      io.print(`round ${r}: ${c.toShared + c.toPrivate} conversions in ${fmtTimespec(ph.wallNs)} (modeled ${fmtTimespec(ph.modeledNs)}); pages_1g ${p.pages_1g} pages_2m ${p.pages_2m} pages_4k ${p.pages_4k}; folios split ${p.folioSplits} merged ${p.folioMerges}; allocated twice ${(p.doubleAllocatedPages! * 4096) / 2 ** 20} MiB; stranded ${(p.strandedPages! * 4096) / 2 ** 20} MiB`);
    }
    stats.storm = statsSnapshot(vms);
    const acct = accounting(host, vms);
    for (const a of acct) {
      io.print(`accounting vm ${a.vm} node ${a.node}: guest_memfd private ${mib(a.gmemPrivate!)} shared ${mib(a.gmemShared!)} host-mapped ${mib(a.gmemHostMapped!)} stranded ${mib(a.stranded!)}; VMA view (RSS) ${mib(a.rss!)} of which the VMM's own mappings ${mib(a.vmaRss!)}`);
    }
    const price = (op: number) => cost[op]!;
    const both = attrChangeCosts(price, gfns, rangeEntries);
    // The same changes through the other structure: per change, what the xarray (per gfn) and
    // the maple tree (per range) would have cost; `rangeEntries` is the VM path's one per change.
    const nChanges = Math.max(1, conversions);
    const hist = runner.histograms.summaries();
    const last = timeline[timeline.length - 1]!;
    const peakDouble = Math.max(...timeline.map((p) => p.doubleAllocatedPages!));
    const info = hostInfo(start, Math.min(workers, nVms * vcpus));
    const result = assembleResult({
      scenario: 'conversion-storm', config: { ...f }, seed: f.seed as number, host, vms, runner, info, stats,
      metrics: {
        strategy, conversions, wallConversionsPerSecond: conversions / (stormWall / 1e9), modeledConversionsPerSecond: conversions / (stormModeled / 1e9),
        guestFailures: failures, eagainRetries: eagain, memoryFaultExits,
        pages1gAfterPopulate: timeline[0]!.pages_1g!, pages2mAfterPopulate: timeline[0]!.pages_2m!,
        pages1gAtEnd: last.pages_1g!, pages2mAtEnd: last.pages_2m!, pages4kAtEnd: last.pages_4k!,
        folioSplits: last.folioSplits!, folioMerges: last.folioMerges!,
        doubleAllocatedBytesAtEnd: last.doubleAllocatedPages! * 4096,
        doubleAllocatedBytesPeak: Math.max(peakDouble, vms.reduce((s, vm) => s + vm.gmems.reduce((t, g) => t + g.file.counter(GmemWord.kDoublePeak), 0), 0)) * 4096,
        doubleAllocatedBytesPerConversion: (doublePageConversions * 4096) / Math.max(1, conversions / 2),
        strandedBytesAtEnd: last.strandedPages! * 4096, hostMappedBytesAtEnd: last.hostMappedPages! * 4096,
        attrXarrayNsPerChange: both.xarrayNs / nChanges, attrMapleNsPerChange: both.mapleNs / nChanges,
        wallConvertSharedP50Ns: hist['conversion-storm.convert_shared/wall']?.p50 ?? 0, wallConvertSharedP99Ns: hist['conversion-storm.convert_shared/wall']?.p99 ?? 0,
        wallConvertPrivateP50Ns: hist['conversion-storm.convert_private/wall']?.p50 ?? 0, wallConvertPrivateP99Ns: hist['conversion-storm.convert_private/wall']?.p99 ?? 0,
        modeledConvertSharedP50Ns: hist['conversion-storm.convert_shared/modeled']?.p50 ?? 0, modeledConvertPrivateP50Ns: hist['conversion-storm.convert_private/modeled']?.p50 ?? 0,
      },
      output: [],
    });
    result.iterations = timeline;
    if (violations.length > 0) {
      result.audit.ok = false;
      result.audit.violations.unshift(...violations.slice(0, 50));
    }
    (result as RunResult & { accounting?: Record<string, number>[] }).accounting = acct;
    if (failures > 0) {
      result.audit.ok = false;
      result.audit.violations.push({ vm: null, kind: 'conversion-failed', detail: `${failures} KVM_HC_MAP_GPA_RANGE hypercall(s) answered with an error` });
    }
    return result;
  } finally {
    await runner.close();
  }
}

function mib(pages: number): string {
  return `${((pages * 4096) / 2 ** 20).toFixed(1)} MiB`;
}
