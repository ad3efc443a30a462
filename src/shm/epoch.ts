/**
 * Epoch-based deferred free, standing in for RCU in the TDP MMU: a page-table page that was
 * unlinked while other threads may still walk it (mmu_lock held for read, or a vCPU's
 * hardware walk in guest mode) is retired with the current epoch and freed only when every
 * participant has either gone idle or entered a later epoch.
 *
 * Participants publish the global epoch when they enter a read-side section
 * (`epochEnter`) and kEpochIdle when they leave. A participant that stays inside across
 * several walks keeps its older epoch, which only delays reclamation.
 *
 * Layout: words[kEpochGlobal] the global epoch; participant p at words[kEpochParticipants + p*kPadWords].
 */
import { allocSab, Arena } from './arena.js';

export const enum EpochLayout {
  kEpochGlobal = 0,
  kEpochParticipants = Arena.kPadWords,
  kEpochIdle = -1,
}

export class EpochDomain {
  readonly words: Int32Array;
  constructor(readonly sab: SharedArrayBuffer, readonly participants: number) {
    this.words = new Int32Array(sab);
  }
  static create(participants: number): EpochDomain {
    const d = new EpochDomain(allocSab((1 + participants) * Arena.kPadWords * 4), participants);
    for (let p = 0; p < participants; p++) Atomics.store(d.words, EpochLayout.kEpochParticipants + p * Arena.kPadWords, EpochLayout.kEpochIdle);
    return d;
  }
  /**
   * rcu_read_lock() for page-table walks. Ordering: the publish is a seq-cst store and every
   * page-table load that follows is a seq-cst load (spteLoadFlags), so the walk is ordered after
   * the publish — the StoreLoad pair with reclaim(), which reads the participants after
   * unlinking (seq-cst cmpxchg) and retiring. A plain SPTE load here could be satisfied before
   * the store became visible (arm64 lets a plain load pass an earlier stlr) and walk a table
   * that reclaim, seeing this participant idle, has already freed.
   */
  enter(p: number): void {
    Atomics.store(this.words, EpochLayout.kEpochParticipants + p * Arena.kPadWords, Atomics.load(this.words, EpochLayout.kEpochGlobal));
  }
  /**
   * enter() for a participant that stays inside across many short sections (a vCPU between
   * guest entries): publish only when the global epoch moved since `seen`; returns the epoch now
   * published. The global epoch is read with Atomics.load: a plain read that saw a new epoch
   * would not order this thread's later walks after the unlink that preceded advance(), so it
   * could publish an epoch that vouches for a table it still reaches. A stale value only
   * publishes an older epoch, which merely delays reclaim.
   */
  enterIfMoved(p: number, seen: number): number {
    const g = Atomics.load(this.words, EpochLayout.kEpochGlobal);
    if (g === seen) return seen;
    Atomics.store(this.words, EpochLayout.kEpochParticipants + p * Arena.kPadWords, g);
    return g;
  }
  exit(p: number): void {
    Atomics.store(this.words, EpochLayout.kEpochParticipants + p * Arena.kPadWords, EpochLayout.kEpochIdle);
  }
  /** Advance the epoch; returns the epoch that retirements made before this call belong to. */
  advance(): number {
    return Atomics.add(this.words, EpochLayout.kEpochGlobal, 1);
  }
  current(): number {
    return Atomics.load(this.words, EpochLayout.kEpochGlobal);
  }
  /**
   * Oldest epoch any participant is still in, or Infinity when all are idle. Memory retired in
   * epoch e is unreachable once this is > e — for retirements made before the call only (see
   * PtPool.reclaim()).
   */
  oldestActive(): number {
    let min = Infinity;
    for (let p = 0; p < this.participants; p++) {
      const e = Atomics.load(this.words, EpochLayout.kEpochParticipants + p * Arena.kPadWords);
      if (e !== EpochLayout.kEpochIdle && e < min) min = e;
    }
    return min;
  }
}
