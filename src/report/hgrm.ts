/**
 * HdrHistogram's percentile-distribution text (`.hgrm`, what `outputPercentileDistribution` prints
 * and the HdrHistogram plotter reads): written from a result's encoded HISTFAAA… histograms, and
 * parsed back (lines of Value, Percentile, TotalCount, 1/(1-Percentile)).
 *
 * The distribution is computed here, with the semantics of HdrHistogram's PercentileIterator
 * (ticks that halve their step every half-distance to 100 %, a line where the cumulative count
 * first reaches a tick, a last line at 100 %) and Java's formats (%12.3f %2.12f %10d %14.2f),
 * rather than by the library's outputPercentileDistribution: its WASM build (the one the harness
 * records with) mangles fractional digits (1.082 prints as "1.820", 19.071 as "19.710", 20.00 as
 * "19.100"), and its JS build, which prints correctly, recomputes every bucket's value with
 * log2/pow on every step and took 6 s for a 20-file report. The counts are read from the JS
 * build's decoded histogram; a test checks the text is byte-identical to the JS build's output.
 * Values are written in µs (ns / 1000, three decimals: every ns survives).
 */
import hdr from 'hdr-histogram-js';

/** ns recorded, µs written: the plotter's usual unit, and 3 decimals keep every ns. */
export const kHgrmUnitRatio = 1000;
export const kHgrmTicksPerHalfDistance = 5;

/** The JS build's histogram as this module reads it (public members of its JsHistogram). */
interface JsHistogramCounts {
  totalCount: number;
  maxValue: number;
  countsArrayLength: number;
  bucketCount: number;
  subBucketCount: number;
  numberOfSignificantValueDigits: number;
  getCountAtIndex(index: number): number;
  valueFromIndex(index: number): number;
  highestEquivalentValue(value: number): number;
  sizeOfEquivalentValueRange(value: number): number;
}

/** Merge encoded histograms (the runs of one repeat set) into one JS-build histogram. */
function decodeMerged(encoded: readonly string[]): JsHistogramCounts {
  if (encoded.length === 1) return hdr.decodeFromCompressedBase64(encoded[0]!, 64, false) as unknown as JsHistogramCounts;
  const acc = hdr.build({ bitBucketSize: 64, useWebAssembly: false, autoResize: true, numberOfSignificantValueDigits: 3, lowestDiscernibleValue: 1 });
  for (const e of encoded) acc.add(hdr.decodeFromCompressedBase64(e, 64, false));
  return acc as unknown as JsHistogramCounts;
}

/** One line of the distribution, values in ns. */
export interface DistributionLine {
  valueNs: number;
  /** The tick iterated to, 0..100 (100 on the last line). */
  percentileLevel: number;
  totalCount: number;
}

export interface PercentileDistribution {
  lines: DistributionLine[];
  meanNs: number;
  stddevNs: number;
  maxNs: number;
  totalCount: number;
  bucketCount: number;
  subBucketCount: number;
  digits: number;
}

/** One report draws a run's histogram and writes its .hgrm: walk each set of histograms once. */
const memo = new Map<string, PercentileDistribution>();

/** Walk the counts as HdrHistogram's PercentileIterator does (see the file comment). */
export function percentileDistribution(encoded: readonly string[], ticksPerHalfDistance = kHgrmTicksPerHalfDistance): PercentileDistribution {
  const key = `${ticksPerHalfDistance}:${encoded.join(',')}`;
  let d = memo.get(key);
  if (d === undefined) {
    if (memo.size >= 4096) memo.clear();
    d = walkPercentiles(decodeMerged(encoded), ticksPerHalfDistance);
    memo.set(key, d);
  }
  return d;
}

function walkPercentiles(h: JsHistogramCounts, ticksPerHalfDistance: number): PercentileDistribution {
  const total = h.totalCount;
  const lines: DistributionLine[] = [];
  let idx = 0;
  let fresh = true;
  let countTo = 0;
  let level = 0;
  let final = false;
  // Mean and stddev over each bucket's median equivalent value, as HdrHistogram computes them.
  let sum = 0;
  const medians: number[] = [];
  const counts: number[] = [];
  for (;;) {
    // hasNext(): more counts to reach, or the one 100 % line after the last recorded value.
    if (countTo >= total) {
      if (final || total === 0) break;
      level = 100;
      final = true;
    }
    // next(): advance to the index where the cumulative count reaches the current tick.
    for (; idx < h.countsArrayLength; idx++, fresh = true) {
      const c = h.getCountAtIndex(idx);
      if (fresh) {
        countTo += c;
        fresh = false;
        if (c !== 0) {
          const v = h.valueFromIndex(idx);
          const median = v + Math.floor(h.sizeOfEquivalentValueRange(v) / 2);
          medians.push(median);
          counts.push(c);
          sum += median * c;
        }
      }
      if (c !== 0 && (100 * countTo) / total >= level) break;
    }
    lines.push({ valueNs: h.highestEquivalentValue(h.valueFromIndex(idx)), percentileLevel: level, totalCount: countTo });
    const ticks = ticksPerHalfDistance * 2 ** (Math.floor(Math.log2(100 / (100 - level))) + 1);
    level += 100 / ticks;
  }
  const meanNs = total === 0 ? 0 : sum / total;
  let dev = 0;
  medians.forEach((m, i) => {
    dev += (m - meanNs) * (m - meanNs) * counts[i]!;
  });
  return {
    lines, meanNs, stddevNs: total === 0 ? 0 : Math.sqrt(dev / total), maxNs: h.maxValue, totalCount: total,
    bucketCount: h.bucketCount, subBucketCount: h.subBucketCount, digits: h.numberOfSignificantValueDigits,
  };
}

const formats = new Map<number, Intl.NumberFormat>();

function fixed(digits: number, width: number): (v: number) => string {
  // Intl rounds as Java's Formatter does (half-up on the decimal value); toFixed rounds the binary one.
  let f = formats.get(digits);
  if (f === undefined) {
    f = new Intl.NumberFormat('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits, useGrouping: false });
    formats.set(digits, f);
  }
  return (v) => f.format(v).padStart(width);
}

/** The distribution in HdrHistogram's text format, values divided by `ratio`. */
export function formatHgrm(d: PercentileDistribution, ratio = kHgrmUnitRatio): string {
  const value = fixed(d.digits, 12);
  const pct = fixed(12, 2);
  const inv = fixed(2, 14);
  const int = (n: number, w: number) => String(n).padStart(w);
  let out = '       Value     Percentile TotalCount 1/(1-Percentile)\n\n';
  for (const l of d.lines) {
    out += `${value(l.valueNs / ratio)} ${pct(l.percentileLevel / 100)} ${int(l.totalCount, 10)}`;
    out += l.percentileLevel < 100 ? ` ${inv(1 / (1 - l.percentileLevel / 100))}\n` : '\n';
  }
  out += `#[Mean    = ${value(d.meanNs / ratio)}, StdDeviation   = ${value(d.stddevNs / ratio)}]\n`;
  out += `#[Max     = ${value(d.maxNs / ratio)}, Total count    = ${int(d.totalCount, 12)}]\n`;
  out += `#[Buckets = ${int(d.bucketCount, 12)}, SubBuckets     = ${int(d.subBucketCount, 12)}]\n`;
  return out;
}

/** The .hgrm text of the encoded histograms merged (one run, or every run of a repeat set). */
export function hgrmText(encoded: readonly string[]): string {
  return formatHgrm(percentileDistribution(encoded));
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
 * plotter draws them, then the maximum at 1/(1-p) = N, the percentile (N-1)/N below which every
 * sample but the last lies (the plotter drops the 100 % line: its 1/(1-p) is infinite).
 */
export function percentilePoints(encoded: readonly string[]): { x: number; y: number }[] {
  const d = percentileDistribution(encoded);
  const pts = d.lines.filter((l) => l.percentileLevel < 100).map((l) => ({ x: 1 / (1 - l.percentileLevel / 100), y: l.valueNs }));
  const end = d.lines[d.lines.length - 1];
  if (end && end.percentileLevel === 100 && d.totalCount > (pts[pts.length - 1]?.x ?? 0)) pts.push({ x: d.totalCount, y: end.valueNs });
  return pts;
}
