// An SPTE is two Int32 words here (flags, pfn), where KVM reads and cmpxchgs one u64. A lockless
// reader — the CPU's EPT walker (eptWalk), the iterator's READ_ONCE (TdpIter.read) — must never
// pair the flags of one SPTE value with the pfn of another. A worker replaces a leaf between two
// states as fast as it can, with the real tdpMmuSetSpteAtomic (freeze, pfn, publish); the main
// thread reads it. Reading flags then pfn without re-checking the flags (the code before this
// test) paired them wrongly hundreds of times per run on x86 alone; re-checking equal flags
// without the pfn generation still did a few times per run (flags A, B, A again: an ABA).
import { describe, expect, it } from 'vitest';
import { Worker } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import { eptWalk, WalkResult, walkOut } from '../dist/src/kvm/mmu/tdp/walk.js';
import { TdpIter } from '../dist/src/kvm/mmu/tdp/iter.js';
import { Spte, PtLayout, makeSpteFlags, spteToU64, withNextPfnGen } from '../dist/src/kvm/mmu/spte.js';
import { tdpMmuSetSpteAtomic } from '../dist/src/kvm/mmu/tdp/spte-change.js';
import { Metrics } from '../dist/src/metrics/counters.js';
import { kOpCount } from '../dist/src/metrics/ops.js';

const fixture = fileURLToPath(new URL('./fixtures/spte-flipper.mjs', import.meta.url));
const kReads = 400_000;

/** Pages 1..4 form one 4-level path to gfn's 4K leaf. */
function buildPath(gfn: number, leafFlags: number, leafPfn: number): Int32Array {
  const pt = new Int32Array(new SharedArrayBuffer(5 * PtLayout.kPtPageWords * 4));
  for (let level = 4; level >= 1; level--) {
    const page = 5 - level;
    const sptep = page * PtLayout.kPtPageWords + ((gfn >>> ((level - 1) * 9)) & 511) * PtLayout.kSpteWords;
    pt[sptep] = level === 1 ? leafFlags : Spte.kNonLeafFlags;
    pt[sptep + 1] = level === 1 ? leafPfn : page + 1;
  }
  return pt;
}

describe('two-word SPTE snapshot under a concurrent replacer', () => {
  it('eptWalk and TdpIter.read never pair one state\'s flags with the other\'s pfn', async () => {
    const gfn = 0x12345;
    // Both states present, accessed (the walker's read needs no cmpxchg); D tells them apart.
    const base = makeSpteFlags(1, false, true) | Spte.SPTE_ACCESSED;
    const a = { flags: base | Spte.SPTE_DIRTY, pfn: 1000 };
    const b = { flags: base, pfn: 2000 };
    const pt = buildPath(gfn, a.flags, a.pfn);
    const ctl = new Int32Array(new SharedArrayBuffer(8));
    const wk = new Worker(fixture, { workerData: { pt: pt.buffer, ctl: ctl.buffer, root: 1, gfn, a, b } });
    const flipsP = new Promise<number>((resolve, reject) => { wk.once('message', resolve); wk.once('error', reject); });
    while (Atomics.load(ctl, 1) === 0) await new Promise((r) => setTimeout(r, 1));

    let walks = 0, tornWalks = 0, sawA = 0, sawB = 0;
    for (let i = 0; i < kReads; i++) {
      if (eptWalk(pt, 1, gfn, false) !== WalkResult.kWalkOk) continue; // frozen: a violation, fine
      walks++;
      const isA = (walkOut.flags & Spte.SPTE_DIRTY) !== 0;
      if (isA) sawA++; else sawB++;
      if (walkOut.pfn !== (isA ? a.pfn : b.pfn)) tornWalks++;
    }
    const it = new TdpIter(pt);
    it.start(1, 1, gfn);
    while (it.stepDown()) { /* to the leaf */ }
    let reads = 0, tornReads = 0;
    for (let i = 0; i < kReads; i++) {
      it.read();
      if (it.oldFlags === Spte.FROZEN_SPTE) continue;
      reads++;
      if (it.oldPfn !== ((it.oldFlags & Spte.SPTE_DIRTY) !== 0 ? a.pfn : b.pfn)) tornReads++;
    }
    Atomics.store(ctl, 0, 1);
    const flips = await flipsP;
    // The race really ran: the SPTE changed under the reads, and both states were seen.
    expect(flips).toBeGreaterThan(1000);
    expect(sawA).toBeGreaterThan(0);
    expect(sawB).toBeGreaterThan(0);
    expect(walks + reads).toBeGreaterThan(kReads / 8); // most reads see a present state, many a frozen one
    expect({ tornWalks, tornReads }).toEqual({ tornWalks: 0, tornReads: 0 });
  }, 60_000);
});

describe('publishing a new pfn', () => {
  const gfn = 0x2468;
  const leaf = makeSpteFlags(1, true, true);
  const vm = { ctx: { metrics: new Metrics(new Float64Array(kOpCount)) }, w: new Int32Array(64) };
  function leafIter(pt: Int32Array): TdpIter {
    const it = new TdpIter(pt);
    it.start(1, 1, gfn);
    while (it.stepDown()) { /* to the leaf */ }
    return it;
  }

  it('advances the pfn generation, which KVM\'s u64 view does not show', () => {
    const pt = buildPath(gfn, leaf, 1000);
    const it = leafIter(pt);
    expect(tdpMmuSetSpteAtomic(vm as never, it, leaf, 2000)).toBe(true);
    const published = pt[it.sptep]!;
    expect(published & Spte.kSptePfnGenMask).toBe(Spte.kSptePfnGenOne);
    expect(published & ~Spte.kSptePfnGenMask).toBe(leaf);
    expect(spteToU64(published, 2000)).toBe(spteToU64(leaf, 2000));
    // A flags-only change keeps the generation; the generation wraps within its bits.
    expect(tdpMmuSetSpteAtomic(vm as never, it, published | Spte.SPTE_ACCESSED, 2000)).toBe(true);
    expect(pt[it.sptep]! & Spte.kSptePfnGenMask).toBe(Spte.kSptePfnGenOne);
    expect(withNextPfnGen(leaf, leaf | Spte.kSptePfnGenMask)).toBe(leaf);
    expect(withNextPfnGen(leaf, Spte.FROZEN_SPTE) & Spte.kSptePfnGenMask).toBe(Spte.kSptePfnGenOne);
  });

  it('backs off when the pfn moved behind unchanged flags (the cmpxchg64 KVM would have failed)', () => {
    const pt = buildPath(gfn, leaf, 1000);
    const it = leafIter(pt);
    // Another thread replaced the pfn and republished the very same flags word.
    pt[it.sptep + 1] = 3000;
    expect(tdpMmuSetSpteAtomic(vm as never, it, leaf, 2000)).toBe(false);
    expect([pt[it.sptep], pt[it.sptep + 1]]).toEqual([leaf, 3000]); // put back untouched
    expect([it.oldFlags, it.oldPfn]).toEqual([leaf, 3000]); // the caller retries on a fresh snapshot
  });
});
