// memslot_perf_test's guest side as an access stream (workload/memslot-perf-guest.ts), driven by
// hand: every sync-area read or cmpxchg is an access to the sync page's gfn; the guest spins
// until start_flag, takes sync_flag with a cmpxchg only after the host raised it, publishes its
// modeled work since the last sync before that cmpxchg (not the time it spun), ends at exit_flag
// (GUEST_DONE), and an MMIO exit outside the moved half stops it with an assertion code.
import { describe, expect, it } from 'vitest';
import { MemslotPerfGuest, SyncArea, GuestAssert, type MemslotPerfGuestSpec } from '../src/workload/memslot-perf-guest.js';
import { KvmRunMmio } from '../src/kvm/vcpu.js';
import { Metrics } from '../src/metrics/counters.js';

const kSync = 0x10000;
const kArea = 0x10010;

function guest(code: MemslotPerfGuestSpec['code'], over: Partial<MemslotPerfGuestSpec> = {}) {
  const sync = new SharedArrayBuffer(SyncArea.kSyncBytes);
  const spec: MemslotPerfGuestSpec = {
    kind: 'memslot-perf', code, sync, syncGfn: kSync, areaGfn: kArea, pages: 4, halfPages: 2, mmioOk: false, mmioGpaMin: 0, mmioGpaMax: 0, ...over,
  };
  const clock = new Metrics(new Float64Array(64));
  const g = new MemslotPerfGuest(spec, clock);
  const w = new Int32Array(sync);
  const work = new Float64Array(sync);
  // One access: its gfn, whether a store, and the stamp it carries; the clock moves 10 ns per access.
  const step = () => {
    const gfn = g.next();
    clock.t += 10;
    return { gfn, write: g.write, value: g.iteration };
  };
  return { g, w, work, step, clock };
}

describe('memslot_perf_test guest program', () => {
  it('map: spins on start_flag, writes a half, waits for sync_flag, then the other half', () => {
    const { w, work, step } = guest('map');
    expect(step()).toEqual({ gfn: kSync, write: false, value: 0 }); // READ_ONCE(guest_page_size)
    for (let i = 0; i < 3; i++) expect(step().gfn).toBe(kSync); // spin: start_flag is 0
    Atomics.store(w, SyncArea.kStartFlag, 1);
    expect(step().gfn).toBe(kSync); // sees start
    expect([step(), step()]).toEqual([{ gfn: kArea, write: true, value: 1 }, { gfn: kArea + 1, write: true, value: 1 }]);
    // At the sync: exit_flag read, then a failed cmpxchg (a store to the sync page) while the
    // host has not raised sync_flag — the guest spins without moving on.
    for (let i = 0; i < 4; i++) {
      expect(step()).toMatchObject({ gfn: kSync, write: false });
      expect(step()).toMatchObject({ gfn: kSync, write: true, value: -1 });
    }
    // Its work (two stores and the start read, 30 ns) was published at arrival, not the spin.
    expect(work[SyncArea.kSyncWorkF64]).toBe(30);
    Atomics.store(w, SyncArea.kSyncFlag, 1);
    step();
    step(); // the cmpxchg that takes it
    expect(Atomics.load(w, SyncArea.kSyncFlag)).toBe(0);
    expect([step(), step()]).toEqual([{ gfn: kArea + 2, write: true, value: 2 }, { gfn: kArea + 3, write: true, value: 2 }]);
    // exit_flag at the next sync: GUEST_DONE.
    Atomics.store(w, SyncArea.kExitFlag, 1);
    expect(step().gfn).toBe(kSync);
    expect(step().gfn).toBe(-1);
    expect(step().gfn).toBe(-1);
  });

  it('RW: the second pass loads each page and clears its middle (a store that leaves the stamp)', () => {
    const { w, step } = guest('rw');
    Atomics.store(w, SyncArea.kStartFlag, 1);
    step();
    step();
    for (let p = 0; p < 4; p++) expect(step()).toEqual({ gfn: kArea + p, write: true, value: 1 });
    Atomics.store(w, SyncArea.kSyncFlag, 1);
    step();
    step();
    const pass2 = Array.from({ length: 8 }, step);
    expect(pass2.map((a) => [a.gfn - kArea, a.write])).toEqual([[0, false], [0, true], [1, false], [1, true], [2, false], [2, true], [3, false], [3, true]]);
    expect(pass2.filter((a) => a.write).every((a) => a.value === -1)).toBe(true);
  });

  it('move: an MMIO store inside the moved half is fine; a read, or one outside it, stops the guest', () => {
    const ok = guest('move', { mmioOk: true, mmioGpaMin: (kArea + 2) * 4096, mmioGpaMax: (kArea + 4) * 4096 - 1 });
    const mmio = new KvmRunMmio();
    Object.assign(mmio, { physAddr: (kArea + 3) * 4096, len: 8, isWrite: true });
    ok.g.onMmioExit(mmio);
    expect(Atomics.load(ok.w, SyncArea.kGuestAssert)).toBe(GuestAssert.kOk);
    Object.assign(mmio, { physAddr: (kArea + 1) * 4096 });
    Atomics.store(ok.w, SyncArea.kStartFlag, 1);
    ok.step();
    ok.step();
    ok.step();
    ok.g.onMmioExit(mmio);
    expect(Atomics.load(ok.w, SyncArea.kGuestAssert)).toBe(GuestAssert.kMmioAddress);
    expect(Atomics.load(ok.w, SyncArea.kAssertGfn)).toBe(kArea + 1);
    expect(ok.step().gfn).toBe(-1);
    const none = guest('move');
    Object.assign(mmio, { physAddr: (kArea + 3) * 4096, isWrite: false });
    none.g.onMmioExit(mmio);
    expect(Atomics.load(none.w, SyncArea.kGuestAssert)).toBe(GuestAssert.kUnexpectedMmio);
  });
});
