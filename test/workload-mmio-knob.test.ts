// The memstress stream's MMIO knob: one access to a device page after every mmioEvery-th
// guest-memory access (floor(accesses / N) in all), cycling over [mmioGfn, mmioGfn + mmioPages),
// stores and loads by the stream's write percent; the memory accesses are exactly those of the
// stream without the knob, so demand paging and dirty logging see the same pages.
import { describe, expect, it } from 'vitest';
import { MemstressStream, type StreamSpec } from '../src/workload/memstress.js';

const spec: StreamSpec = { baseGfn: 1000, pages: 100, order: 'permute', writePercent: 50, seed: 9, vm: 0, vcpu: 1, iteration: 1 };

function drain(s: MemstressStream): { gfn: number; write: boolean }[] {
  const out: { gfn: number; write: boolean }[] = [];
  for (let g = s.next(); g >= 0; g = s.next()) out.push({ gfn: g, write: s.write });
  return out;
}

describe('memstress MMIO knob', () => {
  it('an MMIO access after every 7th memory access; memory accesses unchanged', () => {
    const plain = drain(new MemstressStream(spec));
    const mixed = drain(new MemstressStream({ ...spec, mmioEvery: 7, mmioGfn: 10, mmioPages: 3 }));
    expect(MemstressStream.mmioAccesses(100, 7)).toBe(14);
    expect(mixed).toHaveLength(100 + 14);
    const mmio = mixed.map((a, i) => [a, i] as const).filter(([a]) => a.gfn < 1000);
    expect(mmio.map(([, i]) => i)).toEqual(Array.from({ length: 14 }, (_, k) => 8 * k + 7));
    expect(mmio.map(([a]) => a.gfn)).toEqual(Array.from({ length: 14 }, (_, k) => 10 + (k % 3)));
    expect(mixed.filter((a) => a.gfn >= 1000)).toEqual(plain);
    // Both kinds of MMIO access occur at 50% writes.
    expect(new Set(mmio.map(([a]) => a.write))).toEqual(new Set([true, false]));
  });

  it('the last memory access is followed by its MMIO access when it is an N-th one; 0 means off', () => {
    const s = drain(new MemstressStream({ ...spec, pages: 10, mmioEvery: 5, mmioGfn: 1, mmioPages: 1 }));
    expect(s.map((a) => a.gfn < 1000)).toEqual([false, false, false, false, false, true, false, false, false, false, false, true]);
    expect(drain(new MemstressStream({ ...spec, mmioEvery: 0 }))).toEqual(drain(new MemstressStream(spec)));
  });
});
