/**
 * HdrHistogram's percentile-distribution text (`.hgrm`, what `outputPercentileDistribution` prints
 * and the HdrHistogram plotter reads): written from a result's encoded HISTFAAA… histograms, and
 * parsed back (lines of Value, Percentile, TotalCount, 1/(1-Percentile)).
 *
 * The histograms are decoded into hdr-histogram-js's JS flavour for this, not the WASM one the
 * harness records with: the WASM build's text formatter mangles fractional digits (1.082 prints
 * as "1.820", 19.071 as "19.710", 20.00 as "19.100"), while the JS flavour formats with
 * Intl.NumberFormat as Java's %12.3f does. Values are written in µs (ns / 1000, three decimals:
 * every ns survives).
 */
import hdr from 'hdr-histogram-js';

/** ns recorded, µs written: the plotter's usual unit, and 3 decimals keep every ns. */
export const kHgrmUnitRatio = 1000;
export const kHgrmTicksPerHalfDistance = 5;

/** Merge encoded histograms (the runs of one repeat set) into one JS-flavour histogram. */
function decodeMerged(encoded: readonly string[]): hdr.Histogram {
  const acc = hdr.build({ bitBucketSize: 64, useWebAssembly: false, autoResize: true, numberOfSignificantValueDigits: 3, lowestDiscernibleValue: 1 });
  for (const e of encoded) acc.add(hdr.decodeFromCompressedBase64(e, 64, false));
  return acc;
}

/** The .hgrm text of the encoded histograms merged (one run, or every run of a repeat set). */
export function hgrmText(encoded: readonly string[]): string {
  return decodeMerged(encoded).outputPercentileDistribution(kHgrmTicksPerHalfDistance, kHgrmUnitRatio);
}

export interface HgrmLine {
  /** In the file's unit (µs for the harness's files). */
  value: number;
  /** 0..1 */
  percentile: number;
  totalCount: number;
  /** 1/(1-percentile); null on the last line (percentile 1). */
  inverted: number | null;
}

export interface Hgrm {
  lines: HgrmLine[];
  mean: number | null;
  stddev: number | null;
  max: number | null;
  totalCount: number | null;
}

/**
 * Parse .hgrm text as the plotter does: data lines are whitespace-separated numbers (4, or 3 on
 * the 100 % line); `#[Mean = …, StdDeviation = …]` and `#[Max = …, Total count = …]` are read too.
 */
export function parseHgrm(text: string): Hgrm {
  const out: Hgrm = { lines: [], mean: null, stddev: null, max: null, totalCount: null };
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '') continue;
    if (line.startsWith('#')) {
      const mean = /Mean\s*=\s*([\d.eE+-]+),\s*StdDeviation\s*=\s*([\d.eE+-]+)/.exec(line);
      if (mean) [out.mean, out.stddev] = [Number(mean[1]), Number(mean[2])];
      const max = /Max\s*=\s*([\d.eE+-]+),\s*Total count\s*=\s*(\d+)/.exec(line);
      if (max) [out.max, out.totalCount] = [Number(max[1]), Number(max[2])];
      continue;
    }
    const f = line.split(/\s+/);
    if ((f.length !== 4 && f.length !== 3) || f.some((x) => !/^[\d.]+$/.test(x) && x !== 'Infinity' && x !== 'inf')) continue; // the header
    const inv = f.length === 4 ? Number(f[3]) : null;
    out.lines.push({ value: Number(f[0]), percentile: Number(f[1]), totalCount: Number(f[2]), inverted: inv !== null && Number.isFinite(inv) ? inv : null });
  }
  return out;
}

/**
 * The points of the percentile plot: (1/(1-p), latency in ns) for every line below 100 %, as the
 * plotter draws them (1/(1-p) recomputed from the percentile: the file rounds it to 2 decimals),
 * then the maximum at 1/(1-p) = N, the percentile (N-1)/N below which every sample but the last
 * lies (the plotter drops the 100 % line: its 1/(1-p) is infinite).
 */
export function percentilePoints(encoded: readonly string[]): { x: number; y: number }[] {
  const lines = parseHgrm(hgrmText(encoded)).lines;
  const pts = lines.filter((l) => l.percentile < 1).map((l) => ({ x: 1 / (1 - l.percentile), y: Math.round(l.value * kHgrmUnitRatio) }));
  const end = lines[lines.length - 1];
  if (end && end.percentile === 1 && end.totalCount > (pts[pts.length - 1]?.x ?? 0)) pts.push({ x: end.totalCount, y: Math.round(end.value * kHgrmUnitRatio) });
  return pts;
}
