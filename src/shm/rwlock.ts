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

export const kRwState = 0;
export const kRwWriterMutex = 1;
export const kRwSleepers = 2;
export const kRwWords = 3;

export const kRwWriter = 1 << 30;
export const kRwWriterWaiting = 1 << 29;
const kReaderMask = kRwWriterWaiting - 1;

export function readLock(a: Int32Array, base: number): number {
  // Optimistic: take a reader reference; back it out if a writer holds or waits for the lock.
  const s = Atomics.add(a, base + kRwState, 1);
  if ((s & (kRwWriter | kRwWriterWaiting)) === 0) return 0;
  readUnlock(a, base);
  return readLockSlow(a, base);
}

function readLockSlow(a: Int32Array, base: number): number {
  const t0 = performance.now();
  let spins = 0;
  for (;;) {
    const s = Atomics.load(a, base + kRwState);
    if ((s & (kRwWriter | kRwWriterWaiting)) === 0) {
      if (Atomics.compareExchange(a, base + kRwState, s, s + 1) === s) return (performance.now() - t0) * 1e6;
      continue;
    }
    if (++spins < kSpinLimit) continue;
    Atomics.add(a, base + kRwSleepers, 1);
    Atomics.wait(a, base + kRwState, s, 1);
    Atomics.sub(a, base + kRwSleepers, 1);
  }
}

export function readUnlock(a: Int32Array, base: number): void {
  const prev = Atomics.sub(a, base + kRwState, 1);
  // Last reader out while a writer waits: wake it if it sleeps.
  if ((prev & kReaderMask) === 1 && (prev & kRwWriterWaiting) !== 0 && Atomics.load(a, base + kRwSleepers) !== 0) {
    Atomics.notify(a, base + kRwState);
  }
}

export function writeLock(a: Int32Array, base: number): number {
  let waited = spinLock(a, base + kRwWriterMutex);
  if (Atomics.compareExchange(a, base + kRwState, 0, kRwWriter) === 0) return waited;
  const t0 = performance.now();
  Atomics.or(a, base + kRwState, kRwWriterWaiting);
  let spins = 0;
  for (;;) {
    const s = Atomics.load(a, base + kRwState);
    if ((s & kReaderMask) === 0) {
      if (Atomics.compareExchange(a, base + kRwState, s, kRwWriter) === s) break;
      continue;
    }
    if (++spins < kSpinLimit) continue;
    Atomics.add(a, base + kRwSleepers, 1);
    Atomics.wait(a, base + kRwState, s, 1);
    Atomics.sub(a, base + kRwSleepers, 1);
  }
  waited += (performance.now() - t0) * 1e6;
  return waited;
}

export function writeUnlock(a: Int32Array, base: number): void {
  // Subtract, never store 0: a reader's optimistic +1 (about to be backed out) may be in the word.
  Atomics.sub(a, base + kRwState, kRwWriter);
  spinUnlock(a, base + kRwWriterMutex);
  if (Atomics.load(a, base + kRwSleepers) !== 0) Atomics.notify(a, base + kRwState);
}

export function isWriteLocked(a: Int32Array, base: number): boolean {
  return (Atomics.load(a, base + kRwState) & kRwWriter) !== 0;
}

export function readerCount(a: Int32Array, base: number): number {
  return Atomics.load(a, base + kRwState) & kReaderMask;
}
