/**
 * Scenario `private-mem-conversions`, after x86/private_mem_conversions_test.c: a
 * KVM_X86_SW_PROTECTED_VM with KVM_CAP_EXIT_HYPERCALL for KVM_HC_MAP_GPA_RANGE, one guest_memfd
 * for all vCPUs, memslots 10.. at 4 GiB; each vCPU's guest converts its PER_CPU_DATA_SIZE
 * (2M + 4K) between shared and private by hypercall, with and without fallocate(), and punches
 * holes (workload/private-mem-conversions-guest.ts). The host side is handle_exit_hypercall()
 * (optional fallocate, then the attributes) and the ucall handler (memcmp_h() of the shared
 * memory and memset() of the next pattern). Contents are checked on both sides: the guest's
 * loads read the stamp of the frame they used, the host reads through its own mapping.
 *
 * Attribute paths (--attributes):
 *   vm    the 6.8 VM ioctl KVM_SET_MEMORY_ATTRIBUTES; shared memory is a separate mapping of
 *         -s (anonymous by default), private memory the guest_memfd (created with flags 0).
 *   gmem  the 2026 in-place series: KVM_SET_MEMORY_ATTRIBUTES2 on the guest_memfd, created with
 *         GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED; shared memory is the guest_memfd
 *         itself (the series' test maps the guest_memfd as the region's memory and requires -s
 *         shmem, "Testing in-place conversions, only shmem mem_type supported"), the host's
 *         access to a private page SIGBUSes (TEST_EXPECT_SIGBUS on SYNC_PRIVATE), and the guest
 *         checks that the whole-range punch after each range zeroes shared memory too.
 * The guest_memfd's folio size is --backing (the 1G series' hugetlb guest_memfd, or THP); the
 * per-vCPU alignment is the test's max(SZ_2M, backing page size of -s), widened to the folio
 * size (a hugetlb guest_memfd's size is a multiple of its page size).
 *
 * The harness checks, each printed PASS/FAIL: after each test range, that the audit of the VM
 * is clean (private/shared leaves, folio sizes, file accounting, no store through a stale
 * translation); after the private writes of each one-page range, that lpage_info's mixed flag of
 * every 2M page of the vCPU's data is set exactly where the attributes are mixed and no load
 * went through a huge mapping there; and, for the (2M, 4K) range, that the private page was
 * mapped 4K and the uniform 2M below it huge when its backing can be. A failed guest or host
 * assertion ends the run as upstream's TEST_ASSERT does.
 *
 * vCPUs run in this thread, round-robin, one exit at a time (deterministic: the test draws no
 * random numbers; --seed is kvm_selftest_init()'s "Random seed" line and the result's seed).
 * Not modelled: the fallocate() of the memfd after kvm_vm_free() (Vm.destroy() drops the
 * guest_memfd with the VM here).
 */
import { kBackingSources, backingPageOrder, hostFault, isHugetlbBacking, type BackingSource, type Vma } from '../host/mm.js';
import { Host } from '../host/host.js';
import { KvmError, fail } from '../host/errno.js';
import { HostPage } from '../host/host.js';
import { FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, GUEST_MEMFD_FLAG_INIT_SHARED, GUEST_MEMFD_FLAG_MMAP, gmemBackingOrder, kGmemBackings, type GmemBacking } from '../gmem/gmem-file.js';
import { KVM_X86_SW_PROTECTED_VM, gmemCounters, type GuestMemfd } from '../kvm/guest_memfd.js';
import { KVM_MEMORY_ATTRIBUTE_PRIVATE, kvmMemIsPrivate } from '../kvm/attributes.js';
import { KVM_MEM_GUEST_MEMFD, type Memslot } from '../kvm/memslot.js';
import { KVM_HC_MAP_GPA_RANGE, type Vcpu } from '../kvm/vcpu.js';
import { KvmExit } from '../kvm/vcpu-layout.js';
import { Lpage, gfnToIndex } from '../kvm/mmu/lpage.js';
import { PgLevel } from '../kvm/mmu/spte.js';
import { audit, type AuditViolation } from '../kvm/audit.js';
import { Vm, type ThreadCtx } from '../kvm/vm.js';
import { Metrics, countersToRecord } from '../metrics/counters.js';
import { costVector, loadCostModel } from '../metrics/cost-model.js';
import {
  BASE_DATA_GPA, BASE_DATA_SLOT, ConversionsGuest, MAP_GPA_DO_FALLOCATE, MAP_GPA_SET_ATTRIBUTES, MAP_GPA_SHARED,
  PAGE_SIZE, PER_CPU_DATA_SIZE, SZ_2M, SyncKind, kTestRanges, rangeName, type Ucall,
} from '../workload/private-mem-conversions-guest.js';
import { UsageError } from './flags.js';
import { memoryReport, statsSnapshot } from './assemble.js';
import { hostInfo, snapshot } from './host-info.js';
import { kResultSchema, type PhaseSummary, type RunResult, type StatsSnapshot } from './result.js';
import type { ScenarioDef, ScenarioIo } from './scenario.js';

type AttrPath = 'vm' | 'gmem';

/** The test's layout for a configuration (test_mem_conversions()). */
export interface ConversionsLayout {
  alignment: number;
  perCpuSize: number;
  memfdSize: number;
  slotSize: number;
}

export function conversionsLayout(src: BackingSource, backing: GmemBacking, nrVcpus: number, nrMemslots: number): ConversionsLayout {
  // "Allocate enough memory so that each vCPU's chunk of memory can be naturally aligned with
  // respect to the size of the backing store" (and here of the guest_memfd's folio).
  const alignment = Math.max(SZ_2M, PAGE_SIZE * 2 ** backingPageOrder(src), PAGE_SIZE * 2 ** gmemBackingOrder(backing));
  const perCpuSize = Math.ceil(PER_CPU_DATA_SIZE / alignment) * alignment;
  const memfdSize = perCpuSize * nrVcpus;
  return { alignment, perCpuSize, memfdSize, slotSize: Math.floor(memfdSize / nrMemslots) };
}

export const privateMemConversions: ScenarioDef = {
  name: 'private-mem-conversions',
  summary: 'converts guest memory shared <-> private by KVM_HC_MAP_GPA_RANGE exits (guest_memfd, fallocate, PUNCH_HOLE) and checks contents on both sides',
  after: 'tools/testing/selftests/kvm/x86/private_mem_conversions_test.c',
  flags: [
    { name: 'mem-type', short: 's', type: 'enum', choices: kBackingSources, default: null, help: 'backing source of shared memory (default anonymous; with --attributes gmem shared memory is the guest_memfd and only shmem is accepted, its default)' },
    { name: 'nr-vcpus', short: 'n', type: 'int', default: 1, min: 1, max: 64, help: 'number of vCPUs' },
    { name: 'nr-memslots', short: 'm', type: 'int', default: 1, min: 1, max: 32764, help: 'number of memslots the guest_memfd is split over' },
    { name: 'backing', type: 'enum', choices: kGmemBackings, default: '4k', help: 'guest_memfd folio size' },
    { name: 'attributes', type: 'enum', choices: ['vm', 'gmem'], default: 'vm', help: 'vm: KVM_SET_MEMORY_ATTRIBUTES (6.8, separate shared memory); gmem: KVM_SET_MEMORY_ATTRIBUTES2 (in-place conversion)' },
    { name: 'seed', type: 'int', default: 1, min: 0, max: 2 ** 31 - 1, help: 'random seed (kvm_selftest_init(); the test draws no random numbers)' },
    { name: 'host-memory', type: 'size', default: null, help: 'host memory (default: sized to fit, hugetlb pools included)' },
    { name: 'cost-model', type: 'string', default: 'default', help: 'cost-model profile (name or JSON path) for modeled time' },
    { name: 'json', type: 'string', default: null, help: 'write the result JSON to this file' },
    { name: 'quiet', short: 'q', type: 'bool', default: false, help: 'print only the test lines (no view)' },
  ],
  check: checkConversionsFlags,
  run: runPrivateMemConversions,
};

/** main()'s option checks and test_mem_conversions()'s TEST_ASSERT on the slot size (exit 2). */
export function checkConversionsFlags(f: Record<string, unknown>): string[] {
  const path = f.attributes as AttrPath;
  if (f['mem-type'] === null) f['mem-type'] = path === 'gmem' ? 'shmem' : 'anonymous';
  if (path === 'gmem' && f['mem-type'] !== 'shmem') {
    throw new UsageError(`-s ${String(f['mem-type'])}: Testing in-place conversions, only shmem mem_type supported (with --attributes gmem shared memory is the guest_memfd, sized by --backing)`);
  }
  const l = conversionsLayout(f['mem-type'] as BackingSource, f.backing as GmemBacking, f['nr-vcpus'] as number, f['nr-memslots'] as number);
  if (l.slotSize * (f['nr-memslots'] as number) !== l.memfdSize || l.slotSize % PAGE_SIZE !== 0) {
    throw new UsageError(`The memfd size (0x${l.memfdSize.toString(16)}) needs to be cleanly divisible by the number of memslots (${f['nr-memslots'] as number}), in whole pages`);
  }
  return [];
}

/** A check that printed PASS or FAIL. */
interface Check {
  name: string;
  ok: boolean;
  detail: string;
}

/** A TEST_ASSERT of the test failed (guest or host side): the run stops as upstream's does. */
class TestAssertion extends Error {}

interface Ctx {
  io: ScenarioIo;
  host: Host;
  vm: Vm;
  ctx: ThreadCtx;
  path: AttrPath;
  src: BackingSource;
  fd: GuestMemfd;
  layout: ConversionsLayout;
  /** Host mapping of each memslot's shared memory (the 'vm' path), by slot index. */
  vmas: Vma[];
  hostChecks: number;
}

function hostSizing(src: BackingSource, backing: GmemBacking, path: AttrPath, l: ConversionsLayout): { memory: number; hugepages2m: number; hugepages1g: number } {
  let huge2m = 0;
  let huge1g = 0;
  let small = 0;
  // What each vCPU touches beyond hugetlb pools: its data rounded to 2M (THP folios), per copy.
  const touched = (l.memfdSize / l.perCpuSize) * 2 * SZ_2M;
  const add = (hugetlbOrder: number | null) => {
    if (hugetlbOrder === HostPage.kOrder1G) huge1g += l.memfdSize / 2 ** 30;
    else if (hugetlbOrder === HostPage.kOrder2M) huge2m += l.memfdSize / SZ_2M;
    else small += touched;
  };
  add(backing === 'hugetlb-1g' ? HostPage.kOrder1G : backing === 'hugetlb-2m' ? HostPage.kOrder2M : null);
  if (path === 'vm') add(isHugetlbBacking(src) ? backingPageOrder(src) : null);
  return { memory: huge1g * 2 ** 30 + huge2m * SZ_2M + small + 64 * 2 ** 20, hugepages2m: huge2m, hugepages1g: huge1g };
}

/** test_mem_conversions()'s setup: the VM, its vCPUs, the guest_memfd, the memslots and shared memory. */
function createConversionsVm(f: Record<string, unknown>, io: ScenarioIo): { c: Ctx; vcpus: Vcpu[] } {
  const path = f.attributes as AttrPath;
  const src = f['mem-type'] as BackingSource;
  const backing = f.backing as GmemBacking;
  const nrMemslots = f['nr-memslots'] as number;
  const l = conversionsLayout(src, backing, f['nr-vcpus'] as number, nrMemslots);
  const sizing = hostSizing(src, backing, path, l);
  const memory = (f['host-memory'] as number | null) ?? sizing.memory;
  const host = Host.create({ memory, hugepages2m: sizing.hugepages2m, hugepages1g: sizing.hugepages1g, stamps: true });
  const ctx: ThreadCtx = { metrics: new Metrics(costVector(loadCostModel(f['cost-model'] as string))), hostThread: host.thread() };
  const vm = Vm.create(host, 0, ctx, { type: KVM_X86_SW_PROTECTED_VM, attributes: path });
  vm.enableCap('KVM_CAP_EXIT_HYPERCALL', 1 << KVM_HC_MAP_GPA_RANGE);
  const vcpus: Vcpu[] = [];
  for (let i = 0; i < (f['nr-vcpus'] as number); i++) vcpus.push(vm.createVcpu());
  const fd = vm.createGuestMemfd({ size: l.memfdSize, backing, flags: path === 'gmem' ? GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED : 0 });
  const c: Ctx = { io, host, vm, ctx, path, src, fd, layout: l, vmas: [], hostChecks: 0 };
  for (let i = 0; i < nrMemslots; i++) {
    // vm_mem_add(): the 'vm' path mmaps -s for the slot's shared memory; on the 'gmem' path the
    // region's memory is the guest_memfd's own mapping (shared faults come from the file).
    let hva = 0;
    if (path === 'vm') {
      hva = vm.mmap({ size: l.slotSize, backing: src });
      c.vmas.push(vm.vmas[vm.vmas.length - 1]!);
    }
    vm.setUserMemoryRegion2({
      slot: BASE_DATA_SLOT + i, flags: KVM_MEM_GUEST_MEMFD, guestPhysAddr: BASE_DATA_GPA + l.slotSize * i, memorySize: l.slotSize,
      userspaceAddr: hva, guestMemfd: fd, guestMemfdOffset: l.slotSize * i,
    });
  }
  if (path === 'gmem') fd.mmap({ shared: true });
  return { c, vcpus };
}

/** What the run reports: the PASS/FAIL checks, per-range phases, stats snapshots, audit findings. */
class Report {
  readonly checks: Check[] = [];
  readonly phases: PhaseSummary[] = [];
  readonly stats: Record<string, StatsSnapshot> = {};
  readonly violations: AuditViolation[] = [];
  private wall0 = performance.now();
  private modeled0: number;

  constructor(private readonly c: Ctx) {
    this.modeled0 = c.ctx.metrics.t;
  }

  check(name: string, ok: boolean, detail: string): void {
    this.checks.push({ name, ok, detail });
    this.c.io.print(`  ${ok ? 'PASS' : 'FAIL'}: ${name}: ${detail}`);
  }

  /** The VM's audit now (every thread drained first), as a check; `onlyFailure`: no PASS line. */
  audit(name: string, guests: ConversionsGuest[], onlyFailure = false): void {
    const c = this.c;
    c.ctx.hostThread.drain();
    const a = audit(c.host, [c.vm]);
    this.violations.push(...a.violations);
    if (a.ok && onlyFailure) return;
    this.check(name, a.ok, a.ok
      ? `audit clean, ${guests.reduce((n, x) => n + x.checks, 0)} guest and ${c.hostChecks} host checks so far`
      : `${a.violations.length} audit violation(s), first: ${a.violations[0]!.kind}: ${a.violations[0]!.detail}`);
  }

  /** One test range done on every vCPU: audit, timings in both clocks, stats. */
  closePhase(name: string, guests: ConversionsGuest[]): void {
    const c = this.c;
    this.audit(name.replace(/^.*: /, ''), guests);
    this.phases.push({ name, wallNs: Math.round((performance.now() - this.wall0) * 1e6), modeledNs: Math.round(c.ctx.metrics.t - this.modeled0) });
    this.stats[name] = statsSnapshot([c.vm]);
    this.wall0 = performance.now();
    this.modeled0 = c.ctx.metrics.t;
  }
}

export async function runPrivateMemConversions(f: Record<string, unknown>, io: ScenarioIo): Promise<RunResult> {
  if (f['mem-type'] === null) checkConversionsFlags(f);
  const seed = f.seed as number;
  io.print(`Random seed: 0x${seed.toString(16)}`);
  const { c, vcpus } = createConversionsVm(f, io);
  const start = snapshot();
  const { vm, layout: l } = c;
  const guests = vcpus.map((v, i) => new ConversionsGuest(v, BASE_DATA_GPA + i * l.perCpuSize, c.path === 'gmem'));
  const rep = new Report(c);
  let failure: string | null = null;
  try {
    runGuests(c, vcpus, guests, rep);
  } catch (e) {
    if (!(e instanceof TestAssertion)) throw e;
    failure = e.message;
    io.print('==== Test Assertion Failure ====');
    io.print(`  ${e.message}`);
  }
  rep.audit('audit at the end', guests, true);
  const failed = rep.checks.filter((x) => !x.ok).length + (failure !== null ? 1 : 0);
  const guestChecks = guests.reduce((n, x) => n + x.checks, 0);
  const zeroChecks = guests.reduce((n, x) => n + x.zeroChecks, 0);
  io.print(failed === 0
    ? `All ${rep.checks.length} checks passed (${guestChecks} guest and ${c.hostChecks} host page comparisons)`
    : `${failed} of ${rep.checks.length + (failure !== null ? 1 : 0)} checks FAILED`);
  const metrics: Record<string, number | string | boolean> = {
    checks: rep.checks.length, checksFailed: failed, guestChecks, zeroChecks, hostChecks: c.hostChecks,
    perCpuSize: l.perCpuSize, memfdSize: l.memfdSize, slotSize: l.slotSize,
  };
  for (const [k, v] of Object.entries(gmemCounters(c.fd.file))) metrics[`gmem.${k}`] = v;
  if (failure !== null) metrics.failure = failure;
  const result: RunResult = {
    schema: kResultSchema, status: 'ok', scenario: 'private-mem-conversions',
    config: { ...f }, seed, host: hostInfo(start, 1), phases: rep.phases, histograms: {}, stats: rep.stats,
    counters: countersToRecord(c.ctx.metrics.c), audit: { ok: rep.violations.length === 0, violations: rep.violations.slice(0, 50) },
    memory: memoryReport(c.host, [vm]), metrics, output: [],
  };
  vm.destroy();
  return result;
}

/**
 * The selftest's per-vCPU __test_mem_conversions() loops, round-robin on this thread, one exit
 * at a time: vCPU i runs until it exits to the host, which handles the exit on that vCPU's
 * thread. Every vCPU runs the same guest code, so they reach each ucall in lockstep.
 */
function runGuests(c: Ctx, vcpus: Vcpu[], guests: ConversionsGuest[], rep: Report): void {
  const vm = c.vm;
  const done = guests.map(() => false);
  const testOf = guests.map(() => '');
  while (done.some((d) => !d)) {
    for (let i = 0; i < guests.length; i++) {
      if (done[i]) continue;
      const g = guests[i]!;
      const vcpu = vcpus[i]!;
      vcpu.run(g, 2 ** 30, null);
      if (vcpu.exitReason === KvmExit.KVM_EXIT_HYPERCALL) {
        vm.asVcpuThread(vcpu, () => handleExitHypercall(c, vcpu));
        continue;
      }
      if (vcpu.exitReason !== 0) throw new TestAssertion(`Wanted KVM_EXIT_IO, got exit reason: ${vcpu.exitReason}`);
      const u = g.ucall;
      if (u === null) throw new TestAssertion(`vCPU ${vcpu.id}: KVM_RUN returned without an exit`);
      switch (u.kind) {
        case 'abort':
          throw new TestAssertion(u.message);
        case 'done':
          done[i] = true;
          break;
        case 'sync':
          vm.asVcpuThread(vcpu, () => handleSync(c, u));
          break;
        case 'probe':
          probeRange(c, g, u, (n, ok, d) => rep.check(n, ok, d));
          rep.stats[`${testOf[i]}: ${rangeName(u.range)}: vCPU ${vcpu.id} after the private write`] = statsSnapshot([vm]);
          break;
        case 'test':
          testOf[i] = u.name;
          if (i === 0) c.io.print(`Testing ${u.name}`);
          break;
        case 'phase':
          // The last vCPU to finish a test range closes the phase (the others wait at it).
          if (i === guests.length - 1) rep.closePhase(u.name, guests);
          break;
      }
      g.resume();
    }
  }
}

/**
 * handle_exit_hypercall(): optional vm_guest_mem_fallocate() (PUNCH_HOLE when mapping shared,
 * allocate when private), then the attributes through the VM's path; ret 0.
 */
function handleExitHypercall(c: Ctx, vcpu: Vcpu): void {
  const run = vcpu.hypercall;
  if (run.nr !== KVM_HC_MAP_GPA_RANGE) throw new TestAssertion(`Wanted MAP_GPA_RANGE (${KVM_HC_MAP_GPA_RANGE}), got '${run.nr}'`);
  const gpa = run.args[0]!;
  const size = run.args[1]! * PAGE_SIZE;
  const setAttributes = (run.args[2]! & MAP_GPA_SET_ATTRIBUTES) !== 0;
  const mapShared = (run.args[2]! & MAP_GPA_SHARED) !== 0;
  const doFallocate = (run.args[2]! & MAP_GPA_DO_FALLOCATE) !== 0;
  const t = c.ctx.hostThread;
  if (doFallocate) vmGuestMemFallocate(c, gpa, size, mapShared);
  if (setAttributes) {
    const attributes = mapShared ? 0 : KVM_MEMORY_ATTRIBUTE_PRIVATE;
    if (c.path === 'vm') {
      c.vm.setMemoryAttributes({ address: gpa, size, attributes });
    } else {
      // vm_mem_set_memory_attributes() -> gmem_set_memory_attributes(): one guest_memfd backs
      // every slot at offset gpa - BASE_DATA_GPA, so the range is one file range.
      const err = c.fd.setMemoryAttributes2(t, { offset: gpa - BASE_DATA_GPA, size, attributes });
      if (err !== -1) throw new TestAssertion(`KVM_SET_MEMORY_ATTRIBUTES2 failed: EAGAIN, error_offset 0x${err.toString(16)}`);
    }
  }
  run.ret = 0;
}

/** vm_guest_mem_fallocate(): fallocate() each memslot's part of [gpa, gpa + size) on its guest_memfd. */
function vmGuestMemFallocate(c: Ctx, gpa: number, size: number, punchHole: boolean): void {
  const mode = FALLOC_FL_KEEP_SIZE | (punchHole ? FALLOC_FL_PUNCH_HOLE : 0);
  let at = gpa;
  while (at < gpa + size) {
    const slot = slotOf(c, at);
    const end = Math.min(gpa + size, slot.endGfn * PAGE_SIZE);
    c.fd.fallocate(c.ctx.hostThread, mode, slot.gmemPgoff * PAGE_SIZE + (at - slot.baseGfn * PAGE_SIZE), end - at);
    at = end;
  }
}

function slotOf(c: Ctx, gpa: number): Memslot {
  const s = c.vm.lookupMemslot(gpa / PAGE_SIZE);
  if (s === null) fail('EFAULT', `no memslot at gpa 0x${gpa.toString(16)}`);
  return s;
}

/**
 * UCALL_SYNC: "In all cases, the host should observe the shared data" (memcmp_h() through
 * addr_gpa2hva()), or, in place, SIGBUS on a private page; for SYNC_SHARED write the new pattern.
 */
function handleSync(c: Ctx, u: Extract<Ucall, { kind: 'sync' }>): void {
  for (let o = 0; o < u.size; o += PAGE_SIZE) {
    const gpa = u.gpa + o;
    if (c.path === 'gmem' && u.sync === SyncKind.SYNC_PRIVATE) {
      const r = c.fd.hostAccess(c.ctx.hostThread, gpa - BASE_DATA_GPA, false);
      if (r !== 'SIGBUS') throw new TestAssertion(`Expected SIGBUS on the host's read of private gpa 0x${gpa.toString(16)}, it read pfn 0x${r.toString(16)}`);
    } else {
      const got = hostRead(c, gpa);
      if (got !== u.current) throw new TestAssertion(`Host expected 0x${u.current.toString(16)} at gpa 0x${gpa.toString(16)}, got 0x${got.toString(16)}`);
    }
    c.hostChecks++;
    if (u.sync === SyncKind.SYNC_SHARED) hostWrite(c, gpa, u.next);
  }
}

/** The host's read of a page of shared memory: the stamp of the frame its mapping holds (0 if none). */
function hostRead(c: Ctx, gpa: number): number {
  if (c.path === 'gmem') {
    const r = c.fd.hostAccess(c.ctx.hostThread, gpa - BASE_DATA_GPA, false);
    if (r === 'SIGBUS') throw new TestAssertion(`host read of gpa 0x${gpa.toString(16)}: SIGBUS (the page is private)`);
    return c.host.frames.readStampIteration(r);
  }
  const [vma, idx] = hvaOf(c, gpa);
  const pfn = vma.lookup(idx);
  return pfn < 0 ? 0 : c.host.frames.readStampIteration(pfn);
}

function hostWrite(c: Ctx, gpa: number, value: number): void {
  if (c.path === 'gmem') {
    if (c.fd.hostAccess(c.ctx.hostThread, gpa - BASE_DATA_GPA, true, value) === 'SIGBUS') throw new TestAssertion(`host write of gpa 0x${gpa.toString(16)}: SIGBUS`);
    return;
  }
  const [vma, idx] = hvaOf(c, gpa);
  const pfn = hostFault(c.ctx.hostThread, vma, idx);
  if (pfn < 0) throw new KvmError('ENOMEM', `the host ran out of memory populating gpa 0x${gpa.toString(16)}'s shared page: give more --host-memory`);
  c.host.frames.writeStamp(pfn, 0xfff, value);
}

/** addr_gpa2hva(): the shared mapping's VMA and page index of gpa. */
function hvaOf(c: Ctx, gpa: number): [Vma, number] {
  const i = Math.floor((gpa - BASE_DATA_GPA) / c.layout.slotSize);
  const slot = slotOf(c, gpa);
  return [c.vmas[i]!, slot.vmaOffset + (gpa / PAGE_SIZE - slot.baseGfn)];
}

/**
 * After a one-page range's private write and the guest's loads: every 2M page of the vCPU's
 * data that a memslot wholly contains is flagged mixed in lpage_info exactly when its gfns'
 * attributes differ, and no load went through a huge mapping of a mixed one. For the (2M, 4K)
 * range also: the private page was mapped 4K, the uniform 2M page below it huge if its backing
 * allows (a 2M-or-larger folio behind it, and gfn and hva / file offset equally aligned).
 */
function probeRange(c: Ctx, g: ConversionsGuest, u: Extract<Ucall, { kind: 'probe' }>, check: (n: string, ok: boolean, d: string) => void): void {
  const vm = c.vm;
  const base = g.baseGpa / PAGE_SIZE;
  const bad: string[] = [];
  const mixedOf = new Map<number, boolean>();
  for (let hp = base; hp < base + c.layout.perCpuSize / PAGE_SIZE; hp += 512) {
    const slot = vm.lookupMemslot(hp);
    if (slot === null || hp < slot.baseGfn || hp + 512 > slot.endGfn) continue;
    const p0 = kvmMemIsPrivate(vm, slot, hp);
    let mixed = false;
    for (let gfn = hp + 1; gfn < hp + 512 && !mixed; gfn++) mixed = kvmMemIsPrivate(vm, slot, gfn) !== p0;
    const flag = (Atomics.load(slot.lpage[0]!, gfnToIndex(hp, slot.baseGfn, PgLevel.PG_LEVEL_2M)) & Lpage.KVM_LPAGE_MIXED_FLAG) !== 0;
    mixedOf.set(hp, mixed);
    if (flag !== mixed) bad.push(`2M page at gpa 0x${(hp * PAGE_SIZE).toString(16)} is ${mixed ? '' : 'not '}mixed, its KVM_LPAGE_MIXED_FLAG is ${flag ? 'set' : 'clear'}`);
  }
  for (const ld of g.loads) {
    if (ld.huge && mixedOf.get(ld.gfn - (ld.gfn % 512)) === true) bad.push(`gpa 0x${(ld.gfn * PAGE_SIZE).toString(16)} was read through a huge mapping of a mixed 2M page`);
  }
  const vcpuName = `vCPU ${g.vcpu.id}`;
  const r = kTestRanges[u.range]!;
  let detail = `${mixedOf.size} 2M page(s) of its data, ${[...mixedOf.values()].filter((m) => m).length} mixed, mixed flags and ${g.loads.length} load levels agree`;
  if (r.offset === SZ_2M && r.size === PAGE_SIZE) {
    const priv = g.loads.find((x) => x.gfn === u.gpa / PAGE_SIZE);
    const below = g.loads.filter((x) => x.gfn >= base && x.gfn < base + 512);
    const wantHuge = uniformCanBeHuge(c, base);
    if (priv === undefined || priv.huge) bad.push(`the private page at gpa 0x${u.gpa.toString(16)} was ${priv === undefined ? 'not read' : 'mapped huge'}, want 4K`);
    const hugeBelow = below.filter((x) => x.huge).length;
    if (below.length !== 512 || hugeBelow !== (wantHuge ? 512 : 0)) bad.push(`${hugeBelow} of ${below.length} loads of the uniform 2M page at gpa 0x${g.baseGpa.toString(16)} went through a huge mapping, want ${wantHuge ? 512 : 0} of 512`);
    detail += `; private page 4K, uniform 2M below it ${wantHuge ? 'huge' : '4K (its backing has no 2M folio there)'}`;
  }
  const name = `${rangeName(u.range)} ${vcpuName} mixed flags and levels`;
  check(name, bad.length === 0, bad.length === 0 ? detail : bad.slice(0, 3).join('; '));
}

/** Whether a shared fault may map the 2M page at gfn `hp` huge: backing folio and alignment. */
function uniformCanBeHuge(c: Ctx, hp: number): boolean {
  const slot = c.vm.lookupMemslot(hp)!;
  if (hp < slot.baseGfn || hp + 512 > slot.endGfn) return false;
  if (c.path === 'gmem') {
    const off = slot.gmemPgoff + (hp - slot.baseGfn);
    return ((slot.baseGfn ^ slot.gmemPgoff) & 511) === 0 && c.fd.file.folioOrder(off) >= HostPage.kOrder2M;
  }
  return ((slot.baseGfn ^ (slot.userspaceAddr / PAGE_SIZE)) & 511) === 0 && backingPageOrder(c.src) >= HostPage.kOrder2M;
}
