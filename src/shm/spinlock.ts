/**
 * A test-and-test-and-set spinlock on one Int32 word, with a bounded spin and then
 * Atomics.wait: a sleep/wake costs ~45 µs on this machine against ~140 ns for a spin, and
 * spinning more threads than cores only burns the core the holder needs.
 *
 * Word values: 0 unlocked, 1 locked, 2 locked with sleepers (so unlock knows to notify).
 */
export const kSpinLimit = 2000;

export function spinLock(a: Int32Array, i: number): number {
  if (Atomics.compareExchange(a, i, 0, 1) === 0) return 0;
  return spinLockSlow(a, i);
}

function spinLockSlow(a: Int32Array, i: number): number {
  const t0 = performance.now();
  for (let n = 0; n < kSpinLimit; n++) {
    if (Atomics.load(a, i) === 0 && Atomics.compareExchange(a, i, 0, 1) === 0) {
      return (performance.now() - t0) * 1e6;
    }
  }
  // Slow path: mark contended and sleep until the holder notifies.
  for (;;) {
    const v = Atomics.exchange(a, i, 2);
    if (v === 0) return (performance.now() - t0) * 1e6;
    Atomics.wait(a, i, 2, 1);
  }
}

export function spinTryLock(a: Int32Array, i: number): boolean {
  return Atomics.compareExchange(a, i, 0, 1) === 0;
}

export function spinUnlock(a: Int32Array, i: number): void {
  if (Atomics.exchange(a, i, 0) === 2) Atomics.notify(a, i, 1);
}

export function spinIsLocked(a: Int32Array, i: number): boolean {
  return Atomics.load(a, i) !== 0;
}
