// Self time from a hand-built .cpuprofile: each sample owns the time to the next sample (the last
// one: to endTime), a function reached by two call paths is summed, an out-of-order sample gets
// no time, and a profile without samples falls back to hitCount.
import { describe, expect, it } from 'vitest';
import { checkCpuProfile, selfTimes, topSelfTime, type CpuProfile } from '../src/metrics/cpu-profile.js';

const frame = (functionName: string, url = 'file:///app/x.js', lineNumber = 0) => ({ functionName, url, lineNumber, columnNumber: 0, scriptId: '1' });

// (root) -> main -> a ; main -> c -> a (a second node for the same function) ; main -> b ; (idle)
const nodes = [
  { id: 1, callFrame: frame('(root)', '', -1), children: [2, 7] },
  { id: 2, callFrame: frame('main', 'file:///app/x.js', 9), children: [3, 4, 5] },
  { id: 3, callFrame: frame('a', 'file:///app/x.js', 19) },
  { id: 4, callFrame: frame('b', 'file:///app/y.js', 4) },
  { id: 5, callFrame: frame('c', 'file:///app/x.js', 29), children: [6] },
  { id: 6, callFrame: frame('a', 'file:///app/x.js', 19) },
  { id: 7, callFrame: frame('(idle)', '', -1) },
];

describe('.cpuprofile self time', () => {
  // startTime 1000 µs; samples at 1100, 1300, 1600, 2000, 2500, 2600; endTime 3000 µs.
  const p: CpuProfile = { nodes, startTime: 1000, endTime: 3000, samples: [3, 2, 6, 4, 7, 3], timeDeltas: [100, 200, 300, 400, 500, 100] };

  it('each sample owns the time to the next, the last to endTime; a is summed over its two nodes', () => {
    const s = selfTimes(p);
    expect(s.durationMs).toBe(2);
    // a: 200 (1100..1300) + 400 (1600..2000) + 400 (2600..3000); main 300; b 500; (idle) 100.
    expect(s.rows).toEqual([
      { fn: 'a', url: 'file:///app/x.js', line: 20, selfMs: 1.0, pct: 50 },
      { fn: 'b', url: 'file:///app/y.js', line: 5, selfMs: 0.5, pct: 25 },
      { fn: 'main', url: 'file:///app/x.js', line: 10, selfMs: 0.3, pct: 15 },
      { fn: '(idle)', url: '', line: 0, selfMs: 0.1, pct: 5 },
    ].map((r) => ({ ...r, selfMs: expect.closeTo(r.selfMs, 9), pct: expect.closeTo(r.pct, 9) })));
    // The time before the first sample (100 µs) belongs to no function.
    expect(s.rows.reduce((a, r) => a + r.selfMs, 0)).toBeCloseTo(1.9, 9);
  });

  it('top-N keeps the N with the most self time', () => {
    expect(topSelfTime(p, 2).rows.map((r) => r.fn)).toEqual(['a', 'b']);
  });

  it('an out-of-order sample (negative delta) gets no time and the total stays within the duration', () => {
    const q: CpuProfile = { nodes, startTime: 0, endTime: 1000, samples: [3, 4, 2], timeDeltas: [100, -50, 400] };
    // Timestamps 100, 50, 450: the second is kept at 100, so a owns 100..100 (nothing), b 100..450, main 450..1000.
    const s = selfTimes(q);
    expect(Object.fromEntries(s.rows.map((r) => [r.fn, r.selfMs]))).toEqual({ b: 0.35, main: 0.55 });
    expect(s.rows.reduce((a, r) => a + r.selfMs, 0)).toBeLessThanOrEqual(s.durationMs);
  });

  it('samples past endTime are clamped to it', () => {
    const q: CpuProfile = { nodes, startTime: 0, endTime: 1000, samples: [3, 4], timeDeltas: [600, 900] };
    const s = selfTimes(q);
    expect(Object.fromEntries(s.rows.map((r) => [r.fn, r.selfMs]))).toEqual({ a: 0.4 });
  });

  it('no samples: hitCount x (duration / hits)', () => {
    const q: CpuProfile = { nodes: nodes.map((n) => ({ ...n, hitCount: n.id === 3 ? 3 : n.id === 4 ? 1 : 0 })), startTime: 0, endTime: 4000 };
    expect(Object.fromEntries(selfTimes(q).rows.map((r) => [r.fn, r.selfMs]))).toEqual({ a: 3, b: 1 });
  });

  it('rejects JSON that is not a profile', () => {
    expect(() => checkCpuProfile({ foo: 1 })).toThrow(/EINVAL: not a V8 CPU profile/);
    expect(() => checkCpuProfile({ nodes: [], startTime: 0, endTime: 1, samples: [1], timeDeltas: [] })).toThrow(/differ in length/);
  });
});
