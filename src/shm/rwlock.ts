/**
 * A reader/writer lock in shared memory whose read side writes only the reader's own cache line
 * (a brlock / percpu-rwsem: per-reader indicators, the writer scans them all). KVM's mmu_lock is
 * a qrwlock, one word every reader RMWs; on real hardware that line bounces too, but here an
 * Atomics.add on a line another worker writes costs 92 ns against 8 ns on a private one, so one
 * VM's vCPUs on two workers scaled 1.02-1.15x with the shared word. The modeled clock does not
 * see any of this: it counts KVM's rwlock ops (lock_read / lock_write), not the emulator's.
 *
 * Semantics kept from the qrwlock: readers share, a writer excludes readers and writers, and a
 * waiting writer stops new readers (a stream of TDP faults cannot starve CLEAR_DIRTY_LOG or an
 * invalidation).
 *
 * Lock words (Int32 from `base`; the caller pads them to their own line):
 *   [base + kRwWriter]       1 while a writer holds or waits for the lock (new readers back off)
 *   [base + kRwWriterMutex]  spinlock that orders writers
 *   [base + kRwSleepers]     readers parked in Atomics.wait on the writer word
 *   [base + kRwDrainSleeper] 1 while the writer sleeps waiting for readers to drain
 * Reader indicator: one Int32 per reader, on a line that reader owns (a vCPU's words, the VMM's
 * slot): the number of read holds it has (nesting allowed).
 *
 * Correctness is the Dekker pair (store-then-load on both sides, every access seq-cst, so
 * ECMAScript forbids both loads missing the other's store): a reader publishes its indicator,
 * then reads the writer word; a writer publishes the writer word, then reads every indicator.
 * Either the reader sees the writer (and backs out) or the writer sees the reader (and waits).
 * The release/acquire the pair gives also orders the holders' plain accesses: what a reader
 * wrote before its unlock is visible to the writer that saw its indicator at 0, which is what
 * lets per-vCPU stat shards be plain words (stats.ts).
 *
 * Every acquire returns the ns it waited (0 on the fast path) so callers can account wait time.
 */
import { spinLock, spinUnlock, kSpinLimit } from './spinlock.js';

export const enum RwLock {
  kRwWriter = 0,
  kRwWriterMutex = 1,
  kRwSleepers = 2,
  kRwDrainSleeper = 3,
  kRwWords = 4,
}

/** The readers a writer must wait for: indicator word `at[i]` of `words[i]`. */
export interface RwReaders {
  readonly words: readonly Int32Array[];
  readonly at: readonly number[];
}

export function readLock(lock: Int32Array, base: number, ind: Int32Array, at: number): number {
  // Publish the hold, then look for a writer (the reader half of the Dekker pair).
  Atomics.add(ind, at, 1);
  if (Atomics.load(lock, base + RwLock.kRwWriter) === 0) return 0;
  return readLockSlow(lock, base, ind, at);
}

function readLockSlow(lock: Int32Array, base: number, ind: Int32Array, at: number): number {
  const t0 = performance.now();
  for (;;) {
    // Back out so the writer can drain, then wait for it to leave.
    readUnlock(lock, base, ind, at);
    let spins = 0;
    while (Atomics.load(lock, base + RwLock.kRwWriter) !== 0) {
      if (++spins < kSpinLimit) continue;
      Atomics.add(lock, base + RwLock.kRwSleepers, 1);
      Atomics.wait(lock, base + RwLock.kRwWriter, 1, 1);
      Atomics.sub(lock, base + RwLock.kRwSleepers, 1);
    }
    Atomics.add(ind, at, 1);
    if (Atomics.load(lock, base + RwLock.kRwWriter) === 0) return (performance.now() - t0) * 1e6;
  }
}

export function readUnlock(lock: Int32Array, base: number, ind: Int32Array, at: number): void {
  const left = Atomics.sub(ind, at, 1) - 1;
  // Last hold of this reader gone while a writer waits for the drain: wake it if it sleeps.
  if (left === 0 && Atomics.load(lock, base + RwLock.kRwWriter) !== 0 && Atomics.load(lock, base + RwLock.kRwDrainSleeper) !== 0) {
    Atomics.notify(lock, base + RwLock.kRwDrainSleeper);
  }
}

export function writeLock(lock: Int32Array, base: number, readers: RwReaders): number {
  let waited = spinLock(lock, base + RwLock.kRwWriterMutex);
  // The writer half of the Dekker pair: publish, then scan every indicator.
  Atomics.store(lock, base + RwLock.kRwWriter, 1);
  const t0 = performance.now();
  let slow = false;
  const { words, at } = readers;
  for (let i = 0; i < words.length; i++) {
    const w = words[i]!;
    const k = at[i]!;
    let spins = 0;
    while (Atomics.load(w, k) !== 0) {
      slow = true;
      if (++spins < kSpinLimit) continue;
      // Sleep until a reader's last unlock notifies (bounded: a reader that saw the flag
      // before it was set may not notify).
      Atomics.store(lock, base + RwLock.kRwDrainSleeper, 1);
      if (Atomics.load(w, k) !== 0) Atomics.wait(lock, base + RwLock.kRwDrainSleeper, 1, 1);
      Atomics.store(lock, base + RwLock.kRwDrainSleeper, 0);
    }
  }
  if (slow) waited += (performance.now() - t0) * 1e6;
  return waited;
}

export function writeUnlock(lock: Int32Array, base: number): void {
  Atomics.store(lock, base + RwLock.kRwWriter, 0);
  if (Atomics.load(lock, base + RwLock.kRwSleepers) !== 0) Atomics.notify(lock, base + RwLock.kRwWriter);
  spinUnlock(lock, base + RwLock.kRwWriterMutex);
}

/** Whether a writer holds (or is acquiring) the lock. */
export function isWriteLocked(lock: Int32Array, base: number): boolean {
  return Atomics.load(lock, base + RwLock.kRwWriter) !== 0;
}

/** Read holds over all readers (a snapshot; exact only while no reader comes or goes). */
export function readerCount(readers: RwReaders): number {
  let n = 0;
  for (let i = 0; i < readers.words.length; i++) n += Atomics.load(readers.words[i]!, readers.at[i]!);
  return n;
}
