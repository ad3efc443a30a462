/**
 * guest_memfd benchmarks (issue 10), all in the main thread on the compiled sources:
 *
 *   gmem-convert-4k-in-1g        a 4K private -> shared -> private round trip inside a 1G
 *                                hugetlb guest_memfd folio, in place (KVM_SET_MEMORY_ATTRIBUTES2
 *                                on a GUEST_MEMFD_FLAG_MMAP file), end to end: the guest's
 *                                KVM_HC_MAP_GPA_RANGE exit, the VMM's conversion on the vCPU
 *                                thread (ConversionVmm, as conversion-storm's workers run it), the
 *                                re-entry and the guest's store to the page. Round trips / wall s.
 *   gmem-convert-4k-in-1g-split  the same under split-and-double-allocate (6.8's
 *                                KVM_SET_MEMORY_ATTRIBUTES, shared copy in the VMM's anonymous
 *                                mapping, private copy punched out of the file).
 *   gmem-attr-lookup-100k-ranges kvm_mem_is_private() at seeded random gfns of a 16 GiB slot
 *                                whose attributes form 100 000 alternating ranges, against the
 *                                same on 1 range, on both attribute paths ('vm' bitmap, 'gmem'
 *                                file shareability); and the cost of setting those ranges.
 *   gmem-fault-vs-anon           4K demand faults of 1 GiB through a guest_memfd slot (all
 *                                private, SW_PROTECTED VM) against an anonymous slot (default VM).
 *
 * Main thread, not a piscina worker: these are micro-benchmarks of one vCPU and the VMM calls it
 * makes, and a worker would add the Runner's slicing and dispatch to both sides of every
 * comparison. Every measured loop is checked afterwards (exits and conversions counted, faults
 * and leaves counted, the audit run), so a rate of work that did not happen is an error.
 */
import { Host } from '../src/host/host.js';
import { Vm, type ThreadCtx } from '../src/kvm/vm.js';
import { KVM_HC_MAP_GPA_RANGE, KVM_MAP_GPA_RANGE_ENCRYPTED, kAccessHypercall, type AccessSource, type GuestHypercall, type Vcpu } from '../src/kvm/vcpu.js';
import { KvmExit } from '../src/kvm/vcpu-layout.js';
import { KVM_MEM_GUEST_MEMFD, type Memslot } from '../src/kvm/memslot.js';
import { KVM_MEMORY_ATTRIBUTE_PRIVATE, kvmMemIsPrivate } from '../src/kvm/attributes.js';
import { KVM_X86_DEFAULT_VM, KVM_X86_SW_PROTECTED_VM, type GuestMemfd } from '../src/kvm/guest_memfd.js';
import { KVM_EXIT_HYPERCALL_VALID_MASK } from '../src/kvm/caps.js';
import { GUEST_MEMFD_FLAG_INIT_SHARED, GUEST_MEMFD_FLAG_MMAP, GmemWord } from '../src/gmem/gmem-file.js';
import { audit } from '../src/kvm/audit.js';
import { Metrics } from '../src/metrics/counters.js';
import { costVector, loadCostModel } from '../src/metrics/cost-model.js';
import { HistogramSet } from '../src/metrics/histogram.js';
import { ConversionVmm, type ConversionStrategy } from '../src/scenario/conversion-vmm.js';
import { mix32, xorshift32 } from '../src/workload/random.js';
import {
  atLeast, closeWindow, median, openWindow, repeatedFigure, round, type BenchOptions, type BenchResult, type Benchmark, type Figure, type Window,
} from './lib.js';

const GiB = 2 ** 30;
const MiB = 2 ** 20;
/** Guest memory at 4 GiB, 1G aligned (private_mem_conversions_test's BASE_DATA_GPA, as conversion-storm). */
const kBaseGpa = 2 ** 32;
const kBaseGfn = kBaseGpa / 4096;
const kSlot = 10;

/** Blackhole for results the JIT could otherwise drop. */
export let gmemSink = 0;

function threadCtx(host: Host): ThreadCtx {
  return { metrics: new Metrics(costVector(loadCostModel('default'))), hostThread: host.thread() };
}

function seedState(seed: number, salt: number): number {
  const s = mix32(seed ^ salt);
  return s === 0 ? 1 : s;
}

function fail(what: string, detail: string): never {
  throw new Error(`${what}: ${detail}`);
}

function checkAudit(what: string, host: Host, vms: Vm[]): void {
  const a = audit(host, vms);
  // A rate measured on a broken MMU is not a result.
  if (!a.ok) fail(what, `audit failed: ${a.violations[0]!.kind}: ${a.violations[0]!.detail}`);
}

// ---------------------------------------------------------------------------------------------
// 1. A 4K conversion inside a 1G folio, end to end

/**
 * The guest of one round trip, repeated: KVM_HC_MAP_GPA_RANGE(page, 1, shared), a store to the
 * page (now shared), KVM_HC_MAP_GPA_RANGE(page, 1, ENCRYPTED), a store to the page (private
 * again). The page is seeded-random in the 1G region, so every round trip converts somewhere
 * else in the folio. The host's answer is checked: a non-zero ret counts in `failed`.
 */
class RoundTripGuest implements AccessSource {
  write = true;
  readonly iteration = 1;
  readonly hypercall: GuestHypercall = { nr: KVM_HC_MAP_GPA_RANGE, args: [0, 0, 0], ret: 0 };
  failed = 0;
  done = 0;
  private step = 0;
  private gfn = 0;
  private pending = false;
  private target = 0;

  /** `stores`: the guest stores to the page after each conversion (false: the hypercalls only). */
  constructor(readonly baseGfn: number, readonly pages: number, private rng: number, readonly stores = true) {}

  /** Run `n` more round trips. */
  more(n: number): void {
    this.target = this.done + n;
  }

  next(): number {
    if (this.pending) {
      this.pending = false;
      if (this.hypercall.ret !== 0) this.failed++;
    }
    switch (this.step) {
      case 0:
        if (this.done >= this.target) return -1;
        this.rng = xorshift32(this.rng);
        this.gfn = this.baseGfn + (this.rng % this.pages);
        this.step = 1;
        return this.mapGpaRange(false);
      case 1:
        this.step = 2;
        if (this.stores) return this.gfn;
        return this.next();
      case 2:
        this.step = 3;
        return this.mapGpaRange(true);
      default:
        this.step = 0;
        this.done++;
        if (this.stores) return this.gfn;
        return this.next();
    }
  }

  private mapGpaRange(priv: boolean): number {
    const hc = this.hypercall;
    hc.args[0] = this.gfn * 4096;
    hc.args[1] = 1;
    hc.args[2] = priv ? KVM_MAP_GPA_RANGE_ENCRYPTED : 0;
    hc.ret = 0;
    this.pending = true;
    return kAccessHypercall;
  }
}

/** The VMM's KVM_RUN loop on the vCPU thread: run, handle each conversion exit, run again. */
function runToEnd(vcpu: Vcpu, src: AccessSource, vmm: ConversionVmm): void {
  for (;;) {
    vcpu.run(src, 1 << 30, null);
    const e = vcpu.pendingExit;
    if (e === KvmExit.KVM_EXIT_HYPERCALL || e === KvmExit.KVM_EXIT_MEMORY_FAULT) {
      if (!vmm.onExit(vcpu)) fail('conversion', `exit ${e} not handled`);
      continue;
    }
    if (e !== 0) fail('conversion', `unexpected exit ${e}`);
    return;
  }
}

interface ConvertSetup {
  host: Host;
  vm: Vm;
  vcpu: Vcpu;
  fd: GuestMemfd;
  vmm: ConversionVmm;
  hists: HistogramSet;
  guest: RoundTripGuest;
}

/** One VM as conversion-storm builds it (1 vCPU, 1 GiB, one 1G hugetlb guest_memfd folio), populated. */
function convertSetup(strategy: ConversionStrategy, seed: number, stores = true): ConvertSetup {
  const split = strategy === 'split-and-double-allocate';
  const pages = GiB / 4096;
  // The 1G pool page, and for split-and-double-allocate the shared copies (a few pages) from the buddy.
  const host = Host.create({ memory: GiB + 256 * MiB, hugepages1g: 1, stamps: true });
  const ctx = threadCtx(host);
  const vm = Vm.create(host, 0, ctx, { maxVcpus: 1, type: KVM_X86_SW_PROTECTED_VM, attributes: split ? 'vm' : 'gmem' });
  vm.enableCap('KVM_CAP_EXIT_HYPERCALL', KVM_EXIT_HYPERCALL_VALID_MASK);
  const fd = vm.createGuestMemfd({ size: GiB, flags: split ? 0 : GUEST_MEMFD_FLAG_MMAP, backing: 'hugetlb-1g' });
  if (!split) fd.mmap({ shared: true });
  const hva = split ? vm.mmap({ size: GiB, backing: 'anonymous' }) : 0x7f0000000000;
  vm.setUserMemoryRegion2({ slot: kSlot, flags: KVM_MEM_GUEST_MEMFD, guestPhysAddr: kBaseGpa, memorySize: GiB, userspaceAddr: hva, guestMemfd: fd, guestMemfdOffset: 0 });
  if (split) vm.setMemoryAttributes({ address: kBaseGpa, size: GiB, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE });
  const vcpu = vm.createVcpu();
  const hists = new HistogramSet();
  // No device model stores (host-touches 0): the round trip is exit, conversion, re-entry, guest store.
  const vmm = new ConversionVmm({ kind: 'conversion-vmm', strategy, hostTouches: 0, histogram: 'gmem-convert' }, hists);
  // Populate: one private store faults the whole 1G folio in, mapped by a 1G leaf.
  vcpu.run({ iteration: 1, write: true, next: (() => { let d = false; return () => (d ? -1 : ((d = true), kBaseGfn)); })() }, 2, null);
  if (vm.getStats().pages_1g !== 1) fail('gmem-convert setup', `populate left pages_1g = ${vm.getStats().pages_1g}, expected 1`);
  const guest = new RoundTripGuest(kBaseGfn, pages, seedState(seed, 0x6d656d31), stores);
  return { host, vm, vcpu, fd, vmm, hists, guest };
}

interface ConvertRep { roundTrips: number; wallNs: number; rate: number; modeledNsPerRoundTrip: number; window: Window }

function convertRep(s: ConvertSetup, n: number): ConvertRep {
  const { vcpu, vmm, guest } = s;
  const f = s.fd.file;
  const before = {
    toShared: vmm.stats.toShared, toPrivate: vmm.stats.toPrivate, done: guest.done, pf: vcpu.getStats().pf_taken,
    exits: vcpu.getStats().hypercalls, modeled: vcpu.modeledNs(), splits: f.counter(GmemWord.kFolioSplits), merges: f.counter(GmemWord.kFolioMerges),
  };
  guest.more(n);
  const w = openWindow();
  const t0 = performance.now();
  runToEnd(vcpu, guest, vmm);
  const wallNs = (performance.now() - t0) * 1e6;
  const window = closeWindow(w, 1);
  const st = vcpu.getStats();
  // The work happened: n round trips, 2n KVM_HC_MAP_GPA_RANGE exits handled (n each way), every
  // answer 0, and 2n faults (the shared store at 4K, the private store after it).
  const what = `gmem-convert (${s.vmm.spec.strategy})`;
  if (guest.done - before.done !== n) fail(what, `${guest.done - before.done} round trips, expected ${n}`);
  if (vmm.stats.toShared - before.toShared !== n || vmm.stats.toPrivate - before.toPrivate !== n) {
    fail(what, `VMM converted ${vmm.stats.toShared - before.toShared} to shared and ${vmm.stats.toPrivate - before.toPrivate} to private, expected ${n} each`);
  }
  if (st.hypercalls - before.exits !== 2 * n) fail(what, `${st.hypercalls - before.exits} hypercalls, expected ${2 * n}`);
  if (guest.failed !== 0) fail(what, `${guest.failed} KVM_HC_MAP_GPA_RANGE answered with an error`);
  // One thread, nothing host-mapped: no conversion can race a fault, none can find a reference.
  if (vmm.stats.memoryFaultExits !== 0 || vmm.stats.eagain !== 0) fail(what, `${vmm.stats.memoryFaultExits} KVM_EXIT_MEMORY_FAULT exits and ${vmm.stats.eagain} EAGAIN retries, expected none`);
  const faults = s.guest.stores ? 2 * n : 0;
  if (st.pf_taken - before.pf !== faults) fail(what, `${st.pf_taken - before.pf} faults, expected ${faults} (the shared and the private store of each round trip, if the guest makes them)`);
  if (s.vmm.spec.strategy === 'in-place') {
    // In place, every share splits the 1G folio and every unshare merges it back to 1G (4K -> 2M -> 1G).
    const splits = f.counter(GmemWord.kFolioSplits) - before.splits;
    const merges = f.counter(GmemWord.kFolioMerges) - before.merges;
    if (splits < n || merges < n) fail(what, `${splits} folio splits and ${merges} merges for ${n} round trips`);
    if (s.guest.stores && s.vm.getStats().pages_1g !== 1) fail(what, `pages_1g = ${s.vm.getStats().pages_1g} after the round trips, expected the 1G leaf back`);
  }
  return { roundTrips: n, wallNs, rate: n / (wallNs / 1e9), modeledNsPerRoundTrip: (vcpu.modeledNs() - before.modeled) / n, window };
}

async function runConvert(o: BenchOptions, name: string, description: string, strategy: ConversionStrategy, withTarget: boolean, stores = true): Promise<BenchResult> {
  const reps = o.quick ? 3 : 7;
  const n = o.quick ? 2000 : 20000;
  const warmReps = o.quick ? 1 : 2;
  const w0 = openWindow();
  const t0 = performance.now();
  const s = convertSetup(strategy, o.seed, stores);
  const setupMs = performance.now() - t0;
  const rates: number[] = [];
  const modeled: number[] = [];
  const windows: Window[] = [];
  const samples: Record<string, unknown>[] = [];
  const warm: number[] = [];
  for (let r = 0; r < warmReps; r++) warm.push(convertRep(s, n).rate);
  o.log(`  setup ${setupMs.toFixed(0)} ms; warm-up ${warm.map((x) => `${(x / 1e3).toFixed(1)} k/s`).join(', ')}`);
  for (let r = 1; r <= reps; r++) {
    const p = convertRep(s, n);
    rates.push(p.rate);
    modeled.push(p.modeledNsPerRoundTrip);
    windows.push(p.window);
    samples.push({ rep: r, roundTrips: n, wallNs: Math.round(p.wallNs), roundTripsPerSec: round(p.rate, 0), modeledNsPerRoundTrip: round(p.modeledNsPerRoundTrip, 1), window: p.window });
    o.log(`  run ${r}/${reps}: ${(p.rate / 1e3).toFixed(1)} k round trips/s (${(p.wallNs / 1e6).toFixed(0)} ms for ${n}; modeled ${(p.modeledNsPerRoundTrip / 1e3).toFixed(2)} us each)` +
      `${p.window.noisy ? `  [noisy: ${p.window.notes.join('; ')}]` : ''}`);
  }
  const ta = performance.now();
  s.vm.ctx.hostThread.drain();
  checkAudit(name, s.host, [s.vm]);
  const auditMs = performance.now() - ta;
  const f = s.fd.file;
  const hist = s.hists;
  const sum = (k: string) => {
    const h = hist.get(k);
    h.flush();
    return { wallP50Ns: h.wall.getValueAtPercentile(50), wallP99Ns: h.wall.getValueAtPercentile(99), modeledP50Ns: h.modeled.getValueAtPercentile(50), count: h.wall.totalCount };
  };
  const details = {
    setupMs: round(setupMs, 1), auditMs: round(auditMs, 1), auditOk: true, warmupRoundTripsPerSec: warm.map((x) => round(x, 0)),
    vmmStats: { ...s.vmm.stats }, file: { folioSplits: f.counter(GmemWord.kFolioSplits), folioMerges: f.counter(GmemWord.kFolioMerges), stranded: f.counter(GmemWord.kStranded), allocated: f.counter(GmemWord.kAllocated) },
    vmStats: { pages_4k: s.vm.getStats().pages_4k, pages_2m: s.vm.getStats().pages_2m, pages_1g: s.vm.getStats().pages_1g },
    convertShared: sum('gmem-convert.convert_shared'), convertPrivate: sum('gmem-convert.convert_private'),
  };
  hist.destroy();
  s.vm.destroy();
  const unit = 'round trips/s';
  const fig = repeatedFigure(name, rates, unit, 'higher', windows, withTarget && !o.quick ? atLeast(1e5, unit) : undefined);
  fig.value = round(fig.value, 0);
  if (o.quick) fig.notes.push(`quick: ${n} round trips x ${reps}, no target`);
  // Modeled time is deterministic (a function of the seed). In place, every round trip ends where
  // it began (one 1G folio, one 1G leaf), so every repetition must agree: a difference is a bug,
  // not noise. Under split-and-double-allocate each round trip leaves its page behind (a 4K
  // private page, re-allocated out of the punched 1G page and mapped at 4K), so the state, and
  // the modeled cost with it, drifts from one repetition to the next (~0.5% per 20000 here).
  const mod = round(median(modeled), 1);
  const modFig: Figure = { name: `${name}.modeled-ns`, value: mod, unit: 'ns/round trip', better: 'lower', noisy: false, notes: [] };
  if (strategy === 'in-place' && Math.max(...modeled) - Math.min(...modeled) > 1e-6 * mod) fail(name, `modeled time differs between repetitions: ${modeled.map((x) => round(x, 1)).join(', ')}`);
  return {
    name, description, seed: o.seed,
    config: { strategy, backing: 'hugetlb-1g', bytes: GiB, attributes: strategy === 'in-place' ? 'gmem' : 'vm', hostTouches: 0, guestStores: stores, roundTripsPerRep: n, repetitions: reps, warmupReps: warmReps, thread: 'main' },
    figures: [fig, modFig], window: closeWindow(w0, 1), samples, details, noisy: fig.noisy, notes: fig.notes,
  };
}

export const gmemConvert4kIn1g: Benchmark = {
  name: 'gmem-convert-4k-in-1g',
  description: '4K private -> shared -> private round trips inside a 1G hugetlb guest_memfd folio, in place (KVM_SET_MEMORY_ATTRIBUTES2), end to end on the vCPU thread: round trips/s (median)',
  run(o) {
    return runConvert(o, this.name, this.description, 'in-place', false);
  },
};

export const gmemConvert4kIn1gSplit: Benchmark = {
  name: 'gmem-convert-4k-in-1g-split',
  description: 'the same round trips under split-and-double-allocate (KVM_SET_MEMORY_ATTRIBUTES, shared copy in anonymous memory, private copy punched out): round trips/s (median)',
  run(o) {
    return runConvert(o, this.name, this.description, 'split-and-double-allocate', false);
  },
};

// ---------------------------------------------------------------------------------------------
// 2. kvm_mem_is_private() with 100 000 attribute ranges

const kLookupSlotBytes = 16 * GiB;
const kRanges = 100_000;
const kLookupGfns = 1 << 20;

interface AttrVm {
  vm: Vm;
  slot: Memslot;
  /** Wall and modeled ns of the attribute calls that built the ranges. */
  setNs: number;
  setModeledNs: number;
  calls: number;
}

/**
 * Seeded cut points of [0, pages) into `ranges` runs: ranges - 1 distinct interior points,
 * sorted, with 0 in front (run i is [cuts[i], cuts[i+1] or pages)).
 */
function cutPoints(pages: number, ranges: number, seed: number): Int32Array {
  const mark = new Uint8Array(pages);
  let rng = seedState(seed, 0x72616e67);
  let left = ranges - 1;
  while (left > 0) {
    rng = xorshift32(rng);
    const p = 1 + (rng % (pages - 1));
    if (mark[p] === 0) {
      mark[p] = 1;
      left--;
    }
  }
  const cuts = new Int32Array(ranges);
  let k = 1;
  for (let p = 1; p < pages; p++) if (mark[p] !== 0) cuts[k++] = p;
  return cuts;
}

/**
 * A SW_PROTECTED VM with one 16 GiB guest_memfd slot (4K backing, nothing allocated, nothing
 * mapped) whose attributes are `ranges` alternating runs, run 0 shared: the odd runs are set
 * private one call each (KVM_SET_MEMORY_ATTRIBUTES on the VM, or KVM_SET_MEMORY_ATTRIBUTES2 on
 * the file). With ranges = 1, one call makes the whole slot private.
 */
function attrVm(host: Host, id: number, path: 'vm' | 'gmem', cuts: Int32Array | null, pages: number): AttrVm {
  const vm = Vm.create(host, id, threadCtx(host), { maxVcpus: 1, type: KVM_X86_SW_PROTECTED_VM, attributes: path });
  // The gmem path's file starts shared (INIT_SHARED) like the VM path's attributes (all 0).
  const fd = vm.createGuestMemfd({ size: pages * 4096, flags: path === 'gmem' ? GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED : 0, backing: '4k' });
  vm.setUserMemoryRegion2({ slot: kSlot, flags: KVM_MEM_GUEST_MEMFD, guestPhysAddr: kBaseGpa, memorySize: pages * 4096, userspaceAddr: 0x7f0000000000, guestMemfd: fd, guestMemfdOffset: 0 });
  const slot = vm.lookupMemslotNewest(kBaseGfn)!;
  const ht = vm.ctx.hostThread;
  const set = (first: number, end: number) => {
    if (path === 'vm') vm.setMemoryAttributes({ address: (kBaseGfn + first) * 4096, size: (end - first) * 4096, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE });
    else if (fd.setMemoryAttributes2(ht, { offset: first * 4096, size: (end - first) * 4096, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE }) !== -1) fail('gmem-attr', 'KVM_SET_MEMORY_ATTRIBUTES2 refused a range (EAGAIN) with nothing mapped');
  };
  const m = vm.ctx.metrics;
  const m0 = m.t;
  const t0 = performance.now();
  let calls = 0;
  if (cuts === null) {
    set(0, pages);
    calls = 1;
  } else {
    for (let i = 1; i < cuts.length; i += 2) {
      set(cuts[i]!, i + 1 < cuts.length ? cuts[i + 1]! : pages);
      calls++;
    }
  }
  const setNs = (performance.now() - t0) * 1e6;
  return { vm, slot, setNs, setModeledNs: m.t - m0, calls };
}

/** Ranges (runs of equal privateness) over the slot, read back through kvmMemIsPrivate(). */
function countRanges(a: AttrVm, pages: number): { ranges: number; privatePages: number } {
  let ranges = 0;
  let priv = 0;
  let last = -1;
  for (let p = 0; p < pages; p++) {
    const x = kvmMemIsPrivate(a.vm, a.slot, kBaseGfn + p) ? 1 : 0;
    priv += x;
    if (x !== last) ranges++;
    last = x;
  }
  return { ranges, privatePages: priv };
}

/** Private lookups expected at `gfns` from the cut points alone (binary search: independent of the sources). */
function expectedPrivate(gfns: Int32Array, cuts: Int32Array | null): number {
  if (cuts === null) return gfns.length;
  let n = 0;
  for (let i = 0; i < gfns.length; i++) {
    const p = gfns[i]! - kBaseGfn;
    let lo = 0;
    let hi = cuts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (cuts[mid]! <= p) lo = mid;
      else hi = mid - 1;
    }
    n += lo & 1;
  }
  return n;
}

/** `passes` passes of kvm_mem_is_private() over `gfns`; returns the private count of one pass and the wall ns. */
function lookupLoop(a: AttrVm, gfns: Int32Array, passes: number): { priv: number; ns: number } {
  const vm = a.vm;
  const slot = a.slot;
  let priv = 0;
  const t0 = performance.now();
  for (let k = 0; k < passes; k++) {
    // Branchless: with `? 1 : 0` the loop's own branch mispredicts on the 100k-range VM's random
    // answers (and never on the 1-range VM's), which took its rate to 0.35-0.6x of the other
    // here: a cost of this loop, not of the lookup.
    for (let i = 0; i < gfns.length; i++) priv += +kvmMemIsPrivate(vm, slot, gfns[i]!);
  }
  const ns = (performance.now() - t0) * 1e6;
  gmemSink ^= priv;
  return { priv: priv / passes, ns };
}

export const gmemAttrLookup100k: Benchmark = {
  name: 'gmem-attr-lookup-100k-ranges',
  description: 'kvm_mem_is_private() at seeded random gfns of a 16 GiB slot with 100 000 attribute ranges vs 1 range, vm bitmap and gmem shareability paths: lookups/s and the ratio (paired, alternating); ns per range set',
  async run(o: BenchOptions): Promise<BenchResult> {
    const pages = kLookupSlotBytes / 4096;
    const reps = o.quick ? 3 : 7;
    const passes = o.quick ? 4 : 16;
    const builds = o.quick ? 1 : 3;
    const w0 = openWindow();
    const cuts = cutPoints(pages, kRanges, o.seed);
    const gfns = new Int32Array(kLookupGfns);
    let rng = seedState(o.seed, 0x6c6f6f6b);
    for (let i = 0; i < gfns.length; i++) {
      rng = xorshift32(rng);
      gfns[i] = kBaseGfn + (rng % pages);
    }
    const figures: Figure[] = [];
    const samples: Record<string, unknown>[] = [];
    const details: Record<string, unknown> = { slotBytes: kLookupSlotBytes, ranges: kRanges, lookupsPerPass: kLookupGfns };
    let noisy = false;
    for (const path of ['vm', 'gmem'] as const) {
      // Building the 100k ranges, `builds` times on fresh VMs: wall and modeled ns per call.
      const setNs: number[] = [];
      const setWindows: Window[] = [];
      let setModeled = 0;
      let many: AttrVm | null = null;
      let host: Host | null = null;
      for (let b = 0; b < builds; b++) {
        if (many !== null) many.vm.destroy();
        host = Host.create({ memory: 64 * MiB });
        const w = openWindow();
        many = attrVm(host, 0, path, cuts, pages);
        setWindows.push(closeWindow(w, 1));
        setNs.push(many.setNs / many.calls);
        setModeled = many.setModeledNs / many.calls;
      }
      const one = attrVm(host!, 1, path, null, pages);
      // The ranges are there: read back over the whole slot, and the lookups' answers match
      // the cut points.
      const rm = countRanges(many!, pages);
      const r1 = countRanges(one, pages);
      if (rm.ranges !== kRanges) fail(`gmem-attr (${path})`, `${rm.ranges} ranges read back, expected ${kRanges}`);
      if (r1.ranges !== 1 || r1.privatePages !== pages) fail(`gmem-attr (${path})`, `1-range VM reads back ${r1.ranges} ranges, ${r1.privatePages} private pages`);
      const wantMany = expectedPrivate(gfns, cuts);
      // Warm-up, then paired repetitions alternating which VM goes first.
      lookupLoop(many!, gfns, 2);
      lookupLoop(one, gfns, 2);
      const rMany: number[] = [];
      const rOne: number[] = [];
      const ratios: number[] = [];
      const wins: Window[] = [];
      for (let r = 1; r <= reps; r++) {
        const order = r % 2 === 1 ? [many!, one] : [one, many!];
        const res = new Map<AttrVm, { rate: number; window: Window }>();
        for (const a of order) {
          const w = openWindow();
          const x = lookupLoop(a, gfns, passes);
          const window = closeWindow(w, 1);
          const want = a === one ? gfns.length : wantMany;
          if (x.priv !== want) fail(`gmem-attr (${path})`, `${x.priv} private lookups per pass, expected ${want}`);
          res.set(a, { rate: (passes * gfns.length) / (x.ns / 1e9), window });
          wins.push(window);
        }
        const m = res.get(many!)!;
        const s = res.get(one)!;
        rMany.push(m.rate);
        rOne.push(s.rate);
        ratios.push(m.rate / s.rate);
        samples.push({ path, rep: r, lookupsPerSec100k: round(m.rate, 0), lookupsPerSec1: round(s.rate, 0), ratio: round(m.rate / s.rate, 3), windows: [m.window, s.window] });
        o.log(`  ${path} pair ${r}/${reps}: 100k ranges ${(m.rate / 1e6).toFixed(1)} M lookups/s, 1 range ${(s.rate / 1e6).toFixed(1)} M/s, ratio ${(m.rate / s.rate).toFixed(3)}` +
          `${m.window.noisy || s.window.noisy ? `  [noisy: ${[...m.window.notes, ...s.window.notes].join('; ')}]` : ''}`);
      }
      const base = `gmem-attr-lookup-100k-ranges-${path}`;
      const fRate = repeatedFigure(base, rMany, 'lookups/s', 'higher', wins);
      const fRatio = repeatedFigure(`${base}-ratio`, ratios, 'x', 'higher', wins, o.quick ? undefined : atLeast(0.8, 'x'));
      fRatio.value = round(fRatio.value, 3);
      const f1 = repeatedFigure(`${base}-1range`, rOne, 'lookups/s', 'higher', wins);
      const fSet = repeatedFigure(`gmem-attr-set-${path}-per-range`, setNs, 'ns', 'lower', setWindows);
      fSet.value = round(fSet.value, 0);
      if (o.quick) fRatio.notes.push(`quick: ${passes} passes x ${reps}, no target`);
      figures.push(fRatio, fRate, f1, fSet);
      noisy ||= fRatio.noisy || fRate.noisy || fSet.noisy;
      o.log(`  ${path}: set ${kRanges / 2} calls -> ${rm.ranges} ranges, ${(median(setNs) / 1e3).toFixed(2)} us per call (modeled ${(setModeled / 1e3).toFixed(2)} us); ${rm.privatePages} of ${pages} pages private`);
      details[path] = {
        rangesReadBack: rm.ranges, privatePages: rm.privatePages, calls: many!.calls, setNsPerCall: setNs.map((x) => round(x, 0)),
        setModeledNsPerCall: round(setModeled, 1), expectedPrivatePerPass: wantMany,
      };
      many!.vm.destroy();
      one.vm.destroy();
    }
    return {
      name: this.name, description: this.description, seed: o.seed,
      config: { slotBytes: kLookupSlotBytes, ranges: kRanges, lookupsPerPass: kLookupGfns, passesPerRep: passes, repetitions: reps, builds, backing: '4k', thread: 'main' },
      figures, window: closeWindow(w0, 1), samples, details, noisy, notes: [],
    };
  },
};

// ---------------------------------------------------------------------------------------------
// 3. Demand faults through guest_memfd vs anonymous memory

/** Sequential stores to [g, end) (memstress's sequential stream). */
class StoreRange implements AccessSource {
  write = true;
  iteration = 1;
  constructor(public g: number, public end: number) {}
  next(): number {
    return this.g < this.end ? this.g++ : -1;
  }
}

interface FaultRep { faults: number; wallNs: number; rate: number; window: Window }

/**
 * One fresh VM demand-paging `bytes` at 4K with sequential stores: 'anon' is an
 * anonymous slot on a default VM; 'gmem' a guest_memfd slot (4K folios) on a SW_PROTECTED VM,
 * every gfn private (KVM_SET_MEMORY_ATTRIBUTES), so every fault goes through kvm_gmem_get_pfn().
 */
export function faultRep(host: Host, id: number, kind: 'anon' | 'gmem', bytes: number, check: boolean): FaultRep {
  const pages = bytes / 4096;
  const ctx = threadCtx(host);
  const gmem = kind === 'gmem';
  const vm = Vm.create(host, id, ctx, { maxVcpus: 1, type: gmem ? KVM_X86_SW_PROTECTED_VM : KVM_X86_DEFAULT_VM });
  const hva = vm.mmap({ size: bytes, backing: 'anonymous' });
  if (gmem) {
    const fd = vm.createGuestMemfd({ size: bytes, backing: '4k' });
    vm.setUserMemoryRegion2({ slot: kSlot, flags: KVM_MEM_GUEST_MEMFD, guestPhysAddr: kBaseGpa, memorySize: bytes, userspaceAddr: hva, guestMemfd: fd, guestMemfdOffset: 0 });
    vm.setMemoryAttributes({ address: kBaseGpa, size: bytes, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE });
  } else {
    vm.setUserMemoryRegion2({ slot: kSlot, flags: 0, guestPhysAddr: kBaseGpa, memorySize: bytes, userspaceAddr: hva });
  }
  const vcpu = vm.createVcpu();
  const src = new StoreRange(kBaseGfn, kBaseGfn + pages);
  const pf0 = vcpu.getStats().pf_taken;
  const w = openWindow();
  const t0 = performance.now();
  const n = vcpu.run(src, pages + 1, null);
  const wallNs = (performance.now() - t0) * 1e6;
  const window = closeWindow(w, 1);
  const faults = vcpu.getStats().pf_taken - pf0;
  const what = `gmem-fault-vs-anon (${kind})`;
  if (n !== pages || vcpu.pendingExit !== 0) fail(what, `${n} accesses retired (exit ${vcpu.pendingExit}), expected ${pages}`);
  if (faults !== pages) fail(what, `${faults} faults, expected ${pages} (one per 4K page)`);
  const st = vm.getStats();
  if (st.pages_4k !== pages) fail(what, `pages_4k = ${st.pages_4k}, expected ${pages}`);
  if (gmem) {
    const f = vm.gmems[0]!.file;
    if (f.counter(GmemWord.kAllocated) !== pages || f.counter(GmemWord.kPrivatePages) !== pages) {
      fail(what, `guest_memfd holds ${f.counter(GmemWord.kAllocated)} pages (${f.counter(GmemWord.kPrivatePages)} private), expected ${pages}`);
    }
    const vma = vm.vmas[0]!;
    let shared = 0;
    for (let p = 0; p < vma.npages; p++) if (vma.lookup(p) >= 0) shared++;
    if (shared !== 0) fail(what, `private faults populated ${shared} pages of the shared (anonymous) mapping`);
  }
  ctx.hostThread.drain();
  if (check) checkAudit(what, host, [vm]);
  // Its memory goes back to the host (the next VM reuses it): one host for every repetition, so
  // no 1 GiB host is left to the garbage collector to free in some later run's timed loop.
  vm.destroy();
  if (host.ownedPages(vm.owner) !== 0) fail(what, `${host.ownedPages(vm.owner)} pages still owned by the VM after destroy`);
  return { faults, wallNs, rate: faults / (wallNs / 1e9), window };
}

export const gmemFaultVsAnon: Benchmark = {
  name: 'gmem-fault-vs-anon',
  description: '4K demand faults of 1 VM x 1 vCPU x 1 GiB: guest_memfd (4k, SW_PROTECTED, all private) over anonymous (default VM), main thread, alternating pairs: median ratio',
  async run(o: BenchOptions): Promise<BenchResult> {
    const bytes = o.quick ? 128 * MiB : GiB;
    const reps = o.quick ? 3 : 7;
    const warm = o.quick ? 1 : 2;
    const w0 = openWindow();
    const host = Host.create({ memory: bytes + 256 * MiB });
    let id = 0;
    const rep = (kind: 'anon' | 'gmem', check: boolean) => faultRep(host, id++, kind, bytes, check);
    const warmLog: string[] = [];
    for (let k = 0; k < warm; k++) {
      const a = rep('anon', k === 0);
      const g = rep('gmem', k === 0);
      warmLog.push(`anon ${(a.rate / 1e6).toFixed(2)} M/s, gmem ${(g.rate / 1e6).toFixed(2)} M/s`);
    }
    o.log(`  warm-up (audited): ${warmLog.join('; ')}`);
    const rA: number[] = [];
    const rG: number[] = [];
    const ratios: number[] = [];
    const wA: Window[] = [];
    const wG: Window[] = [];
    const samples: Record<string, unknown>[] = [];
    for (let r = 1; r <= reps; r++) {
      const first = r % 2 === 1;
      const a1 = first ? rep('anon', false) : null;
      const g = rep('gmem', r === reps);
      const a = a1 ?? rep('anon', r === reps);
      rA.push(a.rate);
      rG.push(g.rate);
      ratios.push(g.rate / a.rate);
      wA.push(a.window);
      wG.push(g.window);
      samples.push({ rep: r, first: first ? 'anon' : 'gmem', anon: { faultsPerSec: round(a.rate, 0), wallNs: Math.round(a.wallNs), window: a.window }, gmem: { faultsPerSec: round(g.rate, 0), wallNs: Math.round(g.wallNs), window: g.window }, ratio: round(g.rate / a.rate, 3) });
      o.log(`  pair ${r}/${reps}: anon ${(a.rate / 1e6).toFixed(3)} M faults/s, gmem ${(g.rate / 1e6).toFixed(3)} M/s, ratio ${(g.rate / a.rate).toFixed(3)}` +
        `${a.window.noisy || g.window.noisy ? `  [noisy: ${[...a.window.notes, ...g.window.notes].join('; ')}]` : ''}`);
    }
    const ratio = repeatedFigure('gmem-fault-vs-anon', ratios, 'x', 'higher', [...wA, ...wG], o.quick ? undefined : atLeast(0.8, 'x'));
    ratio.value = round(ratio.value, 3);
    if (o.quick) ratio.notes.push('quick: 128 MiB, no target');
    const fG = repeatedFigure('gmem-fault-vs-anon.gmem', rG, 'faults/s', 'higher', wG);
    const fA = repeatedFigure('gmem-fault-vs-anon.anon', rA, 'faults/s', 'higher', wA);
    return {
      name: this.name, description: this.description, seed: o.seed,
      config: { vms: 1, vcpus: 1, bytes, gmemBacking: '4k', attributes: 'vm', stream: 'sequential stores', repetitions: reps, warmupPairs: warm, thread: 'main', histograms: false },
      figures: [ratio, fG, fA], window: closeWindow(w0, 1), samples,
      details: { medianOfPairRatios: round(ratio.value, 3), ratioOfMedians: round(fG.value / fA.value, 3), auditOk: true },
      noisy: ratio.noisy || fG.noisy || fA.noisy, notes: [...ratio.notes],
    };
  },
};


export const gmemConvert4kIn1gNoStore: Benchmark = {
  name: 'gmem-convert-4k-in-1g-no-store',
  description: 'the in-place round trips without the guest\'s stores: hypercall exit -> KVM_SET_MEMORY_ATTRIBUTES2 on the vCPU thread -> the vCPU resumes, both ways (no fault rebuilds a mapping): round trips/s (median)',
  run(o) {
    return runConvert(o, this.name, this.description, 'in-place', true, false);
  },
};

export const gmemBenchmarks: Benchmark[] = [gmemConvert4kIn1g, gmemConvert4kIn1gNoStore, gmemConvert4kIn1gSplit, gmemAttrLookup100k, gmemFaultVsAnon];
