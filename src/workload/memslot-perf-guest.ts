/**
 * The guest side of memslot_perf_test (guest_code_test_memslot_{map,unmap,move,rw}) as an access
 * stream. The test's guest and host synchronize through a `struct sync_area` at MEM_SYNC_GPA, the
 * first page of guest memory: the host raises start_flag, exit_flag and sync_flag, the guest
 * spins reading them and takes sync_flag back with a cmpxchg (guest_perform_sync()). Here the
 * flags live in a shared `sync` buffer (the frame table holds no page contents), and every read
 * or cmpxchg of them is also an access to the sync page's gfn, so it goes through the TLB and the
 * SPTEs exactly as the guest's accesses to the sync area do (a spin is a run of TLB hits; after a
 * zap the next one faults the page in again).
 *
 * Stores carry memslot_perf_test's values as frame stamps (Vcpu.storeChecked): MEM_TEST_VAL_1 is
 * stamp 1, MEM_TEST_VAL_2 stamp 2, so the host's read-back checks (-d, and RW's) read the frame
 * the host maps for the gfn. A frame's stamp stands for the word at offset 0 of the page, where
 * the guest stores; stores elsewhere (RW's clearing of page_size / 2, the sync area's cmpxchg) are
 * checked by the store oracle but leave the stamp (iteration -1). So the RW guest's check of the
 * host's MEM_TEST_VAL_2 at page_size / 2 is not modelled: the frame holds one value, not two.
 *
 * Guest work between syncs, in modeled time: the guest records, at each sync it reaches, the
 * modeled ns it spent since it passed the previous one (its worker's clock, without the spin),
 * so the host can build a modeled timeline that does not depend on how the two sides interleaved
 * (memslot-perf.ts). The worker's clock is this vCPU's: memslot_perf_test has one vCPU.
 *
 * Layout of `sync` (kSyncBytes): Int32 words
 *
 *   0 start_flag   1 exit_flag   2 sync_flag   3 guest assert (0 ok, else a GuestAssert code)
 *   4 the gfn the assert is about
 *
 * and at bytes 32..47 two Float64 slots of guest work: the k-th sync's in slot k & 1, so the host
 * reads slot k & 1 while the guest may already fill the other one.
 */
import type { Metrics } from '../metrics/counters.js';
import type { AccessSource, KvmRunMmio } from '../kvm/vcpu.js';

export const enum SyncArea {
  kStartFlag = 0,
  kExitFlag = 1,
  kSyncFlag = 2,
  kGuestAssert = 3,
  kAssertGfn = 4,
  /** Float64 index of the first guest-work slot. */
  kSyncWorkF64 = 4,
  kSyncBytes = 64,
}

/** Why the vCPU side stopped the test (check_mmio_access()'s TEST_ASSERTs). */
export const enum GuestAssert {
  kOk = 0,
  kUnexpectedMmio = 1,
  kMmioRead = 2,
  kMmioLen = 3,
  kMmioAddress = 4,
}

export type MemslotPerfGuestCode = 'map' | 'unmap' | 'move' | 'rw';

export interface MemslotPerfGuestSpec {
  kind: 'memslot-perf';
  code: MemslotPerfGuestCode;
  sync: SharedArrayBuffer;
  /** MEM_SYNC_GPA / page size. */
  syncGfn: number;
  /** First gfn of the area the guest walks (MEM_TEST_GPA, or the move area). */
  areaGfn: number;
  /** Pages the guest walks: the whole area, or the half the map/unmap/RW loops alternate on. */
  pages: number;
  /** map and unmap: pages between the two halves' first pages (the second half's offset). */
  halfPages: number;
  /** check_mmio_access(): whether an MMIO exit may happen and the gpa range it must fall in. */
  mmioOk: boolean;
  mmioGpaMin: number;
  mmioGpaMax: number;
}

/** A store's stamp value for a word other than the page's first (AccessSource.iteration < 0). */
const kOtherWord = -1;

const enum Seg {
  kStore = 0,
  kLoadStore = 1,
  kSync = 2,
  kCheckExit = 3,
}

const enum Phase {
  /** READ_ONCE(sync->guest_page_size) (and move_area_ptr for the move test). */
  kProlog = 0,
  kSpinStart = 1,
  kLoop = 2,
  kDone = 3,
}

/** One loop segment: kind, first gfn, page count, stamp value. */
interface Segment {
  kind: Seg;
  gfn: number;
  pages: number;
  value: number;
}

function loopOf(s: MemslotPerfGuestSpec): Segment[] {
  const a = s.areaGfn;
  const seg = (kind: Seg, gfn = 0, pages = 0, value = 0): Segment => ({ kind, gfn, pages, value });
  switch (s.code) {
    // Write (map) the first half, sync, the second half, sync.
    case 'map':
      return [seg(Seg.kStore, a, s.halfPages, 1), seg(Seg.kSync), seg(Seg.kStore, a + s.halfPages, s.halfPages, 2), seg(Seg.kSync)];
    // One page per half per sync: the host's unmaps are what is measured.
    case 'unmap':
      return [seg(Seg.kStore, a, 1, 1), seg(Seg.kSync), seg(Seg.kStore, a + s.halfPages, 1, 2), seg(Seg.kSync)];
    // No sync: stores to the move area until exit_flag (MMIO exits are too slow to wait for).
    case 'move':
      return [seg(Seg.kCheckExit), seg(Seg.kStore, a, s.pages, 1)];
    // Write every page, sync, read (GUEST_ASSERT_EQ VAL_2) and clear every page's middle, sync.
    case 'rw':
      return [seg(Seg.kStore, a, s.pages, 1), seg(Seg.kSync), seg(Seg.kLoadStore, a, s.pages, kOtherWord), seg(Seg.kSync)];
  }
}

export class MemslotPerfGuest implements AccessSource {
  write = false;
  iteration = 0;
  private readonly w: Int32Array;
  private readonly work: Float64Array;
  private readonly loop: Segment[];
  private phase = Phase.kProlog;
  private prolog: number;
  private seg = 0;
  private pos = 0;
  /** kLoadStore: the store of the current page is next. */
  private storeNext = false;
  /** A sync or exit check read exit_flag set: the guest ends (GUEST_DONE) at the next access. */
  private exitSeen = false;
  /** kSync: the exit check read was issued, the cmpxchg is next. */
  private casNext = false;
  /** kSync: modeled clock when this sync was first tried (its arrival). */
  private arrived = false;
  private syncs = 0;
  /** onMmioExit() stopped the test (this thread's flag; the host reads kGuestAssert). */
  private failed = false;
  /** Modeled clock when the guest passed the start or the last sync. */
  private lastPass = 0;

  constructor(private readonly spec: MemslotPerfGuestSpec, private readonly clock: Metrics) {
    this.w = new Int32Array(spec.sync);
    this.work = new Float64Array(spec.sync);
    this.loop = loopOf(spec);
    this.prolog = spec.code === 'move' ? 2 : 1;
  }

  next(): number {
    const s = this.spec;
    switch (this.phase) {
      case Phase.kProlog:
        if (--this.prolog === 0) this.phase = Phase.kSpinStart;
        return this.read(s.syncGfn);
      case Phase.kSpinStart:
        // guest_spin_until_start(): the pair is the host's seq-cst store of start_flag.
        if (Atomics.load(this.w, SyncArea.kStartFlag) !== 0) {
          this.phase = Phase.kLoop;
          this.lastPass = this.clock.t;
        }
        return this.read(s.syncGfn);
      case Phase.kLoop:
        return this.step();
      default:
        return -1;
    }
  }

  private step(): number {
    if (this.exitSeen || this.failed) {
      this.phase = Phase.kDone;
      return -1;
    }
    const g = this.loop[this.seg]!;
    switch (g.kind) {
      case Seg.kStore: {
        const gfn = g.gfn + this.pos;
        if (++this.pos === g.pages) this.advance();
        return this.store(gfn, g.value);
      }
      case Seg.kLoadStore: {
        const gfn = g.gfn + this.pos;
        if (!this.storeNext) {
          this.storeNext = true;
          return this.read(gfn);
        }
        this.storeNext = false;
        if (++this.pos === g.pages) this.advance();
        return this.store(gfn, g.value);
      }
      case Seg.kCheckExit:
        // guest_should_exit(): the pair is the host's seq-cst store of exit_flag.
        this.exitSeen = Atomics.load(this.w, SyncArea.kExitFlag) !== 0;
        this.advance();
        return this.read(this.spec.syncGfn);
      default:
        return this.sync();
    }
  }

  /**
   * guest_perform_sync(): each try reads exit_flag, then cmpxchg's sync_flag from true to false.
   * The guest's work since the last pass is published before the cmpxchg that completes the
   * sync (the pair: this seq-cst compareExchange, the host's Atomics.load that sees 0).
   */
  private sync(): number {
    const w = this.w;
    if (!this.casNext) {
      if (!this.arrived) {
        this.arrived = true;
        this.work[SyncArea.kSyncWorkF64 + (this.syncs & 1)] = this.clock.t - this.lastPass;
      }
      this.casNext = true;
      this.exitSeen = Atomics.load(w, SyncArea.kExitFlag) !== 0;
      return this.read(this.spec.syncGfn);
    }
    this.casNext = false;
    if (Atomics.compareExchange(w, SyncArea.kSyncFlag, 1, 0) === 1) {
      this.arrived = false;
      this.syncs++;
      this.lastPass = this.clock.t;
      this.advance();
    }
    // The cmpxchg is a locked write whether or not it succeeds.
    return this.store(this.spec.syncGfn, kOtherWord);
  }

  private advance(): void {
    this.pos = 0;
    this.seg = this.seg + 1 === this.loop.length ? 0 : this.seg + 1;
  }

  private read(gfn: number): number {
    this.write = false;
    return gfn;
  }

  private store(gfn: number, value: number): number {
    this.write = true;
    this.iteration = value;
    return gfn;
  }

  /**
   * check_mmio_access() in vcpu_worker(): only the move-active test may exit to MMIO, only for
   * an 8-byte store inside the half of the area that was moved away. A violation stops the test
   * (TEST_ASSERT): recorded in the sync area for the host, and the guest ends.
   */
  onMmioExit(mmio: KvmRunMmio): void {
    const s = this.spec;
    let why: number = GuestAssert.kOk;
    if (!s.mmioOk) why = GuestAssert.kUnexpectedMmio;
    else if (!mmio.isWrite) why = GuestAssert.kMmioRead;
    else if (mmio.len !== 8) why = GuestAssert.kMmioLen;
    else if (mmio.physAddr < s.mmioGpaMin || mmio.physAddr > s.mmioGpaMax) why = GuestAssert.kMmioAddress;
    if (why === GuestAssert.kOk) return;
    this.failed = true;
    Atomics.store(this.w, SyncArea.kAssertGfn, Math.floor(mmio.physAddr / 4096));
    // The pair: the host's Atomics.load of kGuestAssert, then its read of kAssertGfn.
    Atomics.store(this.w, SyncArea.kGuestAssert, why);
  }
}
