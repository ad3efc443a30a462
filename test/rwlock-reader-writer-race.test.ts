// mmu_lock on real threads: each reader publishes its own indicator and backs out if a writer
// is there, while writers come and go, draining every indicator (the Dekker pair of rwlock.ts).
// A reader that loaded the writer word before publishing, or a writer that scanned before
// raising its flag, lets both in and the fixture counts the violation.
import { describe, expect, it } from 'vitest';
import { Worker } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';

const fixture = fileURLToPath(new URL('./fixtures/rwlock-hammer.mjs', import.meta.url));

describe('rwlock under contention', () => {
  it('excludes writers from readers and each other, and ends unlocked', async () => {
    const sab = new SharedArrayBuffer((64 + 32 * 3) * 4);
    const w = new Int32Array(sab);
    const threads = 3;
    const runs = Array.from({ length: threads }, (_, t) => new Promise<{ thread: number; iterations: number }>((resolve, reject) => {
      const wk = new Worker(fixture, { workerData: { sab, threads, index: t, seed: 7 + t, iterations: 200_000, writePercent: t === 0 ? 20 : 2 } });
      wk.once('message', (m: { iterations: number }) => resolve({ thread: wk.threadId, iterations: m.iterations }));
      wk.once('error', reject);
    }));
    const done = await Promise.all(runs);
    // Every thread ran its whole share (the fixture also starts them together, on a barrier).
    expect(new Set(done.map((d) => d.thread)).size).toBe(threads);
    expect(done.map((d) => d.iterations)).toEqual([200_000, 200_000, 200_000]);
    expect(Atomics.load(w, 34)).toBe(0); // violations
    expect(Atomics.load(w, 0)).toBe(0); // no writer left inside
    expect(Atomics.load(w, 1)).toBe(0); // writer mutex free
    for (let t = 0; t < threads; t++) expect(Atomics.load(w, 64 + 32 * t)).toBe(0); // no read hold left behind
  }, 60_000);
});
