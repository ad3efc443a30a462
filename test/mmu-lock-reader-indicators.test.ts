// mmu_lock with per-reader indicators (src/shm/rwlock.ts), on real threads: readers on different
// indicators share the lock, a writer waits for every reader's indicator to drain (including a
// reader it does not share a line with), and a held writer keeps new readers out. Each case
// parks the other side in a worker, so a writer that skips an indicator, or a reader that
// ignores the writer word, gets in while it must not — every time, not by luck.
import { describe, expect, it } from 'vitest';
import { Worker } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import { readLock, readUnlock, writeLock, writeUnlock, isWriteLocked } from '../dist/src/shm/rwlock.js';

const fixture = fileURLToPath(new URL('./fixtures/rwlock-side.mjs', import.meta.url));
const GOT = 40;
const LEAVE = 41;
const kReaders = 3;
const ind = (i: number) => 64 + 32 * i;

function setup() {
  const sab = new SharedArrayBuffer((64 + 32 * kReaders) * 4);
  const w = new Int32Array(sab);
  const readers = { words: [w, w, w], at: [ind(0), ind(1), ind(2)] };
  return { sab, w, readers };
}

function start(sab: SharedArrayBuffer, side: 'read' | 'write'): Worker {
  return new Worker(fixture, { workerData: { sab, side, readers: kReaders } });
}

async function waitFor(w: Int32Array, i: number, v: number, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (Atomics.load(w, i) !== v) {
    if (Date.now() > deadline) throw new Error(`word ${i} never became ${v}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('mmu_lock reader indicators', () => {
  it('readers on different indicators hold the lock together, on their own words only', async () => {
    const { sab, w } = setup();
    const t = start(sab, 'read');
    try {
      await waitFor(w, GOT, 1);
      expect(Atomics.load(w, ind(kReaders - 1))).toBe(1);
      // The main thread reads on reader 0 while the worker holds reader 2: no wait.
      expect(readLock(w, 0, w, ind(0))).toBe(0);
      expect(Atomics.load(w, ind(0))).toBe(1);
      expect(Atomics.load(w, 0)).toBe(0); // nobody wrote the lock's own word
      readUnlock(w, 0, w, ind(0));
      expect(Atomics.load(w, ind(0))).toBe(0);
    } finally {
      Atomics.store(w, LEAVE, 1);
      await waitFor(w, GOT, 2);
      await t.terminate();
    }
  });

  it('a writer waits until the last reader on any indicator leaves', async () => {
    const { sab, w, readers } = setup();
    // Reader 1 is this thread (held), reader 2 a parked worker: the writer (another worker) must
    // wait for both.
    readLock(w, 0, w, ind(1));
    const r = start(sab, 'read');
    await waitFor(w, GOT, 1);
    Atomics.store(w, GOT, 0);
    // The worker that was the reader leaves only when LEAVE is set; the writer worker is started
    // on a fresh GOT with LEAVE still 0. Both fixtures share GOT/LEAVE, so drive them in turn:
    const wr = new Worker(fixture, { workerData: { sab, side: 'write', readers: kReaders } });
    // Both fixtures end by storing GOT = 2, so GOT alone cannot tell the writer left: wait for the
    // writer's thread to exit (it does right after writeUnlock), never terminate it mid-hold.
    const wrExited = new Promise<void>((res) => wr.once('exit', () => res()));
    try {
      // It raised the flag and waits (polled: a worker can take long to start on a loaded machine).
      const deadline = Date.now() + 10_000;
      while (!isWriteLocked(w, 0) && Date.now() < deadline) await new Promise((res) => setTimeout(res, 5));
      expect(isWriteLocked(w, 0)).toBe(true);
      expect(Atomics.load(w, GOT)).toBe(0); // but did not get in past two readers
      readUnlock(w, 0, w, ind(1));
      await new Promise((res) => setTimeout(res, 100));
      expect(Atomics.load(w, GOT)).toBe(0); // still one reader: the parked worker
      Atomics.store(w, LEAVE, 1); // the reader leaves (and the writer will leave right after it gets in)
      await waitFor(w, GOT, 2, 10_000);
      await Promise.race([wrExited, new Promise((_, rej) => setTimeout(() => rej(new Error('the writer never left')), 10_000))]);
      expect(readers.at.map((a) => Atomics.load(w, a))).toEqual([0, 0, 0]);
    } finally {
      Atomics.store(w, LEAVE, 1);
      await r.terminate();
      await wr.terminate();
    }
    expect(isWriteLocked(w, 0)).toBe(false);
  });

  it('a held writer keeps a new reader out until it unlocks', async () => {
    const { sab, w, readers } = setup();
    writeLock(w, 0, readers);
    const r = start(sab, 'read');
    try {
      await new Promise((res) => setTimeout(res, 100));
      expect(Atomics.load(w, GOT)).toBe(0);
      // The reader backed out of its indicator while it waits, so a writer could drain it.
      expect(Atomics.load(w, ind(kReaders - 1))).toBe(0);
      writeUnlock(w, 0);
      await waitFor(w, GOT, 1);
      expect(Atomics.load(w, ind(kReaders - 1))).toBe(1);
    } finally {
      Atomics.store(w, LEAVE, 1);
      await waitFor(w, GOT, 2);
      await r.terminate();
    }
  });
});
