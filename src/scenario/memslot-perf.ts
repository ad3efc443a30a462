/**
 * Scenario `memslot-perf`, after KVM's memslot_perf_test.c: one vCPU, a test area at MEM_GPA
 * split over up to KVM_CAP_NR_MEMSLOTS memslots, and six tests, each a host loop run for a test
 * length while the guest does its part:
 *
 *   0 map                 the guest writes (maps) one half of 32 MiB while the host MADV_DONTNEEDs
 *                         the other half; they swap halves at each sync
 *   1 unmap               the guest writes one page per half and syncs; the host unmaps each
 *                         half of 128 MiB page by page
 *   2 unmap chunked       the same in 2 MiB chunks
 *   3 move active area    the guest writes 192 KiB, half of it in the last slot, which the host
 *                         moves away (its half then exits to MMIO) and back
 *   4 move inactive area  the same with the area below the moved slot
 *   5 RW                  the guest writes every page of 512 MiB, the host checks them, and back
 *
 * The guest (workload/memslot-perf-guest.ts) and the host (the generators below, the VMM thread)
 * synchronize through the test's sync area as upstream does. On one worker — memslot_perf_test
 * has one vCPU — the Runner runs the host at fixed points between the vCPU's slices, so a run is
 * reproducible: the host waits for the guest by returning from its step, and yields between the
 * two moves of a move iteration so the guest runs with the slot moved away. With
 * --concurrent-vmm the host runs alongside the vCPU instead (wall time overlaps as upstream's).
 *
 * Two clocks. Upstream's test length (-l) and every printed time are wall time (CLOCK_MONOTONIC).
 * The modeled twin of each line ("[modeled] ...") is a timeline built from both sides' modeled
 * work: between two syncs host and guest run in parallel, so an interval lasts the longer of the
 * two (the guest's spin while it waits is not work), and the host's work after the last sync
 * ends it. --modeled-length ends each run on that timeline instead of the wall clock, so the
 * iteration count, the counters and every modeled figure repeat exactly for a given run.
 */
import { costModelFlag } from './common-flags.js';
import { Host } from '../host/host.js';
import { KvmError } from '../host/errno.js';
import { hostFault, type Vma } from '../host/mm.js';
import { Vm, type ThreadCtx } from '../kvm/vm.js';
import { audit, type AuditViolation } from '../kvm/audit.js';
import { KVM_CAP_NR_MEMSLOTS, KVM_X86_QUIRK_SLOT_ZAP_ALL, kvmCheckExtension } from '../kvm/caps.js';
import { count, countN, Metrics } from '../metrics/counters.js';
import { Op } from '../metrics/ops.js';
import { SyncArea, GuestAssert, type MemslotPerfGuestCode, type MemslotPerfGuestSpec } from '../workload/memslot-perf-guest.js';
import { Runner } from './runner.js';
import { UsageError, givenFlags } from './flags.js';
import { fmtTimespec } from './memstress-vm.js';
import { VmmTimer } from './vmm-timer.js';
import { setMemoryRegionTimed } from './memslot-ioctl.js';
import { assembleResult, statsSnapshot } from './assemble.js';
import { hostInfo, snapshot } from './host-info.js';
import { checkRunFits } from './host-sizing.js';
import { memstressLayout, type MemstressConfig } from './memstress-vm.js';
import type { ScenarioDef, ScenarioIo } from './scenario.js';
import type { RunResult, StatsSnapshot } from './result.js';

const SZ_64K = 64 * 1024;
const SZ_2M = 2 * 2 ** 20;
const kPage = 4096;
export const MEM_EXTRA_SIZE = SZ_64K;
export const MEM_SIZE = 512 * 2 ** 20 + MEM_EXTRA_SIZE;
export const MEM_GPA = 256 * 2 ** 20;
const MEM_SYNC_GPA = MEM_GPA;
const MEM_TEST_GPA = MEM_GPA + MEM_EXTRA_SIZE;
const MEM_TEST_SIZE = MEM_SIZE - MEM_EXTRA_SIZE;
const MEM_SIZE_MAP = 32 * 2 ** 20 + MEM_EXTRA_SIZE;
const MEM_TEST_MAP_SIZE = MEM_SIZE_MAP - MEM_EXTRA_SIZE;
const MEM_TEST_UNMAP_SIZE = 128 * 2 ** 20;
const MEM_TEST_UNMAP_CHUNK_SIZE = SZ_2M;
const MEM_TEST_MOVE_SIZE = 3 * SZ_64K;
const MEM_TEST_MOVE_GPA_DEST = MEM_GPA + MEM_SIZE;

/** MEM_TEST_VAL_1 / MEM_TEST_VAL_2 as stamps (the frame-stamp values the guest stores). */
const enum Val {
  kZero = 0,
  kVal1 = 1,
  kVal2 = 2,
}
const kValU64 = ['0', String(0x1122334455667788n), String(0x99aabbccddeeff00n)];

/** __vm_create_with_one_vcpu()'s memslot 0 (guest code, page tables): 512 pages at gpa 0, never accessed here. */
const kSlot0Pages = 512;

/** What the host loop yields: wait for the guest, or let it run a slice (a point of interleaving). */
const enum HostYield {
  kWaitGuest = 0,
  kPreempt = 1,
}
type HostSteps = Generator<HostYield, void, void>;

interface TestDef {
  /** Upstream's name, as printed. */
  name: string;
  /** Phase and histogram prefix. */
  id: string;
  /** 0: MEM_SIZE, the whole test area (only such tests rank the slot setup time). */
  memSize: number;
  guest: MemslotPerfGuestCode;
  prepare?: (c: RunCtx) => boolean;
  loop: (c: RunCtx) => HostSteps;
}

/** struct vm_data plus this harness's run state. */
interface RunCtx {
  test: TestDef;
  vm: Vm;
  vma: Vma;
  nslots: number;
  npages: number;
  pagesPerSlot: number;
  sync: Int32Array;
  syncWork: Float64Array;
  syncs: number;
  mmioOk: boolean;
  mmioGpaMin: number;
  mmioGpaMax: number;
  moveAreaGpa: number;
  timer: VmmTimer;
  metrics: Metrics;
  timeline: ModeledTimeline;
  verify: boolean;
  disableSlotZapQuirk: boolean;
  waitTimeoutMs: number;
  /** The first failed TEST_ASSERT / GUEST_ASSERT (the test stops there). */
  failure: string | null;
  checks: number;
}

/**
 * The modeled timeline of one run: host and guest work in parallel between syncs, and a sync
 * completes when the later of the two arrives. The host's position is the last sync's time plus
 * the host's modeled work since it (its thread's clock).
 */
class ModeledTimeline {
  private passT = 0;
  private mark: number;
  constructor(private readonly m: Metrics) {
    this.mark = m.t;
  }
  now(): number {
    return this.passT + (this.m.t - this.mark);
  }
  /** Sync passed; the guest had done `guestWork` modeled ns since the previous one. */
  syncPassed(guestWork: number): void {
    this.passT = Math.max(this.now(), this.passT + guestWork);
    this.mark = this.m.t;
  }
}

class TestAssertion extends Error {}

function slot2gpa(c: RunCtx, slot: number): number {
  return MEM_GPA + slot * c.pagesPerSlot * kPage;
}

/** vm_gpa2hva()'s arithmetic: the page index in the area's mapping and the pages left in its slot. */
function gpa2page(c: RunCtx, gpa: number): { page: number; rempages: number } {
  if (gpa < MEM_GPA || gpa >= MEM_GPA + c.npages * kPage) throw new Error(`BUG: gpa 0x${gpa.toString(16)} outside the test memory`);
  const gpage = Math.floor((gpa - MEM_GPA) / kPage);
  const slot = Math.min(Math.floor(gpage / c.pagesPerSlot), c.nslots - 1);
  const slotoffs = gpage - slot * c.pagesPerSlot;
  const slotpages = slot === c.nslots - 1 ? c.npages - slot * c.pagesPerSlot : c.pagesPerSlot;
  return { page: gpage, rempages: slotpages - slotoffs };
}

/** The VMM touches guest memory through its mapping (a host page fault populates it). */
function vmmTouch(c: RunCtx, page: number): number {
  const ht = c.vm.ctx.hostThread;
  count(c.metrics, Op.vmm_access);
  const pfn = hostFault(ht, c.vma, page);
  if (pfn < 0) throw new KvmError('ENOMEM', `the host ran out of memory populating the VMM's page ${page}: give more --host-memory`);
  if (ht.populated) {
    count(c.metrics, Op.host_fault);
    count(c.metrics, Op.frame_alloc);
    countN(c.metrics, Op.page_zero_4k, 1 << ht.lastOrder);
  }
  return pfn;
}

/** The value the VMM reads at a page: its frame's stamp, 0 if the host has no page there. */
function vmmRead(c: RunCtx, page: number): number {
  count(c.metrics, Op.vmm_access);
  const pfn = c.vma.lookup(page);
  return pfn < 0 ? Val.kZero : c.vm.host.frames.readStampIteration(pfn);
}

function vmmWriteZero(c: RunCtx, page: number): void {
  c.vm.host.frames.writeStamp(vmmTouch(c, page), 0, Val.kZero);
}

function fail(c: RunCtx, message: string): never {
  c.failure ??= message;
  throw new TestAssertion(message);
}

/** test_memslot_do_unmap(): MADV_DONTNEED per slot piece (the mmu_notifier zaps its SPTEs). */
function doUnmap(c: RunCtx, offsp: number, count_: number): void {
  let gpa = MEM_TEST_GPA + offsp * kPage;
  let ctr = 0;
  while (ctr < count_) {
    const { rempages } = gpa2page(c, gpa);
    if (rempages === 0) throw new Error(`BUG: empty memory slot at gptr 0x${gpa.toString(16)}`);
    const n = Math.min(rempages, count_ - ctr);
    const gfn = gpa / kPage;
    c.timer.call(`${c.test.id}.madvise_dontneed`, () => c.vm.invalidateRange(gfn, gfn + n));
    ctr += n;
    gpa += n * kPage;
  }
}

/** test_memslot_map_unmap_check() (-d only): read back the guest's value, then clear it. */
function mapUnmapCheck(c: RunCtx, offsp: number, valexp: Val): void {
  if (!c.verify) return;
  const gpa = MEM_TEST_GPA + offsp * kPage;
  const { page } = gpa2page(c, gpa);
  const val = vmmRead(c, page);
  c.checks++;
  if (val !== valexp) {
    fail(c, `Guest written values should read back correctly before unmap (${kValU64[val] ?? val} vs ${kValU64[valexp]} @ ${gpa.toString(16)})`);
  }
  vmmWriteZero(c, page);
}

/**
 * host_perform_sync(): raise sync_flag and wait until the guest took it (the pair: this seq-cst
 * store, the guest's compareExchange; then the guest's work for this sync, published before its
 * compareExchange, is read after our Atomics.load saw 0). A guest assertion ends the wait, and so
 * does -t's timeout (upstream's alarm()).
 */
function* hostPerformSync(c: RunCtx): HostSteps {
  Atomics.store(c.sync, SyncArea.kSyncFlag, 1);
  const t0 = performance.now();
  while (Atomics.load(c.sync, SyncArea.kSyncFlag) !== 0) {
    checkGuest(c);
    if (performance.now() - t0 > c.waitTimeoutMs) fail(c, `host wait timeout: the guest did not take the sync within ${c.waitTimeoutMs / 1000} s (-t)`);
    yield HostYield.kWaitGuest;
  }
  c.timeline.syncPassed(c.syncWork[SyncArea.kSyncWorkF64 + (c.syncs & 1)]!);
  c.syncs++;
}

/** check_mmio_access()'s TEST_ASSERTs, raised on the vCPU's worker (workload/memslot-perf-guest.ts). */
function checkGuest(c: RunCtx): void {
  const why = Atomics.load(c.sync, SyncArea.kGuestAssert);
  if (why === GuestAssert.kOk) return;
  const gpa = Atomics.load(c.sync, SyncArea.kAssertGfn) * kPage;
  const msg = why === GuestAssert.kUnexpectedMmio ? 'Unexpected mmio exit'
    : why === GuestAssert.kMmioRead ? 'Unexpected mmio read'
      : why === GuestAssert.kMmioLen ? 'Unexpected exit mmio size = 8'
        : `Unexpected exit mmio address = 0x${gpa.toString(16)}`;
  fail(c, msg);
}

function* mapLoop(c: RunCtx): HostSteps {
  const pages = MEM_TEST_MAP_SIZE / kPage;
  // Unmap the second half while the guest writes (maps) the first.
  doUnmap(c, pages / 2, pages / 2);
  yield* hostPerformSync(c);
  mapUnmapCheck(c, 0, Val.kVal1);
  mapUnmapCheck(c, pages / 2 - 1, Val.kVal1);
  doUnmap(c, 0, pages / 2);
  yield* hostPerformSync(c);
  mapUnmapCheck(c, pages / 2, Val.kVal2);
  mapUnmapCheck(c, pages - 1, Val.kVal2);
}

function* unmapLoopCommon(c: RunCtx, chunk: number): HostSteps {
  const pages = MEM_TEST_UNMAP_SIZE / kPage;
  yield* hostPerformSync(c);
  mapUnmapCheck(c, 0, Val.kVal1);
  for (let ctr = 0; ctr < pages / 2; ctr += chunk) doUnmap(c, ctr, chunk);
  yield* hostPerformSync(c);
  mapUnmapCheck(c, pages / 2, Val.kVal2);
  for (let ctr = pages / 2; ctr < pages; ctr += chunk) doUnmap(c, ctr, chunk);
}

function moveRegion(c: RunCtx, gpa: number): void {
  // vm_mem_region_move(): the same region at another guest_phys_addr (slot data->nslots).
  const slot = c.vm.slots.get(c.nslots)!;
  setMemoryRegionTimed(c.timer, c.vm, { slot: c.nslots, flags: slot.flags, guestPhysAddr: gpa, memorySize: slot.npages * kPage, userspaceAddr: slot.userspaceAddr }, `${c.test.id}.`);
}

/** test_memslot_move_loop(): away and back; the guest runs between the two. */
function* moveLoop(c: RunCtx): HostSteps {
  const src = slot2gpa(c, c.nslots - 1);
  moveRegion(c, MEM_TEST_MOVE_GPA_DEST);
  yield HostYield.kPreempt;
  checkGuest(c);
  moveRegion(c, src);
  yield HostYield.kPreempt;
  checkGuest(c);
}

/** test_memslot_move_prepare(): place the move area; -q disables the slot zap quirk. */
function movePrepare(c: RunCtx, active: boolean): boolean {
  if (c.disableSlotZapQuirk) c.vm.enableCap('KVM_CAP_DISABLE_QUIRKS2', KVM_X86_QUIRK_SLOT_ZAP_ALL);
  const movesrcgpa = slot2gpa(c, c.nslots - 1);
  if (active) {
    const { rempages } = gpa2page(c, movesrcgpa);
    if (rempages * kPage < MEM_TEST_MOVE_SIZE / 2) return false;
  }
  c.moveAreaGpa = movesrcgpa - MEM_TEST_MOVE_SIZE / (active ? 2 : 1);
  if (active) {
    c.mmioOk = true;
    c.mmioGpaMin = movesrcgpa;
    c.mmioGpaMax = movesrcgpa + MEM_TEST_MOVE_SIZE / 2 - 1;
  }
  return true;
}

/** test_memslot_rw_loop(): the host writes VAL_2 at each page's middle, then checks the guest's VAL_1. */
function* rwLoop(c: RunCtx): HostSteps {
  const first = (MEM_TEST_GPA - MEM_GPA) / kPage;
  const pages = MEM_TEST_SIZE / kPage;
  // One stamp per frame: the host's VAL_2 at page_size / 2 is a touch of the page, not a stamp
  // (it would overwrite the guest's VAL_1 at offset 0, which the host checks below).
  for (let p = first; p < first + pages; p++) vmmTouch(c, p);
  yield* hostPerformSync(c);
  for (let p = first; p < first + pages; p++) {
    const val = vmmRead(c, p);
    if (val !== Val.kVal1) fail(c, `Guest written values should read back correctly (is ${kValU64[val] ?? val} @ ${(MEM_GPA + p * kPage).toString(16)})`);
    vmmWriteZero(c, p);
  }
  c.checks += pages;
  yield* hostPerformSync(c);
}

export const kMemslotPerfTests: TestDef[] = [
  { name: 'map', id: 'map', memSize: MEM_SIZE_MAP, guest: 'map', loop: mapLoop },
  { name: 'unmap', id: 'unmap', memSize: MEM_TEST_UNMAP_SIZE + MEM_EXTRA_SIZE, guest: 'unmap', loop: (c) => unmapLoopCommon(c, 1) },
  { name: 'unmap chunked', id: 'unmap-chunked', memSize: MEM_TEST_UNMAP_SIZE + MEM_EXTRA_SIZE, guest: 'unmap', loop: (c) => unmapLoopCommon(c, MEM_TEST_UNMAP_CHUNK_SIZE / kPage) },
  { name: 'move active area', id: 'move-active-area', memSize: 0, guest: 'move', prepare: (c) => movePrepare(c, true), loop: moveLoop },
  { name: 'move inactive area', id: 'move-inactive-area', memSize: 0, guest: 'move', prepare: (c) => movePrepare(c, false), loop: moveLoop },
  { name: 'RW', id: 'rw', memSize: 0, guest: 'rw', loop: rwLoop },
];

const NTESTS = kMemslotPerfTests.length;

/** check_slot_pages() (host and guest pages are both 4 KiB here). */
function checkSlotPages(pagesPerSlot: number): boolean {
  return pagesPerSlot !== 0;
}

/** get_max_slots(), with upstream's arithmetic (the remainder is taken modulo pages_per_slot). */
function getMaxSlots(npages: number, nslots: number): number {
  for (let slots = nslots - 1; slots > 1; slots--) {
    const pagesPerSlot = Math.floor(npages / slots);
    if (pagesPerSlot === 0) continue;
    if (checkSlotPages(pagesPerSlot)) return slots + 1; // slot 0 is reserved
  }
  return 0;
}

export const memslotPerf: ScenarioDef = {
  name: 'memslot-perf',
  summary: 'memslot map/unmap/move/RW loops against a running vCPU; time per iteration and slot setup',
  after: 'tools/testing/selftests/kvm/memslot_perf_test.c',
  flags: [
    { name: 'verbose', short: 'v', type: 'bool', default: false, help: 'enable verbose mode (not for benchmarking)' },
    { name: 'debug-checks', short: 'd', type: 'bool', default: false, help: 'enable extra debug checks (read back the guest\'s values before unmapping)' },
    { name: 'disable-slot-zap-quirk', short: 'q', type: 'bool', default: false, help: 'disable the memslot zap quirk (KVM_X86_QUIRK_SLOT_ZAP_ALL) during memslot move' },
    { name: 'slots', short: 's', type: 'int', default: -1, help: 'memslot count cap (-1 means no cap: KVM_CAP_NR_MEMSLOTS)' },
    { name: 'first-test', short: 'f', type: 'int', default: 0, help: `the first test to run (max ${NTESTS - 1})` },
    { name: 'last-test', short: 'e', type: 'int', default: NTESTS - 1, help: `the last test to run (max ${NTESTS - 1})` },
    { name: 'test-length', short: 'l', type: 'int', default: 1, help: 'test length in wall seconds (upstream\'s default is 5)' },
    { name: 'runs', short: 'r', type: 'int', default: 1, help: 'the number of runs per test' },
    { name: 'wait-timeout', short: 't', type: 'int', default: 10, help: 'the number of seconds for host wait timeout' },
    { name: 'modeled-length', type: 'float', default: null, help: 'end each run after this many modeled seconds instead of -l wall seconds (reproducible iteration counts)' },
    { name: 'concurrent-vmm', type: 'bool', default: false, help: 'run the host loop alongside the vCPU instead of between its slices (wall time overlaps as upstream\'s; counts then vary run to run)' },
    { name: 'host-memory', type: 'size', default: null, help: 'host memory (default: sized to fit)' },
    { name: 'cost-model', type: 'string', default: 'default', help: 'cost-model profile (name or JSON path) for modeled time' },
    { name: 'wall-sample', type: 'int', default: 16, min: 1, max: 1 << 20, help: 'time 1 in N faults in wall time (all are timed in modeled time)' },
    { name: 'slice', type: 'int', default: 4096, min: 1, max: 1 << 24, help: 'guest accesses per vCPU time slice' },
    { name: 'json', type: 'string', default: null, help: 'write the result JSON to this file' },
    { name: 'quiet', type: 'bool', default: false, help: 'print only the selftest lines' },
  ],
  check: checkMemslotPerfFlags,
  run: runMemslotPerf,
};

/** parse_args()'s checks with its sentences (bad values exit 2 here, not -1). */
export function checkMemslotPerfFlags(f: Record<string, unknown>): string[] {
  const n = (k: string) => f[k] as number;
  if (n('slots') <= 1 && n('slots') !== -1) throw new UsageError('Slot count cap must be larger than 1 or -1 for no cap');
  if (n('first-test') < 0) throw new UsageError(`First test must be non-negative, got ${n('first-test')}`);
  if (n('last-test') < 0 || n('last-test') >= NTESTS) throw new UsageError(`Last test to run has to be non-negative and less than ${NTESTS}`);
  if (n('test-length') < 0) throw new UsageError(`Test length must be non-negative, got ${n('test-length')}`);
  if (n('runs') <= 0) throw new UsageError(`Runs per test must be greater than 0, got ${n('runs')}`);
  if (n('wait-timeout') <= 0) throw new UsageError(`Host wait timeout must be greater than 0, got ${n('wait-timeout')}`);
  if (n('first-test') > n('last-test')) throw new UsageError('First test to run cannot be greater than the last test to run');
  // Each run gets a VM of its own (KVM_CREATE_VM), ids below 4095.
  if ((n('last-test') - n('first-test') + 1) * n('runs') > 4094) throw new UsageError(`-r ${n('runs')}: at most 4094 runs in all (one VM each)`);
  const ml = f['modeled-length'] as number | null;
  if (ml !== null && !(ml > 0)) throw new UsageError(`--modeled-length must be a positive number of seconds, got ${ml}`);
  if (ml !== null && givenFlags(f).has('test-length')) throw new UsageError('-l (wall seconds) and --modeled-length (modeled seconds) both set the test length: give one');
  return [];
}

interface RunOutcome {
  ok: boolean;
  /** prepare_vm() / prepare() refused the slot count: get_max_slots()'s answer, or 0. */
  maxslots: number;
  slotWallNs: number;
  slotModeledNs: number;
  guestWallNs: number;
  guestModeledNs: number;
  nloops: number;
}

interface Best {
  slotWallNs: number;
  slotModeledNs: number;
  iterWallNs: number;
  iterModeledNs: number;
  nloopsWall: number;
  nloopsModeled: number;
}

export async function runMemslotPerf(f: Record<string, unknown>, io: ScenarioIo): Promise<RunResult> {
  const verbose = f.verbose as boolean;
  const pv = (line: string) => {
    if (verbose) io.print(line);
  };
  const first = f['first-test'] as number;
  const last = f['last-test'] as number;
  const runs = f.runs as number;
  const seconds = f['test-length'] as number;
  const modeledLength = f['modeled-length'] as number | null;
  const alongside = f['concurrent-vmm'] as boolean;
  const cost = costModelFlag(f['cost-model'] as string);
  // The largest test area, its move destination, and memslot 0, with the memstress estimate.
  const hostBytes = (f['host-memory'] as number | null) ?? MEM_SIZE + kSlot0Pages * kPage + 64 * 2 ** 20;
  const sizing: MemstressConfig = {
    vms: 1, vcpus: 1, bytesPerVcpu: MEM_SIZE, backing: 'anonymous', overlap: false, slots: 1, seed: 0, workers: 1,
    hostMemory: hostBytes, nodes: 1, costModel: f['cost-model'] as string, stamps: true,
  };
  checkRunFits(sizing, memstressLayout(sizing));
  const host = Host.create({ memory: hostBytes, stamps: true });
  const ctx: ThreadCtx = { metrics: new Metrics(cost), hostThread: host.thread() };
  const timer = new VmmTimer(ctx.metrics);
  // parse_args(): KVM_CAP_NR_MEMSLOTS, slot 0 reserved.
  const maxMemSlots = kvmCheckExtension(host, null, KVM_CAP_NR_MEMSLOTS);
  const capped = f.slots as number;
  const nslots = capped === -1 ? maxMemSlots - 1 : Math.min(capped, maxMemSlots) - 1;
  pv(`Allowed Number of memory slots: ${nslots + 1}`);
  const start = snapshot();
  const runner = new Runner(host, [], { workers: 1, cost, sliceAccesses: f.slice as number, wallEvery: f['wall-sample'] as number, observer: io.observer });
  const stats: Record<string, StatsSnapshot> = {};
  const violations: AuditViolation[] = [];
  const perRun: Record<string, number>[] = [];
  const metrics: Record<string, number | string | boolean> = {};
  let failure: string | null = null;
  let checks = 0;
  let lastVm: Vm | null = null;
  let vmId = 0;
  const bestSlot = { wall: 0, modeled: 0 };
  try {
    for (let t = first; t <= last && failure === null; t++) {
      const test = kMemslotPerfTests[t]!;
      if (t > first) io.print('');
      io.print(modeledLength === null
        ? `Testing ${test.name} performance with ${runs} runs, ${seconds} seconds each`
        : `Testing ${test.name} performance with ${runs} runs, ${modeledLength} modeled seconds each`);
      const best: Best = { slotWallNs: 0, slotModeledNs: 0, iterWallNs: 0, iterModeledNs: 0, nloopsWall: 0, nloopsModeled: 0 };
      for (let r = 1; r <= runs && failure === null; r++) {
        if (lastVm !== null) {
          // free_vm() of the previous run, audited first (the last one is audited with the result).
          violations.push(...audit(host, [lastVm]).violations);
          lastVm.destroy();
          lastVm = null;
        }
        const name = `${test.id}-${r}`;
        const exec = await testExecute({ test, vmId: vmId++, nslots, name, host, ctx, timer, runner, f, pv, alongside, seconds, modeledLength });
        lastVm = exec.c?.vm ?? null;
        if (exec.c !== null) {
          checks += exec.c.checks;
          if (exec.c.failure !== null) failure = exec.c.failure;
          stats[name] = statsSnapshot([exec.c.vm]);
        }
        const o = exec.outcome;
        if (failure !== null) {
          io.print('==== Test Assertion Failure ====');
          io.print(`  ${failure}`);
          break;
        }
        if (!o.ok) {
          io.print(o.maxslots !== 0
            ? `Memslot count too high for this test, decrease the cap (max is ${o.maxslots})`
            : 'Memslot count may be too high for this test, try adjusting the cap');
          break;
        }
        io.print(`Test took ${fmtTimespec(o.slotWallNs)} for slot setup + ${fmtTimespec(o.guestWallNs)} all iterations`);
        io.print(`[modeled] Test took ${fmtTimespec(o.slotModeledNs)} for slot setup + ${fmtTimespec(o.guestModeledNs)} all iterations`);
        perRun.push({ test: t, run: r, nloops: o.nloops, slotWallNs: Math.round(o.slotWallNs), slotModeledNs: Math.round(o.slotModeledNs), guestWallNs: Math.round(o.guestWallNs), guestModeledNs: Math.round(o.guestModeledNs) });
        if (o.nloops === 0) {
          io.print('No full loops done - too short test time or system too loaded?');
          continue;
        }
        // timespec_div(): whole nanoseconds.
        const iterWall = Math.floor(o.guestWallNs / o.nloops);
        const iterModeled = o.guestModeledNs / o.nloops;
        io.print(`Done ${o.nloops} iterations, avg ${fmtTimespec(iterWall)} each`);
        io.print(`[modeled] Done ${o.nloops} iterations, avg ${fmtTimespec(iterModeled)} each`);
        // Only tests over the whole test area rank the slot setup time (they are comparable).
        if (test.memSize === 0) {
          if (bestSlot.wall === 0 || o.slotWallNs < bestSlot.wall) bestSlot.wall = o.slotWallNs;
          if (bestSlot.modeled === 0 || o.slotModeledNs < bestSlot.modeled) bestSlot.modeled = o.slotModeledNs;
        }
        if (best.iterWallNs === 0 || iterWall < best.iterWallNs) Object.assign(best, { iterWallNs: iterWall, nloopsWall: o.nloops });
        if (best.iterModeledNs === 0 || iterModeled < best.iterModeledNs) Object.assign(best, { iterModeledNs: iterModeled, nloopsModeled: o.nloops });
      }
      if (best.iterWallNs !== 0) {
        io.print(`Best runtime result was ${fmtTimespec(best.iterWallNs)} per iteration (with ${best.nloopsWall} iterations)`);
        io.print(`[modeled] Best runtime result was ${fmtTimespec(best.iterModeledNs)} per iteration (with ${best.nloopsModeled} iterations)`);
        metrics[`${test.id}.bestIterWallNs`] = best.iterWallNs;
        metrics[`${test.id}.bestIterModeledNs`] = Math.round(best.iterModeledNs);
      }
    }
    if (failure === null && bestSlot.wall !== 0) {
      io.print(`Best slot setup time for the whole test area was ${fmtTimespec(bestSlot.wall)}`);
      io.print(`[modeled] Best slot setup time for the whole test area was ${fmtTimespec(bestSlot.modeled)}`);
      metrics.bestSlotSetupWallNs = Math.round(bestSlot.wall);
      metrics.bestSlotSetupModeledNs = Math.round(bestSlot.modeled);
    }
    runner.histograms.add(timer.hists.encode());
    timer.hists.destroy();
    metrics.checks = checks;
    metrics.checksFailed = failure === null ? 0 : 1;
    if (failure !== null) metrics.failure = failure;
    const result = assembleResult({
      scenario: 'memslot-perf',
      config: { ...f, nslots, concurrentVmm: alongside, quirkSlotZapAll: !(f['disable-slot-zap-quirk'] as boolean) },
      seed: 0, host, vms: lastVm === null ? [] : [lastVm], runner, info: hostInfo(start, 1), stats, metrics, output: [],
    });
    // Each run's VM was audited before the next replaced it; the last one by assembleResult.
    result.audit.violations = [...violations, ...result.audit.violations];
    result.audit.ok = result.audit.violations.length === 0;
    result.iterations = perRun;
    if (alongside) result.host.notes.push('--concurrent-vmm: the host loop ran alongside the vCPU; op counts and modeled times vary run to run');
    return result;
  } finally {
    await runner.close();
  }
}

interface ExecInput {
  test: TestDef;
  /** A new VM id per run (workers key their views by id). */
  vmId: number;
  nslots: number;
  name: string;
  host: Host;
  ctx: ThreadCtx;
  timer: VmmTimer;
  runner: Runner;
  f: Record<string, unknown>;
  pv: (line: string) => void;
  alongside: boolean;
  seconds: number;
  modeledLength: number | null;
}

/** test_execute(): prepare_vm(), the test's prepare(), launch, the timed loop, exit, join. */
async function testExecute(x: ExecInput): Promise<{ outcome: RunOutcome; c: RunCtx | null }> {
  const { test, host, ctx, timer, runner } = x;
  const memSize = test.memSize === 0 ? MEM_SIZE : test.memSize;
  const npages = memSize / kPage;
  const outcome: RunOutcome = { ok: false, maxslots: 0, slotWallNs: 0, slotModeledNs: 0, guestWallNs: 0, guestModeledNs: 0, nloops: 0 };
  // prepare_vm()
  const vm = Vm.create(host, x.vmId, ctx, { maxVcpus: 1 });
  vm.createVcpu();
  const pagesPerSlot = Math.floor(npages / x.nslots);
  const rempages = npages % x.nslots;
  if (!checkSlotPages(pagesPerSlot)) {
    outcome.maxslots = getMaxSlots(npages, x.nslots);
    vm.destroy();
    return { outcome, c: null };
  }
  const slot0 = vm.mmap({ size: kSlot0Pages * kPage, backing: 'anonymous' });
  vm.setUserMemoryRegion2({ slot: 0, flags: 0, guestPhysAddr: 0, memorySize: kSlot0Pages * kPage, userspaceAddr: slot0 });
  // One mapping for the area (upstream mmaps each region inside the timed loop).
  const hva = vm.mmap({ size: memSize, backing: 'anonymous' });
  const vma = vm.vmas[vm.vmas.length - 1]!;
  x.pv(`Adding slots 1..${x.nslots}, each slot with ${pagesPerSlot} pages + ${rempages} extra pages last`);
  timer.begin();
  const m0 = ctx.metrics.t;
  const w0 = performance.now();
  for (let slot = 1, gpa = MEM_GPA; slot <= x.nslots; slot++) {
    const n = pagesPerSlot + (slot === x.nslots ? rempages : 0);
    setMemoryRegionTimed(timer, vm, { slot, flags: 0, guestPhysAddr: gpa, memorySize: n * kPage, userspaceAddr: hva + (gpa - MEM_GPA) }, `${test.id}.`);
    gpa += n * kPage;
  }
  outcome.slotWallNs = (performance.now() - w0) * 1e6;
  outcome.slotModeledNs = ctx.metrics.t - m0;
  runner.vmmPhase(`${x.name}.slot-setup`, outcome.slotWallNs, timer.delta());
  const sync = new SharedArrayBuffer(SyncArea.kSyncBytes);
  const c: RunCtx = {
    test, vm, vma, nslots: x.nslots, npages, pagesPerSlot, sync: new Int32Array(sync), syncWork: new Float64Array(sync), syncs: 0,
    mmioOk: false, mmioGpaMin: 0, mmioGpaMax: 0, moveAreaGpa: 0, timer, metrics: ctx.metrics, timeline: new ModeledTimeline(ctx.metrics),
    verify: x.f['debug-checks'] as boolean, disableSlotZapQuirk: x.f['disable-slot-zap-quirk'] as boolean,
    waitTimeoutMs: (x.f['wait-timeout'] as number) * 1000, failure: null, checks: 0,
  };
  // memset(0) of every slot's memory: the host pages exist before the test (not timed).
  for (let p = 0; p < npages; p++) vmmTouch(c, p);
  ctx.hostThread.drain();
  if (test.prepare !== undefined && !test.prepare(c)) return { outcome, c };
  outcome.ok = true;
  x.pv('Launching the test VM');
  runner.replaceVms([vm]);
  const spec: MemslotPerfGuestSpec = {
    kind: 'memslot-perf', code: test.guest, sync, syncGfn: MEM_SYNC_GPA / kPage,
    areaGfn: (test.guest === 'move' ? c.moveAreaGpa : MEM_TEST_GPA) / kPage,
    pages: (test.guest === 'move' ? MEM_TEST_MOVE_SIZE : test.guest === 'map' ? MEM_TEST_MAP_SIZE : test.guest === 'unmap' ? MEM_TEST_UNMAP_SIZE : MEM_TEST_SIZE) / kPage,
    halfPages: (test.guest === 'map' ? MEM_TEST_MAP_SIZE : MEM_TEST_UNMAP_SIZE) / kPage / 2,
    mmioOk: c.mmioOk, mmioGpaMin: c.mmioGpaMin, mmioGpaMax: c.mmioGpaMax,
  };
  const budget = x.modeledLength !== null ? x.modeledLength * 1e9 : x.seconds * 1e9;
  let tstart = 0;
  let host_: HostSteps | null = null;
  let finished = false;
  // The loop of test_execute(), from let_guest_run() to make_guest_exit().
  function* loop(): HostSteps {
    // let_guest_run(): the pair is the guest's Atomics.load of start_flag.
    c.timeline = new ModeledTimeline(ctx.metrics);
    tstart = performance.now();
    Atomics.store(c.sync, SyncArea.kStartFlag, 1);
    for (;;) {
      outcome.guestWallNs = Math.round((performance.now() - tstart) * 1e6);
      outcome.guestModeledNs = c.timeline.now();
      if ((x.modeledLength !== null ? outcome.guestModeledNs : outcome.guestWallNs) >= budget) break;
      yield* test.loop(c);
      outcome.nloops++;
    }
  }
  const stop = () => {
    finished = true;
    // make_guest_exit(): the pair is the guest's Atomics.load of exit_flag.
    Atomics.store(c.sync, SyncArea.kExitFlag, 1);
  };
  const vmmStep = () => {
    if (finished) return;
    host_ ??= loop();
    const t0 = performance.now();
    try {
      for (;;) {
        const r = host_.next();
        if (r.done === true) {
          stop();
          return;
        }
        if (!x.alongside) return;
        // Alongside the vCPU: wait for it here, giving the event loop a turn now and then (a
        // worker that threw settles the phase only there).
        if (r.value === HostYield.kWaitGuest) Atomics.wait(c.sync, SyncArea.kSyncFlag, 1, 1);
        if (performance.now() - t0 > 20) return;
      }
    } catch (e) {
      stop();
      if (!(e instanceof TestAssertion)) throw e;
    }
  };
  timer.begin();
  await runner.phase(x.name, () => spec, `${test.id}.page_fault`, vmmStep, { vmmAlongside: x.alongside });
  // The guest ended on its own (an assertion) before the host loop did.
  if (!finished) {
    try {
      checkGuest(c);
      throw new Error(`BUG: the ${test.name} guest ended before the host loop`);
    } catch (e) {
      if (!(e instanceof TestAssertion)) throw e;
    }
  }
  // The VMM's frame caches go back before anyone audits (every VMM-side call leaves them empty).
  ctx.hostThread.drain();
  runner.vmmPhase(`${x.name}.vmm`, 0, timer.delta());
  return { outcome, c };
}
