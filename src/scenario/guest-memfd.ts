/**
 * Scenario `guest-memfd`, after tools/testing/selftests/kvm/guest_memfd_test.c: the file
 * semantics of KVM_CREATE_GUEST_MEMFD's fd, per flag set the VM supports, and a guest round
 * trip. Output is kselftest's TAP (`TAP version 13`, `1..N`, `ok N name` / `not ok N name`,
 * `# Totals: ...`), one test point per upstream test function per flag set, so every check is
 * printed; a failed TEST_ASSERT prints its sentence as a `#` line before its `not ok`. Any
 * `not ok` makes the run fail (exit 1).
 *
 * What runs (upstream's __test_guest_memfd(), per flag set 0, MMAP, MMAP|INIT_SHARED as
 * KVM_CAP_GUEST_MEMFD_FLAGS on the VM allows; test_guest_memfd_flags() once before):
 *   create_guest_memfd_multiple  each fd its own inode, st_size as asked
 *   create_guest_memfd_invalid_sizes  sizes that are not page aligned (and for hugetlb backings
 *                                not a multiple of the huge page) fail EINVAL
 *   file_read_write              read/write/pread/pwrite fail
 *   mmap_supported (INIT_SHARED) stamps written through the mapping read back; PUNCH_HOLE of the
 *                                first page zeroes it and only it
 *   fault_overflow (INIT_SHARED) a mapping 4x the file: pages past the end SIGBUS (counted)
 *   numa_allocation, collapse (INIT_SHARED)  mbind placement honoured (folio nodes in the frame
 *                                table), MADV_COLLAPSE EINVAL and no huge folio after re-fault
 *   fault_private (MMAP only)    every host access SIGBUSes (counted), nothing is allocated
 *   mmap_cow, mbind (MMAP)       MAP_PRIVATE fails EINVAL; policies stored, unknown mode EINVAL
 *   mmap_not_supported (no MMAP) mmap fails ENODEV
 *   file_size, fallocate, invalid_punch_hole  st_blksize = page size; KEEP_SIZE required;
 *                                page-aligned offset and len (EINVAL); past-the-end rules
 * then test_guest_memfd_guest(): a default VM, slot 1 at GPA 4G bound with KVM_MEM_GUEST_MEMFD
 * to an MMAP|INIT_SHARED file; the host stamps the pages through its mapping, the vCPU loads
 * them (its EPT must translate to the frames holding the host's stamps) and stores its own, and
 * the host reads the guest's stamps back through a new mapping. Last, the audit.
 *
 * `--backing` picks the folio size; upstream's page_size then stands for the folio size (4K,
 * 2M, 1G) in the test sizes and offsets, as the hugetlb series' runs of this test do. The host
 * has 2 NUMA nodes and hugetlb pools sized for the 4-folio files. Two things the model does not
 * have: a per-range shared mempolicy (the file keeps one policy, so numa_allocation sets each
 * range's policy right before the range's first touch, where upstream's per-range policy takes
 * effect) and MPOL_DEFAULT / get_mempolicy() (mbind reads the file's policy back instead).
 * Everything runs on the main thread; the vCPU runs in process.
 */
import { Host, HostPage, type HostThread } from '../host/host.js';
import { KvmError } from '../host/errno.js';
import { FrameLayout } from '../host/frame-table.js';
import { Vm, type ThreadCtx } from '../kvm/vm.js';
import { audit } from '../kvm/audit.js';
import { KVM_MEM_GUEST_MEMFD } from '../kvm/memslot.js';
import { KVM_X86_DEFAULT_VM, KVM_X86_SW_PROTECTED_VM, kvmGmemSupportedFlags, type GuestMemfd } from '../kvm/guest_memfd.js';
import { eptWalk, walkOut } from '../kvm/mmu/tdp/walk.js';
import { Metrics, countersToRecord } from '../metrics/counters.js';
import { costVector, loadCostModel } from '../metrics/cost-model.js';
import {
  FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, GUEST_MEMFD_FLAG_INIT_SHARED, GUEST_MEMFD_FLAG_MMAP, GmemWord,
  gmemBackingOrder, kGmemBackings, type GmemBacking,
} from '../gmem/gmem-file.js';
import type { AccessSource } from '../kvm/vcpu.js';
import { UsageError, givenFlags } from './flags.js';
import { memoryReport, statsSnapshot } from './assemble.js';
import { hostInfo, snapshot } from './host-info.js';
import { kResultSchema, type RunResult } from './result.js';
import type { ScenarioDef, ScenarioIo } from './scenario.js';

const kPage = HostPage.kPageSize;
const kGiB = 2 ** 30;
/** upstream's gmem_test(): files of page_size * 4. */
const kTestUnits = 4;
/** test_guest_memfd_guest(): gpa = SZ_4G, slot 1 (above slot 0 and the PCI hole). */
const kGuestGpa = 4 * kGiB;
const kGuestSlot = 1;
/** The values the test memsets: 0xaa by the host, 0xff by the guest (frame stamps here). */
const kHostVal = 0xaa;
const kGuestVal = 0xff;
/** Host NUMA nodes: numa_allocation and mbind need a multi-node system (upstream returns early on one). */
const kNodes = 2;

/** A failed TEST_ASSERT: its sentence ends the test point (`not ok`). */
export class GmemAssert extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'GmemAssert';
  }
}

function check(ok: boolean, message: string): asserts ok {
  if (!ok) throw new GmemAssert(message);
}

/** The call fails with `errno` (a KvmError), as `ret == -1 && errno == E...` upstream. */
function checkErrno(errno: string, fn: () => unknown, message: string): void {
  try {
    fn();
  } catch (e) {
    if (!(e instanceof KvmError)) throw e;
    check(e.errno === errno, `${message} (got ${e.errno}: ${e.message})`);
    return;
  }
  throw new GmemAssert(`${message} (it succeeded)`);
}

/** The call succeeds (`!ret`), else the KVM errno is the assertion's reason. */
function checkOk<T>(fn: () => T, message: string): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof KvmError) throw new GmemAssert(`${message} (${e.errno}: ${e.message})`);
    throw e;
  }
}

/** What the tests run against: the host, the VMM's thread, the VM, the folio size. */
export interface GmemEnv {
  host: Host;
  t: HostThread;
  vm: Vm;
  backing: GmemBacking;
  /** The folio size in bytes: what upstream's page_size stands for in sizes and offsets. */
  unit: number;
}

export type GmemFdTest = (e: GmemEnv, fd: GuestMemfd, size: number) => void;
export type GmemVmTest = (e: GmemEnv, flags: number) => void;

function create(e: GmemEnv, size: number, flags: number): GuestMemfd {
  return checkOk(() => e.vm.createGuestMemfd({ size, flags, backing: e.backing }), `guest_memfd() of size 0x${size.toString(16)} with flags 0x${flags.toString(16)} should succeed`);
}

/**
 * close(fd) of a file no slot is bound to: its last reference goes, every folio (stranded pieces
 * too) goes back to the host. Checked: the file owns nothing afterwards.
 */
export function closeGmem(e: GmemEnv, fd: GuestMemfd): void {
  fd.file.truncateAll(e.t);
  check(fd.file.ownedPages() === 0, `close(): guest_memfd ${fd.file.ino} still owns ${fd.file.ownedPages()} pages`);
}

/** READ_ONCE(mem[offset]): the page's stamp through the host mapping, or 'SIGBUS'. */
function hostRead(e: GmemEnv, fd: GuestMemfd, offset: number): number | 'SIGBUS' {
  const pfn = fd.hostAccess(e.t, offset, false);
  return pfn === 'SIGBUS' ? pfn : e.host.frames.readStampIteration(pfn);
}

/** memset(mem + offset, val, len), one stamp per 4K page; stops at the first SIGBUS (its offset), else -1. */
function hostMemset(e: GmemEnv, fd: GuestMemfd, offset: number, len: number, val: number): number {
  for (let o = offset; o < offset + len; o += kPage) if (fd.hostAccess(e.t, o, true, val) === 'SIGBUS') return o;
  return -1;
}

/** Every page of [offset, offset + len) reads `val` through the mapping. */
function checkReads(e: GmemEnv, fd: GuestMemfd, offset: number, len: number, val: number, what: string): void {
  for (let o = offset; o < offset + len; o += kPage) {
    const v = hostRead(e, fd, o);
    check(v === val, `${what}: mem[0x${o.toString(16)}] reads ${v === 'SIGBUS' ? 'SIGBUS' : `0x${v.toString(16)}`}, expected 0x${val.toString(16)}`);
  }
}

function nodeOf(e: GmemEnv, pfn: number): number {
  return (e.host.frames.meta(pfn) >>> FrameLayout.kMetaNodeShift) & FrameLayout.kMetaNodeMask;
}

/** move_pages(status): the node of the folio behind each offset (-1: not allocated). */
function folioNodes(e: GmemEnv, fd: GuestMemfd, offsets: number[]): number[] {
  return offsets.map((o) => {
    const pfn = fd.file.lookup(o / kPage);
    return pfn < 0 ? -1 : nodeOf(e, pfn);
  });
}

const kPunch = FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE;

/** The tests of one fd (upstream's test_*(fd, total_size)). */
export const kGmemFdTests: Record<string, GmemFdTest> = {
  file_read_write(_e, fd) {
    // pread/pwrite go to the same missing read_iter/write_iter as read/write.
    for (const [op, fn] of [['read', () => fd.read()], ['write', () => fd.write()], ['pread', () => fd.read()], ['pwrite', () => fd.write()]] as const) {
      checkErrno('EINVAL', fn, `${op} on a guest_mem fd should fail`);
    }
  },

  mmap_supported(e, fd, size) {
    checkOk(() => fd.mmap({ shared: true }), 'mmap(MAP_SHARED) should succeed');
    check(hostMemset(e, fd, 0, size, kHostVal) === -1, 'memset of the whole mapping should not SIGBUS');
    checkReads(e, fd, 0, size, kHostVal, 'after memset');
    checkOk(() => fd.fallocate(e.t, kPunch, 0, e.unit), 'fallocate the first page should succeed.');
    checkReads(e, fd, 0, e.unit, 0, 'after PUNCH_HOLE of the first page');
    checkReads(e, fd, e.unit, size - e.unit, kHostVal, 'after PUNCH_HOLE of the first page');
    hostMemset(e, fd, 0, e.unit, kHostVal);
    checkReads(e, fd, 0, size, kHostVal, 'after re-filling the first page');
    fd.munmap(0, size);
  },

  fault_overflow(e, fd, size) {
    faultSigbus(e, fd, size, size * 4);
  },

  fault_private(e, fd, size) {
    faultSigbus(e, fd, 0, size);
    check(fd.file.counter(GmemWord.kAllocated) === 0, `SIGBUSed accesses allocated ${fd.file.counter(GmemWord.kAllocated)} pages`);
  },

  numa_allocation(e, fd) {
    const pages = [0, 1, 2, 3].map((i) => i * e.unit);
    checkOk(() => fd.mmap({ shared: true }), 'mmap(MAP_SHARED) should succeed');
    // Set NUMA policy after allocation: the folio already there stays where it is.
    fd.mbind({ mode: 'bind', node: 0 });
    hostMemset(e, fd, 0, kPage, kHostVal);
    fd.mbind({ mode: 'bind', node: 1 });
    check(folioNodes(e, fd, [0])[0] === 0, `page 0 allocated under MPOL_BIND node 0 moved to node ${folioNodes(e, fd, [0])[0]} after a later mbind`);
    fd.fallocate(e.t, kPunch, 0, e.unit);
    // Set NUMA policy before allocation: pages 0-1 bound to node 1, 2-3 to node 0.
    const placeThenCheck = (first: number, second: number) => {
      fd.mbind({ mode: 'bind', node: first });
      for (const p of pages.slice(0, 2)) hostMemset(e, fd, p, kPage, kHostVal);
      fd.mbind({ mode: 'bind', node: second });
      for (const p of pages.slice(2)) hostMemset(e, fd, p, kPage, kHostVal);
      const got = folioNodes(e, fd, pages);
      const want = [first, first, second, second];
      for (let i = 0; i < 4; i++) check(got[i] === want[i], `Expected page ${i} on node ${want[i]}, got it on node ${got[i]}`);
    };
    placeThenCheck(1, 0);
    checkOk(() => fd.fallocate(e.t, kPunch, 0, kTestUnits * e.unit), 'PUNCH_HOLE of all pages should succeed');
    placeThenCheck(0, 1);
    fd.munmap(0, kTestUnits * e.unit);
  },

  collapse(e, fd, size) {
    checkOk(() => fd.mmap({ shared: true }), 'mmap(MAP_SHARED) should succeed');
    // Reads populate the mapping without dirtying (upstream reads every page).
    for (let o = 0; o < size; o += kPage) check(hostRead(e, fd, o) === 0, `a new page reads 0 (mem[0x${o.toString(16)}])`);
    const order = fd.file.folioOrder(0);
    // "collapsing folios must not be supported to avoid mapping beyond shared ranges".
    checkErrno('EINVAL', () => fd.madviseCollapse(), 'MADV_COLLAPSE should fail with EINVAL');
    fd.munmap(0, size);
    check(hostRead(e, fd, 0) === 0, 'a read after MADV_DONTNEED should work');
    check(fd.file.folioOrder(0) === order, `re-fault after MADV_COLLAPSE found a folio of order ${fd.file.folioOrder(0)}, was ${order} (nothing may collapse)`);
    fd.munmap(0, size);
  },

  mmap_cow(_e, fd) {
    checkErrno('EINVAL', () => fd.mmap({ shared: false }), 'Copy-on-write not allowed by guest_memfd.');
  },

  mbind(e, fd, size) {
    checkOk(() => fd.mmap({ shared: true }), 'mmap(MAP_SHARED) should succeed');
    for (const p of [{ mode: 'interleave', node: 0 }, { mode: 'bind', node: 0 }] as const) {
      checkOk(() => fd.mbind(p), `mbind(MPOL_${p.mode.toUpperCase()}, node 0) should succeed`);
      const got = fd.file.policy();
      check(got.mode === p.mode && got.node === p.node, `Wanted MPOL_${p.mode.toUpperCase()} on node ${p.node}, got ${got.mode} on node ${got.node}`);
    }
    checkErrno('EINVAL', () => fd.mbind({ mode: 999 as unknown as 'bind', node: 0 }), 'mbind with invalid policy should fail with EINVAL');
    checkErrno('EINVAL', () => fd.mbind({ mode: 'bind', node: kNodes }), `mbind to node ${kNodes} (not online) should fail with EINVAL`);
    // Interleave is honoured at allocation (fallocate: a private file's pages cannot be touched
    // by the host): folios in file order alternate nodes.
    fd.mbind({ mode: 'interleave', node: 0 });
    checkOk(() => fd.fallocate(e.t, FALLOC_FL_KEEP_SIZE, 0, size), 'fallocate of the file should succeed');
    const offsets = [0, 1, 2, 3].map((i) => i * e.unit);
    const got = folioNodes(e, fd, offsets);
    for (let i = 0; i < 4; i++) check(got[i] === i % kNodes, `MPOL_INTERLEAVE: page ${i} on node ${got[i]}, expected ${i % kNodes}`);
    fd.munmap(0, size);
  },

  mmap_not_supported(_e, fd, size) {
    checkErrno('ENODEV', () => fd.mmap({ shared: true, size: kPage }), 'mmap of one page should fail without GUEST_MEMFD_FLAG_MMAP');
    checkErrno('ENODEV', () => fd.mmap({ shared: true, size }), 'mmap of the file should fail without GUEST_MEMFD_FLAG_MMAP');
  },

  file_size(_e, fd, size) {
    const st = checkOk(() => fd.stat(), 'fstat should succeed');
    check(st.st_size === size, `st_size ${st.st_size}, expected ${size}`);
    check(st.st_blksize === kPage, `st_blksize ${st.st_blksize}, expected the page size ${kPage}`);
  },

  fallocate(e, fd, size) {
    const u = e.unit;
    checkOk(() => fd.fallocate(e.t, FALLOC_FL_KEEP_SIZE, 0, size), 'fallocate with aligned offset and size should succeed');
    checkErrno('EINVAL', () => fd.fallocate(e.t, kPunch, u - 1, u), 'fallocate with unaligned offset should fail');
    checkErrno('EINVAL', () => fd.fallocate(e.t, FALLOC_FL_KEEP_SIZE, size, u), 'fallocate beginning at total_size should fail');
    checkErrno('EINVAL', () => fd.fallocate(e.t, FALLOC_FL_KEEP_SIZE, size + u, u), 'fallocate beginning after total_size should fail');
    checkOk(() => fd.fallocate(e.t, kPunch, size, u), 'fallocate(PUNCH_HOLE) at total_size should succeed');
    checkOk(() => fd.fallocate(e.t, kPunch, size + u, u), 'fallocate(PUNCH_HOLE) after total_size should succeed');
    checkErrno('EINVAL', () => fd.fallocate(e.t, kPunch, u, u - 1), 'fallocate with unaligned size should fail');
    checkOk(() => fd.fallocate(e.t, kPunch, u, u), 'fallocate(PUNCH_HOLE) with aligned offset and size should succeed');
    check(fd.file.lookup(u / kPage) < 0, 'the punched page is still in the file');
    checkOk(() => fd.fallocate(e.t, FALLOC_FL_KEEP_SIZE, u, u), 'fallocate to restore punched hole should succeed');
    check(fd.file.counter(GmemWord.kAllocated) === size / kPage, `after the restore ${fd.file.counter(GmemWord.kAllocated)} pages are allocated, expected ${size / kPage}`);
    // kvm_gmem_fallocate(): the size is fixed, so KEEP_SIZE is required; other modes are not supported.
    checkErrno('EOPNOTSUPP', () => fd.fallocate(e.t, 0, 0, u), 'fallocate without FALLOC_FL_KEEP_SIZE should fail with EOPNOTSUPP');
    checkErrno('EOPNOTSUPP', () => fd.fallocate(e.t, FALLOC_FL_PUNCH_HOLE, 0, u), 'PUNCH_HOLE without FALLOC_FL_KEEP_SIZE should fail with EOPNOTSUPP');
    checkErrno('EOPNOTSUPP', () => fd.fallocate(e.t, FALLOC_FL_KEEP_SIZE | 0x08, 0, u), 'fallocate(FALLOC_FL_COLLAPSE_RANGE) should fail with EOPNOTSUPP');
  },

  invalid_punch_hole(e, fd) {
    const u = e.unit;
    const cases: [number, number][] = [[0, 1], [0, u - 1], [0, u + 1], [1, 1], [1, u - 1], [1, u], [1, u + 1], [u, 1], [u, u - 1], [u, u + 1]];
    for (const [offset, len] of cases) {
      checkErrno('EINVAL', () => fd.fallocate(e.t, kPunch, offset, len), `PUNCH_HOLE with !PAGE_SIZE offset (${offset.toString(16)}) and/or length (${len.toString(16)}) should fail`);
    }
  },
};

/**
 * test_fault_sigbus(): map `mapSize` bytes; a memset of it SIGBUSes at `accessible` (the end of
 * the file, or 0 for a private file), so does a read there; the pages before it read back.
 * Each SIGBUS is counted in the file.
 */
function faultSigbus(e: GmemEnv, fd: GuestMemfd, accessible: number, mapSize: number): void {
  checkOk(() => fd.mmap({ shared: true, size: mapSize }), 'mmap(MAP_SHARED) should succeed');
  const before = fd.file.counter(GmemWord.kSigbus);
  const at = hostMemset(e, fd, 0, mapSize, kHostVal);
  check(at === accessible, at < 0 ? 'memset of the mapping should SIGBUS' : `memset SIGBUSed at 0x${at.toString(16)}, expected 0x${accessible.toString(16)}`);
  check(hostRead(e, fd, accessible) === 'SIGBUS', `READ_ONCE(mem[0x${accessible.toString(16)}]) should SIGBUS`);
  const sigbus = fd.file.counter(GmemWord.kSigbus) - before;
  check(sigbus === 2, `the file counted ${sigbus} SIGBUS, expected 2`);
  checkReads(e, fd, 0, accessible, kHostVal, 'the accessible part');
  fd.munmap(0, Math.min(mapSize, fd.size));
}

/** The VM-level tests (upstream's test_create_guest_memfd_*(vm, flags), test_guest_memfd_flags(vm)). */
export const kGmemVmTests: Record<string, GmemVmTest> = {
  create_guest_memfd_multiple(e) {
    const fd1 = create(e, e.unit, 0);
    check(fd1.stat().st_size === e.unit, 'memfd st_size should match requested size');
    const fd2 = create(e, e.unit * 2, 0);
    check(fd2.stat().st_size === e.unit * 2, 'second memfd st_size should match requested size');
    check(fd1.stat().st_size === e.unit, 'first memfd st_size should still match requested size');
    check(fd1.stat().st_ino !== fd2.stat().st_ino, `different memfd should have different inode numbers (both ${fd1.stat().st_ino})`);
    closeGmem(e, fd2);
    closeGmem(e, fd1);
  },

  create_guest_memfd_invalid_sizes(e, flags) {
    for (let size = 1; size < kPage; size++) {
      checkErrno('EINVAL', () => e.vm.createGuestMemfd({ size, flags, backing: e.backing }), `guest_memfd() with non-page-aligned page size '0x${size.toString(16)}' should fail with EINVAL`);
    }
    if (e.backing !== 'hugetlb-2m' && e.backing !== 'hugetlb-1g') return;
    // A hugetlb file is sized in huge pages: every page multiple below one, and around the next.
    // (For 1G, a stride through the 262143 multiples below it.)
    const step = e.backing === 'hugetlb-1g' ? 4093 * kPage : kPage;
    const sizes: number[] = [];
    for (let size = kPage; size < e.unit; size += step) sizes.push(size);
    sizes.push(e.unit - kPage, e.unit + kPage, 2 * e.unit - kPage);
    for (const size of sizes) {
      checkErrno('EINVAL', () => e.vm.createGuestMemfd({ size, flags, backing: e.backing }), `${e.backing} guest_memfd() of size '0x${size.toString(16)}' (not a multiple of the huge page) should fail with EINVAL`);
    }
  },

  guest_memfd_flags(e) {
    const valid = kvmGmemSupportedFlags(e.vm);
    // flags is a __u64: every bit, 0 to 63 (2 ** bit is exact in a double).
    for (let bit = 0; bit < 64; bit++) {
      const flag = 2 ** bit;
      if (bit < 31 && (flag & valid) !== 0) closeGmem(e, create(e, e.unit, flag));
      else checkErrno('EINVAL', () => e.vm.createGuestMemfd({ size: e.unit, flags: flag, backing: e.backing }), `guest_memfd() with flag '0x${flag.toString(16)}' should fail with EINVAL`);
    }
  },
};

/** __test_guest_memfd()'s list for one flag set: VM tests, then fd tests on files of 4 pages (collapse: one PMD). */
export function gmemTestPlan(flags: number): { name: string; fdSize?: 'test' | 'pmd' }[] {
  const plan: { name: string; fdSize?: 'test' | 'pmd' }[] = [{ name: 'create_guest_memfd_multiple' }, { name: 'create_guest_memfd_invalid_sizes' }, { name: 'file_read_write', fdSize: 'test' }];
  if ((flags & GUEST_MEMFD_FLAG_MMAP) !== 0) {
    if ((flags & GUEST_MEMFD_FLAG_INIT_SHARED) !== 0) {
      plan.push({ name: 'mmap_supported', fdSize: 'test' }, { name: 'fault_overflow', fdSize: 'test' }, { name: 'numa_allocation', fdSize: 'test' }, { name: 'collapse', fdSize: 'pmd' });
    } else {
      plan.push({ name: 'fault_private', fdSize: 'test' });
    }
    plan.push({ name: 'mmap_cow', fdSize: 'test' }, { name: 'mbind', fdSize: 'test' });
  } else {
    plan.push({ name: 'mmap_not_supported', fdSize: 'test' });
  }
  plan.push({ name: 'file_size', fdSize: 'test' }, { name: 'fallocate', fdSize: 'test' }, { name: 'invalid_punch_hole', fdSize: 'test' });
  return plan;
}

/** The flag sets test_guest_memfd() runs: 0, then MMAP and MMAP|INIT_SHARED as the VM supports them. */
export function gmemFlagSets(supported: number): number[] {
  const sets = [0];
  if ((supported & GUEST_MEMFD_FLAG_MMAP) !== 0) sets.push(GUEST_MEMFD_FLAG_MMAP);
  // "MMAP should always be supported if INIT_SHARED is supported."
  if ((supported & GUEST_MEMFD_FLAG_INIT_SHARED) !== 0) sets.push(GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED);
  return sets;
}

export function flagNames(flags: number): string {
  const n: string[] = [];
  if ((flags & GUEST_MEMFD_FLAG_MMAP) !== 0) n.push('MMAP');
  if ((flags & GUEST_MEMFD_FLAG_INIT_SHARED) !== 0) n.push('INIT_SHARED');
  return n.length === 0 ? '0' : n.join('|');
}

/** One TAP test point. */
export interface TapPoint {
  name: string;
  ok: boolean;
  /** The failed assertion's sentence (printed as `#` lines before `not ok`). */
  diag: string | null;
}

/** Run one test point: a GmemAssert (or a KVM error nobody expected) makes it `not ok`. */
export function runPoint(name: string, fn: () => void): TapPoint {
  try {
    fn();
    return { name, ok: true, diag: null };
  } catch (e) {
    if (e instanceof GmemAssert) return { name, ok: false, diag: e.message };
    if (e instanceof KvmError) return { name, ok: false, diag: `unexpected ${e.errno}: ${e.message}` };
    throw e;
  }
}

/** ksft_test_result(): the point's lines, numbered `n`. */
export function tapLines(n: number, p: TapPoint): string[] {
  return [...(p.diag === null ? [] : p.diag.split('\n').map((l) => `# ${l}`)), `${p.ok ? 'ok' : 'not ok'} ${n} ${p.name}`];
}

/** ksft_finished()'s totals line. */
export function tapTotals(points: TapPoint[]): string {
  const pass = points.filter((p) => p.ok).length;
  return `# Totals: pass:${pass} fail:${points.length - pass} xfail:0 xpass:0 skip:0 error:0`;
}

/** A store (or load) of every gfn in [start, end), with the guest's value as the stamp. */
class GuestSweep implements AccessSource {
  constructor(private g: number, private readonly end: number, readonly write: boolean, readonly iteration: number) {}
  next(): number {
    return this.g < this.end ? this.g++ : -1;
  }
}

/** test_guest_memfd_guest(): host -> guest -> host through one MMAP|INIT_SHARED file bound at 4G. */
export function gmemGuestRoundTrip(e: GmemEnv, guest: Vm): void {
  const supported = kvmGmemSupportedFlags(guest);
  check((supported & GUEST_MEMFD_FLAG_MMAP) !== 0, `Default VM type should support MMAP, supported flags = 0x${supported.toString(16)}`);
  check((supported & GUEST_MEMFD_FLAG_INIT_SHARED) !== 0, `Default VM type should support INIT_SHARED, supported flags = 0x${supported.toString(16)}`);
  const size = e.unit;
  const npages = size / kPage;
  const fd = checkOk(() => guest.createGuestMemfd({ size, flags: GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED, backing: e.backing }), 'guest_memfd() should succeed');
  checkOk(() => guest.setUserMemoryRegion2({ slot: kGuestSlot, flags: KVM_MEM_GUEST_MEMFD, guestPhysAddr: kGuestGpa, memorySize: size, userspaceAddr: 0, guestMemfd: fd, guestMemfdOffset: 0 }), 'KVM_SET_USER_MEMORY_REGION2 of slot 1 should succeed');
  fd.mmap({ shared: true });
  check(hostMemset(e, fd, 0, size, kHostVal) === -1, 'the host memset should not SIGBUS');
  fd.munmap(0, size);
  const vcpu = guest.vcpu(0);
  const g0 = kGuestGpa / kPage;
  // guest_code(): every byte must read 0xaa — the EPT must translate each gfn to the frame the
  // host stamped through its mapping (one folio serves both).
  let n = vcpu.run(new GuestSweep(g0, g0 + npages, false, 0), npages + 1, null);
  check(n === npages, `the guest's loads stopped after ${n} of ${npages} pages (exit reason ${vcpu.exitReason})`);
  for (let i = 0; i < npages; i++) {
    const r = eptWalk(guest.pool.pt, guest.root, g0 + i, false);
    check(r === 0, `gfn 0x${(g0 + i).toString(16)} has no translation after the guest's load`);
    const v = e.host.frames.readStampIteration(walkOut.pfn);
    check(walkOut.pfn === fd.file.lookup(i) && v === kHostVal, `Guest expected 0xaa at offset ${i * kPage}, got 0x${v.toString(16)} (pfn 0x${walkOut.pfn.toString(16)}, the file holds 0x${fd.file.lookup(i).toString(16)})`);
  }
  // memset(mem, 0xff, size): the store oracle checks each store lands on the file's frame.
  n = vcpu.run(new GuestSweep(g0, g0 + npages, true, kGuestVal), npages + 1, null);
  check(n === npages, `the guest's stores stopped after ${n} of ${npages} pages (exit reason ${vcpu.exitReason})`);
  fd.mmap({ shared: true });
  checkReads(e, fd, 0, size, kGuestVal, 'the host reading the guest\'s memset');
  fd.munmap(0, size);
}

/** Hugetlb pages per pool (split over the nodes) and host memory for `backing`. */
export function gmemHostSize(backing: GmemBacking): { memory: number; hugepages2m: number; hugepages1g: number } {
  const unit = kPage * 2 ** gmemBackingOrder(backing);
  // numa_allocation binds two of the four folios to each node at once.
  const huge = kTestUnits;
  const slack = 64 * 2 ** 20;
  if (backing === 'hugetlb-2m') return { memory: huge * unit + slack, hugepages2m: huge, hugepages1g: 0 };
  if (backing === 'hugetlb-1g') return { memory: huge * unit + slack, hugepages2m: 0, hugepages1g: huge };
  // 4K and THP folios come from the buddy allocator: each node holds a whole test file.
  return { memory: Math.max(slack, kNodes * kTestUnits * unit * 2), hugepages2m: 0, hugepages1g: 0 };
}

export const guestMemfd: ScenarioDef = {
  name: 'guest-memfd',
  summary: 'guest_memfd file semantics per supported flag set (read/write, mmap, SIGBUS, fallocate, PUNCH_HOLE, NUMA, sizes, inodes, flags) and a guest round trip; TAP output',
  after: 'tools/testing/selftests/kvm/guest_memfd_test.c',
  flags: [
    { name: 'vm-type', type: 'enum', choices: ['default', 'sw-protected'], default: 'default', help: 'KVM_CREATE_VM type: KVM_X86_DEFAULT_VM or KVM_X86_SW_PROTECTED_VM (the flag sets follow its KVM_CAP_GUEST_MEMFD_FLAGS)' },
    { name: 'attributes', type: 'enum', choices: ['vm', 'gmem'], default: 'vm', help: 'sw-protected VMs: memory attributes through the VM ioctl (vm: no mmap flags) or KVM_SET_MEMORY_ATTRIBUTES2 on the file (gmem: MMAP, INIT_SHARED)' },
    { name: 'backing', type: 'enum', choices: kGmemBackings, default: '4k', help: 'guest_memfd folio size (page_size in the tests\' sizes stands for it)' },
    { name: 'json', type: 'string', default: null, help: 'write the result JSON to this file' },
    { name: 'quiet', short: 'q', type: 'bool', default: false, help: 'print only the TAP lines' },
  ],
  check(f) {
    if (givenFlags(f).has('attributes') && f['vm-type'] === 'default') {
      throw new UsageError('--attributes has no effect on a default VM (it has no private memory): give --vm-type sw-protected');
    }
    return [];
  },
  run: runGuestMemfd,
};

export async function runGuestMemfd(f: Record<string, unknown>, io: ScenarioIo): Promise<RunResult> {
  const backing = f.backing as GmemBacking;
  const vmType = f['vm-type'] === 'sw-protected' ? KVM_X86_SW_PROTECTED_VM : KVM_X86_DEFAULT_VM;
  const attributes = f.attributes as 'vm' | 'gmem';
  const start = snapshot();
  const w0 = performance.now();
  const host = Host.create({ ...gmemHostSize(backing), nodes: kNodes, stamps: true });
  const ctx: ThreadCtx = { metrics: new Metrics(costVector(loadCostModel('default'))), hostThread: host.thread() };
  const vm = Vm.create(host, 0, ctx, { type: vmType, attributes });
  const e: GmemEnv = { host, t: ctx.hostThread, vm, backing, unit: kPage * 2 ** gmemBackingOrder(backing) };
  const supported = kvmGmemSupportedFlags(vm);
  const sets = gmemFlagSets(supported);
  const plan = sets.flatMap((flags) => gmemTestPlan(flags).map((p) => ({ ...p, flags })));
  io.print('TAP version 13');
  io.print(`# ${f['vm-type'] as string} VM${vmType === KVM_X86_SW_PROTECTED_VM ? ` (--attributes ${attributes})` : ''}: KVM_CAP_GUEST_MEMFD_FLAGS = 0x${supported.toString(16)} (${supported === 0 ? 'none' : flagNames(supported)}); ${backing} folios, ${kNodes} NUMA nodes`);
  // guest_memfd_flags, the per-set points, guest_memfd_guest, audit.
  io.print(`1..${plan.length + 3}`);
  const points: TapPoint[] = [];
  const emit = (p: TapPoint) => {
    points.push(p);
    for (const l of tapLines(points.length, p)) io.print(l);
  };
  emit(runPoint('guest_memfd_flags', () => kGmemVmTests.guest_memfd_flags!(e, 0)));
  for (const p of plan) {
    const name = `flags ${flagNames(p.flags)}: ${p.name}`;
    if (p.fdSize === undefined) {
      emit(runPoint(name, () => kGmemVmTests[p.name]!(e, p.flags)));
      continue;
    }
    const size = p.fdSize === 'pmd' ? Math.max(e.unit, 2 ** 21) : kTestUnits * e.unit;
    emit(runPoint(name, () => {
      const fd = create(e, size, p.flags);
      try {
        kGmemFdTests[p.name]!(e, fd, size);
      } finally {
        closeGmem(e, fd);
      }
    }));
  }
  // test_guest_memfd_guest() always uses a default VM with one vCPU (VM_SHAPE_DEFAULT).
  const guest = Vm.create(host, 1, ctx, { type: KVM_X86_DEFAULT_VM });
  guest.createVcpu();
  emit(runPoint('guest_memfd_guest', () => gmemGuestRoundTrip(e, guest)));
  ctx.hostThread.drain();
  const vms = [vm, guest];
  const a = audit(host, vms);
  emit(runPoint('audit', () => check(a.ok, a.violations.slice(0, 5).map((v) => `${v.kind}: ${v.detail}`).join('\n'))));
  const failed = points.filter((p) => !p.ok).length;
  io.print(tapTotals(points));
  const stats = { guest_memfd_guest: statsSnapshot([guest]) };
  const memory = memoryReport(host, vms);
  const wallNs = (performance.now() - w0) * 1e6;
  for (const v of vms) v.destroy();
  const metrics: Record<string, number | string | boolean> = {
    checks: points.length, checksFailed: failed, supportedFlags: supported, flagSets: sets.map(flagNames).join(','),
    ...Object.fromEntries(points.map((p) => [p.name, p.ok])),
  };
  return {
    schema: kResultSchema, status: 'ok', scenario: 'guest-memfd', config: { ...f, vmType, supportedFlags: supported }, seed: 0,
    host: hostInfo(start, 1), phases: [{ name: 'guest_memfd_test', wallNs: Math.round(wallNs), modeledNs: Math.round(ctx.metrics.t) }],
    histograms: {}, stats, counters: countersToRecord(ctx.metrics.c), audit: { ok: a.ok, violations: a.violations }, memory, metrics, output: [],
  };
}
