/**
 * The guest side of x86/private_mem_conversions_test.c (guest_code(): guest_test_explicit_conversion()
 * with and without fallocate, then guest_test_punch_hole() whole-range and precise) as an access
 * stream for one vCPU.
 *
 * Contents are one value per 4K page, the frame's stamp (the frame table holds no bytes): the
 * guest's memset() of a page is a store stamping the pattern (Vcpu.storeChecked(), so every store
 * is also checked against the frame the host maps for the gfn now), and its memcmp_g() of a page
 * is a load whose value is the stamp of the frame the load used. Which frame that was is read
 * back from the vCPU's TLB right after the load retired (the next next() call, before anything
 * else runs on this thread): the access filled the entry for exactly that gfn, so tlbLookup() is
 * the pfn the guest read through, with the SPTE flags it was mapped with. A freshly allocated
 * (zeroed) frame has stamp 0, which is how PUNCH_HOLE's "reads back zero" is checked.
 *
 * The test's exits to the host are the hypercall (KVM_HC_MAP_GPA_RANGE, a real KVM_EXIT_HYPERCALL
 * through the vCPU) and its ucalls (GUEST_SYNC, GUEST_DONE, GUEST_ASSERT failures): a ucall is a
 * port-I/O exit upstream; here next() returns -1 with the ucall left in `ucall` for the host,
 * and the stream resumes where it stopped at the next run(). The harness adds two ucalls of its
 * own, `probe` (look at lpage_info and mapping levels now) and `phase` (one test range done:
 * audit), which upstream has no counterpart of.
 *
 * Which test is modelled for which attribute path (`inPlace`):
 *   - false: torvalds/linux at 5171573c (KVM_SET_MEMORY_ATTRIBUTES, shared memory separate from
 *     guest_memfd): after each range the guest resets its range to init_p, then punches everything.
 *   - true: Ackerley Tng's in-place conversion series (v6, May 2026, "KVM: selftests: Update
 *     private_mem_conversions_test to mmap() guest_memfd" and the patch before it): shared memory
 *     is the guest_memfd itself, so PUNCH_HOLE zeroes it; the guest punches everything first,
 *     checks it reads zero, then resets the whole block to init_p.
 */
import type { AccessSource, GuestHypercall, Vcpu } from '../kvm/vcpu.js';
import { KVM_HC_MAP_GPA_RANGE, kAccessHypercall } from '../kvm/vcpu.js';
import { tlbFlagsOf, tlbLookup } from '../kvm/mmu/tlb.js';
import { Spte } from '../kvm/mmu/spte.js';
import { kvmMemIsPrivate } from '../kvm/attributes.js';

export const PAGE_SIZE = 4096;
export const SZ_2M = 2 * 1024 * 1024;
export const BASE_DATA_SLOT = 10;
export const BASE_DATA_GPA = 2 ** 32;
export const PER_CPU_DATA_SIZE = SZ_2M + PAGE_SIZE;

/** The hypercall's attribute flags: "Arbitrary values, KVM doesn't care about the attribute flags." */
export const MAP_GPA_SET_ATTRIBUTES = 1 << 0;
export const MAP_GPA_SHARED = 1 << 1;
export const MAP_GPA_DO_FALLOCATE = 1 << 2;

/** GUEST_STAGE(offset, size) of test_ranges[]. */
export const kTestRanges: readonly { offset: number; size: number }[] = [
  { offset: 0, size: PAGE_SIZE },
  { offset: 0, size: SZ_2M },
  { offset: PAGE_SIZE, size: PAGE_SIZE },
  { offset: PAGE_SIZE, size: SZ_2M },
  { offset: SZ_2M, size: PAGE_SIZE },
];

/** enum ucall_syncs */
export const enum SyncKind {
  SYNC_SHARED = 0,
  SYNC_PRIVATE = 1,
}

/** What the guest left for the host when its stream paused. */
export type Ucall =
  | { kind: 'sync'; sync: SyncKind; gpa: number; size: number; current: number; next: number }
  | { kind: 'probe'; what: 'range'; range: number; gpa: number; size: number }
  | { kind: 'test'; name: string }
  | { kind: 'phase'; name: string }
  | { kind: 'abort'; message: string }
  | { kind: 'done' };

type Step =
  | { kind: 'store'; gpa: number; value: number }
  | { kind: 'load'; gpa: number; value: number; from: number }
  | { kind: 'hypercall'; gpa: number; size: number; flags: number }
  | { kind: 'ucall'; ucall: Ucall };

/** "range 4 (+0x200000, 0x1000)": test_ranges[i]'s offset and size. */
export function rangeName(i: number): string {
  return `range ${i} (+0x${kTestRanges[i]!.offset.toString(16)}, 0x${kTestRanges[i]!.size.toString(16)})`;
}

function* memset(gpa: number, value: number, size: number): Generator<Step> {
  for (let o = 0; o < size; o += PAGE_SIZE) yield { kind: 'store', gpa: gpa + o, value };
}

/** memcmp_g(): every page of [gpa, gpa + size) must read `value`. */
function* memcmpG(gpa: number, value: number, size: number): Generator<Step> {
  for (let o = 0; o < size; o += PAGE_SIZE) yield { kind: 'load', gpa: gpa + o, value, from: gpa };
}

function* mapMem(gpa: number, size: number, shared: boolean, fallocate: boolean): Generator<Step> {
  yield { kind: 'hypercall', gpa, size, flags: MAP_GPA_SET_ATTRIBUTES | (shared ? MAP_GPA_SHARED : 0) | (fallocate ? MAP_GPA_DO_FALLOCATE : 0) };
}

function* syncShared(gpa: number, size: number, current: number, next: number): Generator<Step> {
  yield { kind: 'ucall', ucall: { kind: 'sync', sync: SyncKind.SYNC_SHARED, gpa, size, current, next } };
}

function* syncPrivate(gpa: number, size: number, pattern: number): Generator<Step> {
  yield { kind: 'ucall', ucall: { kind: 'sync', sync: SyncKind.SYNC_PRIVATE, gpa, size, current: pattern, next: 0 } };
}

function* phase(name: string): Generator<Step> {
  yield { kind: 'ucall', ucall: { kind: 'phase', name } };
}

function* guestTestExplicitConversion(base: number, fallocate: boolean, inPlace: boolean): Generator<Step> {
  yield { kind: 'ucall', ucall: { kind: 'test', name: `explicit conversion${fallocate ? ' with fallocate' : ''}` } };
  const defP = 0xaa;
  const initP = 0xcc;
  // Memory should be shared by default.
  yield* memset(base, defP, PER_CPU_DATA_SIZE);
  yield* memcmpG(base, defP, PER_CPU_DATA_SIZE);
  yield* syncShared(base, PER_CPU_DATA_SIZE, defP, initP);
  yield* memcmpG(base, initP, PER_CPU_DATA_SIZE);
  for (let i = 0; i < kTestRanges.length; i++) {
    const gpa = base + kTestRanges[i]!.offset;
    const size = kTestRanges[i]!.size;
    const [p1, p2, p3, p4] = [0x11, 0x22, 0x33, 0x44];
    yield* memset(gpa, p1, size);
    yield* mapMem(gpa, size, false, fallocate);
    if (size > PAGE_SIZE) {
      yield* memset(gpa, p2, PAGE_SIZE);
    } else {
      yield* memset(gpa, p2, size);
      yield* syncPrivate(gpa, size, p1);
      yield* memcmpG(gpa, p2, size);
      if (gpa > base) yield* memcmpG(base, initP, gpa - base);
      if (gpa + size < base + PER_CPU_DATA_SIZE) yield* memcmpG(gpa + size, initP, base + PER_CPU_DATA_SIZE - (gpa + size));
      // The harness looks at lpage_info and the levels those loads were mapped at.
      yield { kind: 'ucall', ucall: { kind: 'probe', what: 'range', range: i, gpa, size } };
      // Convert odd-number page frames back to shared (with one-page ranges there are none).
      for (let j = 0; j < size; j += PAGE_SIZE) {
        if ((j / PAGE_SIZE) & 1) {
          yield* mapMem(gpa + j, PAGE_SIZE, true, fallocate);
          yield* syncShared(gpa + j, PAGE_SIZE, p1, p3);
          yield* memcmpG(gpa + j, p3, PAGE_SIZE);
        } else {
          yield* syncPrivate(gpa + j, PAGE_SIZE, p1);
        }
      }
    }
    // skip: convert the entire region back to shared, fill in pattern three, the host checks it
    // and writes pattern four.
    yield* mapMem(gpa, size, true, fallocate);
    yield* memset(gpa, p3, size);
    yield* syncShared(gpa, size, p3, p4);
    yield* memcmpG(gpa, p4, size);
    if (!inPlace) {
      // Reset the shared memory back to the initial pattern, then free all private memory.
      yield* memset(gpa, initP, size);
      yield* mapMem(base, PER_CPU_DATA_SIZE, true, true);
    } else {
      // Shared memory is guest_memfd's: the punch zeroes it. Check that, then reset all of it.
      yield* mapMem(base, PER_CPU_DATA_SIZE, true, true);
      yield* memcmpG(base, 0, PER_CPU_DATA_SIZE);
      yield* memset(base, initP, PER_CPU_DATA_SIZE);
    }
    yield* phase(`explicit conversion${fallocate ? ' with fallocate' : ''}: ${rangeName(i)}`);
  }
}

/** guest_punch_hole(): "Mapping" memory shared via fallocate() is done via PUNCH_HOLE (no attribute change). */
function* guestPunchHole(gpa: number, size: number): Generator<Step> {
  yield { kind: 'hypercall', gpa, size, flags: MAP_GPA_SHARED | MAP_GPA_DO_FALLOCATE };
}

function* guestTestPunchHole(base: number, precise: boolean): Generator<Step> {
  yield { kind: 'ucall', ucall: { kind: 'test', name: `PUNCH_HOLE (${precise ? 'precise' : 'whole range'})` } };
  const initP = 0xcc;
  yield* mapMem(base, PER_CPU_DATA_SIZE, false, false);
  for (let i = 0; i < kTestRanges.length; i++) {
    const gpa = base + kTestRanges[i]!.offset;
    const size = kTestRanges[i]!.size;
    yield* guestPunchHole(base, PER_CPU_DATA_SIZE);
    if (precise) {
      yield* memset(gpa, initP, size);
      yield* memcmpG(gpa, initP, size);
    } else {
      yield* memset(base, initP, PER_CPU_DATA_SIZE);
      yield* memcmpG(base, initP, PER_CPU_DATA_SIZE);
    }
    // Punch a hole at the target range: reads succeed and return zeroes.
    yield* guestPunchHole(gpa, size);
    yield* memcmpG(gpa, 0, size);
    yield* phase(`PUNCH_HOLE (${precise ? 'precise' : 'whole range'}): ${rangeName(i)}`);
  }
}

function* guestCode(base: number, inPlace: boolean): Generator<Step> {
  yield* guestTestExplicitConversion(base, false, inPlace);
  yield* guestTestExplicitConversion(base, true, inPlace);
  yield* guestTestPunchHole(base, false);
  yield* guestTestPunchHole(base, true);
}

/** One load the guest made since the last ucall: its gfn, whether a huge SPTE mapped it, and the value. */
export interface GuestLoad {
  gfn: number;
  huge: boolean;
  private: boolean;
}

/**
 * guest_code(base_gpa) for one vCPU as an AccessSource. After each run() the host looks at
 * `ucall` (null while a hypercall exit is pending, or the budget ran out).
 */
export class ConversionsGuest implements AccessSource {
  write = false;
  iteration = 0;
  readonly hypercall: GuestHypercall = { nr: 0, args: [0, 0, 0], ret: 0 };
  /** The ucall the stream paused at; the host clears it before the next run(). */
  ucall: Ucall | null = null;
  /** memcmp_g() page checks that passed, and those of them that read zero (after a PUNCH_HOLE). */
  checks = 0;
  zeroChecks = 0;
  /** Loads since the last ucall (for `probe`). */
  readonly loads: GuestLoad[] = [];
  private readonly steps: Generator<Step>;
  private pendingGfn = -1;
  private pendingValue = 0;
  private pendingFrom = 0;

  constructor(readonly vcpu: Vcpu, readonly baseGpa: number, inPlace: boolean) {
    this.steps = guestCode(baseGpa, inPlace);
  }

  next(): number {
    if (this.pendingGfn >= 0 && !this.retireLoad()) return -1;
    if (this.ucall !== null) return -1;
    const r = this.steps.next();
    if (r.done === true) {
      this.pause({ kind: 'done' });
      return -1;
    }
    const s = r.value;
    switch (s.kind) {
      case 'store':
        this.write = true;
        this.iteration = s.value;
        return s.gpa / PAGE_SIZE;
      case 'load':
        this.write = false;
        this.pendingGfn = s.gpa / PAGE_SIZE;
        this.pendingValue = s.value;
        this.pendingFrom = s.from;
        return this.pendingGfn;
      case 'hypercall':
        // kvm_hypercall_map_gpa_range(gpa, size, flags): a0 gpa, a1 npages, a2 attributes.
        this.hypercall.nr = KVM_HC_MAP_GPA_RANGE;
        this.hypercall.args[0] = s.gpa;
        this.hypercall.args[1] = s.size / PAGE_SIZE;
        this.hypercall.args[2] = s.flags;
        this.hypercall.ret = 0;
        return kAccessHypercall;
      case 'ucall':
        this.pause(s.ucall);
        return -1;
    }
  }

  private pause(u: Ucall): void {
    this.ucall = u;
  }

  /** The host handled the ucall: the stream goes on at the next run(). */
  resume(): void {
    this.ucall = null;
    this.loads.length = 0;
  }

  /**
   * memcmp_g() of the page the last load read: the stamp of the frame the vCPU's TLB says it
   * used. A failure is the guest's __GUEST_ASSERT (UCALL_ABORT).
   */
  private retireLoad(): boolean {
    const gfn = this.pendingGfn;
    this.pendingGfn = -1;
    const w = this.vcpu.w;
    const pfn = tlbLookup(w, gfn, false);
    const gpa = gfn * PAGE_SIZE;
    if (pfn < 0) {
      this.pause({ kind: 'abort', message: `the load of gpa 0x${gpa.toString(16)} retired but the vCPU's TLB holds no translation for it` });
      return false;
    }
    const flags = tlbFlagsOf(w, gfn);
    const vm = this.vcpu.vm;
    const priv = (flags & Spte.kSptePrivate) !== 0;
    if (priv !== kvmMemIsPrivate(vm, vm.lookupMemslot(gfn), gfn)) {
      this.pause({ kind: 'abort', message: `Guest read gpa 0x${gpa.toString(16)} through a ${priv ? 'private' : 'shared'} translation, but the gfn is ${priv ? 'shared' : 'private'}` });
      return false;
    }
    this.loads.push({ gfn, huge: (flags & Spte.PT_PAGE_SIZE_MASK) !== 0, private: priv });
    const got = vm.host.frames.readStampIteration(pfn);
    if (got !== this.pendingValue) {
      this.pause({ kind: 'abort', message: `Guest expected 0x${this.pendingValue.toString(16)} at offset ${gpa - this.pendingFrom} (gpa 0x${gpa.toString(16)}), got 0x${got.toString(16)}` });
      return false;
    }
    this.checks++;
    if (got === 0) this.zeroChecks++;
    return true;
  }
}
