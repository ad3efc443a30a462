/**
 * Self time per function from a V8 CPU profile (the `.cpuprofile` JSON that `node --cpu-prof`
 * writes per thread, Chrome DevTools' Profiler.Profile): `nodes` is the call tree (each with its
 * callFrame), `samples[i]` the node on top of the stack at sample i and `timeDeltas[i]` the time
 * from the previous sample (µs; the first from `startTime`).
 *
 * A sample stands for the time until the next one (the last one: until `endTime`), as DevTools
 * computes self time from the sample timestamps, so the self times of a profile add up to
 * endTime minus its first sample and never exceed its duration. A function reached by several
 * call paths is several nodes; its rows are summed by (function, url, line). A profile without
 * samples (an old format) falls back to hitCount x the mean interval.
 */

export interface CpuProfileCallFrame {
  functionName: string;
  url: string;
  /** 0-based, -1 for VM states ("(program)", "(garbage collector)", "(idle)"). */
  lineNumber: number;
  columnNumber?: number;
  scriptId?: string | number;
}

export interface CpuProfileNode {
  id: number;
  callFrame: CpuProfileCallFrame;
  hitCount?: number;
  children?: number[];
}

export interface CpuProfile {
  nodes: CpuProfileNode[];
  /** µs */
  startTime: number;
  endTime: number;
  samples?: number[];
  timeDeltas?: number[];
}

export interface SelfTimeRow {
  /** The function's name; "(anonymous)" for an unnamed one, V8's own names for VM states. */
  fn: string;
  url: string;
  /** 1-based line of the function's start, 0 where V8 gives none. */
  line: number;
  selfMs: number;
  /** Share of the profile's duration. */
  pct: number;
}

export interface SelfTimes {
  durationMs: number;
  /** Every function with self time, most first. */
  rows: SelfTimeRow[];
}

/** Throws EINVAL-style errors for JSON that is not a CPU profile. */
export function checkCpuProfile(p: unknown): CpuProfile {
  const c = p as CpuProfile;
  if (!c || !Array.isArray(c.nodes) || typeof c.startTime !== 'number' || typeof c.endTime !== 'number') {
    throw new Error('EINVAL: not a V8 CPU profile (nodes, startTime, endTime)');
  }
  if ((c.samples === undefined) !== (c.timeDeltas === undefined) || (c.samples && c.samples.length !== c.timeDeltas!.length)) {
    throw new Error('EINVAL: CPU profile samples and timeDeltas differ in length');
  }
  return c;
}

/** Microseconds of self time per node id. */
function selfUsByNode(p: CpuProfile): Map<number, number> {
  const self = new Map<number, number>();
  const samples = p.samples ?? [];
  if (samples.length > 0) {
    // Sample timestamps, kept monotonic (V8 can record one out of order: a negative delta gives
    // it no time without shifting the rest) and inside [startTime, endTime], so the self times
    // telescope to at most the profile's duration.
    const deltas = p.timeDeltas!;
    let t = p.startTime;
    let m = p.startTime;
    const ts = samples.map((_, i) => (m = Math.min(p.endTime, Math.max(m, (t += deltas[i]!)))));
    for (let i = 0; i < samples.length; i++) {
      const us = (i + 1 < samples.length ? ts[i + 1]! : p.endTime) - ts[i]!;
      self.set(samples[i]!, (self.get(samples[i]!) ?? 0) + us);
    }
    return self;
  }
  const hits = p.nodes.reduce((s, n) => s + (n.hitCount ?? 0), 0);
  const per = hits > 0 ? (p.endTime - p.startTime) / hits : 0;
  for (const n of p.nodes) if (n.hitCount) self.set(n.id, n.hitCount * per);
  return self;
}

export function selfTimes(p: CpuProfile): SelfTimes {
  const durationMs = Math.max(0, p.endTime - p.startTime) / 1000;
  const byNode = selfUsByNode(p);
  const rows = new Map<string, SelfTimeRow>();
  for (const n of p.nodes) {
    const us = byNode.get(n.id);
    if (!us) continue;
    const f = n.callFrame;
    const fn = f.functionName || '(anonymous)';
    const line = f.lineNumber >= 0 ? f.lineNumber + 1 : 0;
    const key = `${fn}\0${f.url}\0${line}`;
    const row = rows.get(key) ?? { fn, url: f.url, line, selfMs: 0, pct: 0 };
    row.selfMs += us / 1000;
    rows.set(key, row);
  }
  const out = [...rows.values()].sort((a, b) => b.selfMs - a.selfMs || (a.fn < b.fn ? -1 : 1));
  for (const r of out) r.pct = durationMs > 0 ? (100 * r.selfMs) / durationMs : 0;
  return { durationMs, rows: out };
}

/** The `n` functions with the most self time. */
export function topSelfTime(p: CpuProfile, n: number): SelfTimes {
  const s = selfTimes(p);
  return { durationMs: s.durationMs, rows: s.rows.slice(0, n) };
}
