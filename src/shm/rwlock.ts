/**
 * A reader/writer lock in shared memory with the fairness of the kernel's queued rwlock:
 * a waiting writer stops new readers, so a stream of TDP faults (read) cannot starve
 * CLEAR_DIRTY_LOG or an invalidation (write). Writers serialize on a separate word first.
 *
 * Layout (Int32 words from `base`, the caller pads the whole lock to its own cache line):
 *   [base + kRwState]   bits 0..29 reader count, kRwWriter = held by a writer,
 *                       kRwWriterWaiting = a writer waits for readers to drain
 *   [base + kRwWriterMutex]  spinlock word that orders writers
 *   [base + kRwSleepers]     threads parked in Atomics.wait on the state word
 *
 * Every acquire returns the ns it waited (0 on the fast path) so callers can account wait time.
 */
import { spinLock, spinUnlock, kSpinLimit } from './spinlock.js';

export const enum RwLock {
  kRwState = 0,
  kRwWriterMutex = 1,
  kRwSleepers = 2,
  kRwWords = 3,
  kRwWriter = 1 << 30,
  kRwWriterWaiting = 1 << 29,
  kReaderMask = RwLock.kRwWriterWaiting - 1,
}


export function readLock(a: Int32Array, base: number): number {
  // Optimistic: take a reader reference; back it out if a writer holds or waits for the lock.
  const s = Atomics.add(a, base + RwLock.kRwState, 1);
  if ((s & (RwLock.kRwWriter | RwLock.kRwWriterWaiting)) === 0) return 0;
  readUnlock(a, base);
  return readLockSlow(a, base);
}

function readLockSlow(a: Int32Array, base: number): number {
  const t0 = performance.now();
  let spins = 0;
  for (;;) {
    const s = Atomics.load(a, base + RwLock.kRwState);
    if ((s & (RwLock.kRwWriter | RwLock.kRwWriterWaiting)) === 0) {
      if (Atomics.compareExchange(a, base + RwLock.kRwState, s, s + 1) === s) return (performance.now() - t0) * 1e6;
      continue;
    }
    if (++spins < kSpinLimit) continue;
    Atomics.add(a, base + RwLock.kRwSleepers, 1);
    Atomics.wait(a, base + RwLock.kRwState, s, 1);
    Atomics.sub(a, base + RwLock.kRwSleepers, 1);
  }
}

export function readUnlock(a: Int32Array, base: number): void {
  const prev = Atomics.sub(a, base + RwLock.kRwState, 1);
  // Last reader out while a writer waits: wake it if it sleeps.
  if ((prev & RwLock.kReaderMask) === 1 && (prev & RwLock.kRwWriterWaiting) !== 0 && Atomics.load(a, base + RwLock.kRwSleepers) !== 0) {
    Atomics.notify(a, base + RwLock.kRwState);
  }
}

export function writeLock(a: Int32Array, base: number): number {
  let waited = spinLock(a, base + RwLock.kRwWriterMutex);
  if (Atomics.compareExchange(a, base + RwLock.kRwState, 0, RwLock.kRwWriter) === 0) return waited;
  const t0 = performance.now();
  Atomics.or(a, base + RwLock.kRwState, RwLock.kRwWriterWaiting);
  let spins = 0;
  for (;;) {
    const s = Atomics.load(a, base + RwLock.kRwState);
    if ((s & RwLock.kReaderMask) === 0) {
      if (Atomics.compareExchange(a, base + RwLock.kRwState, s, RwLock.kRwWriter) === s) break;
      continue;
    }
    if (++spins < kSpinLimit) continue;
    Atomics.add(a, base + RwLock.kRwSleepers, 1);
    Atomics.wait(a, base + RwLock.kRwState, s, 1);
    Atomics.sub(a, base + RwLock.kRwSleepers, 1);
  }
  waited += (performance.now() - t0) * 1e6;
  return waited;
}

export function writeUnlock(a: Int32Array, base: number): void {
  // Subtract, never store 0: a reader's optimistic +1 (about to be backed out) may be in the word.
  Atomics.sub(a, base + RwLock.kRwState, RwLock.kRwWriter);
  spinUnlock(a, base + RwLock.kRwWriterMutex);
  if (Atomics.load(a, base + RwLock.kRwSleepers) !== 0) Atomics.notify(a, base + RwLock.kRwState);
}

export function isWriteLocked(a: Int32Array, base: number): boolean {
  return (Atomics.load(a, base + RwLock.kRwState) & RwLock.kRwWriter) !== 0;
}

export function readerCount(a: Int32Array, base: number): number {
  return Atomics.load(a, base + RwLock.kRwState) & RwLock.kReaderMask;
}
