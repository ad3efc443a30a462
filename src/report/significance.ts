/**
 * Statistics for repeats and comparisons, written out so the report depends on no statistics
 * package: Student's t distribution through the regularized incomplete beta function, the 95 %
 * confidence interval of a mean, Welch's unequal-variance t-test, and Holm's step-down correction
 * for a table of tests.
 *
 * Why Welch's t-test and not Mann-Whitney U: repeats here are few (3-10 runs a side). With 3 runs a
 * side the smallest two-sided p Mann-Whitney can give is 2/20 = 0.1, so it could never call a
 * difference significant at alpha = 0.05, however large; Welch's test can, and it does not assume
 * the two sides have the same variance (a strategy that takes locks is noisier than one that does
 * not). Its weakness, sensitivity to outliers, is what the median/min/max beside it show.
 */
import type { SampleStats } from '../scenario/result.js';

/** ln Γ(x) for x > 0: Lanczos' approximation (g = 7, 9 terms), relative error ~1e-15. */
const kLanczos = [
  0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059,
  12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7,
];
export function lnGamma(x: number): number {
  if (x < 0.5) return Math.log(Math.PI / Math.abs(Math.sin(Math.PI * x))) - lnGamma(1 - x); // reflection
  const z = x - 1;
  let a = kLanczos[0]!;
  const t = z + 7.5;
  for (let i = 1; i < 9; i++) a += kLanczos[i]! / (z + i);
  return 0.5 * Math.log(2 * Math.PI) + (z + 0.5) * Math.log(t) - t + Math.log(a);
}

/** The continued fraction of I_x(a, b), evaluated by the modified Lentz method. */
function betaContinuedFraction(a: number, b: number, x: number): number {
  const tiny = 1e-300;
  const qab = a + b;
  const qap = a + 1;
  const qam = a - 1;
  let c = 1;
  let d = 1 - (qab * x) / qap;
  if (Math.abs(d) < tiny) d = tiny;
  d = 1 / d;
  let h = d;
  for (let m = 1; m <= 300; m++) {
    const m2 = 2 * m;
    // Even step.
    let aa = (m * (b - m) * x) / ((qam + m2) * (a + m2));
    d = 1 + aa * d;
    if (Math.abs(d) < tiny) d = tiny;
    c = 1 + aa / c;
    if (Math.abs(c) < tiny) c = tiny;
    d = 1 / d;
    h *= d * c;
    // Odd step.
    aa = (-(a + m) * (qab + m) * x) / ((a + m2) * (qap + m2));
    d = 1 + aa * d;
    if (Math.abs(d) < tiny) d = tiny;
    c = 1 + aa / c;
    if (Math.abs(c) < tiny) c = tiny;
    d = 1 / d;
    const del = d * c;
    h *= del;
    if (Math.abs(del - 1) < 1e-15) break;
  }
  return h;
}

/** The regularized incomplete beta function I_x(a, b), a, b > 0, 0 <= x <= 1. */
export function incompleteBeta(x: number, a: number, b: number): number {
  if (x <= 0) return 0;
  if (x >= 1) return 1;
  const lnFront = lnGamma(a + b) - lnGamma(a) - lnGamma(b) + a * Math.log(x) + b * Math.log1p(-x);
  const front = Math.exp(lnFront);
  // The fraction converges fast for x < (a+1)/(a+b+2); use the symmetry I_x(a,b) = 1 - I_{1-x}(b,a) above it.
  if (x < (a + 1) / (a + b + 2)) return (front * betaContinuedFraction(a, b, x)) / a;
  return 1 - (front * betaContinuedFraction(b, a, 1 - x)) / b;
}

/** Two-sided p-value of Student's t with df degrees of freedom (df may be fractional, as Welch's). */
export function studentTTwoSidedP(t: number, df: number): number {
  if (!Number.isFinite(t)) return 0;
  return incompleteBeta(df / (df + t * t), df / 2, 0.5);
}

/** P(T <= t) for Student's t with df degrees of freedom. */
export function studentTCdf(t: number, df: number): number {
  const tail = studentTTwoSidedP(t, df) / 2;
  return t >= 0 ? 1 - tail : tail;
}

/** The q-quantile of Student's t (0 < q < 1), by bisection on the CDF (monotone, so it cannot miss). */
export function studentTQuantile(q: number, df: number): number {
  if (q === 0.5) return 0;
  if (q < 0.5) return -studentTQuantile(1 - q, df);
  let lo = 0;
  let hi = 1;
  while (studentTCdf(hi, df) < q) hi *= 2;
  for (let i = 0; i < 200 && hi - lo > 1e-13 * hi; i++) {
    const mid = (lo + hi) / 2;
    if (studentTCdf(mid, df) < q) lo = mid;
    else hi = mid;
  }
  return (lo + hi) / 2;
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** t(0.975, df) by df: a report asks for the same few degrees of freedom thousands of times. */
const t975 = new Map<number, number>();
function studentT975(df: number): number {
  let t = t975.get(df);
  if (t === undefined) {
    t = studentTQuantile(0.975, df);
    t975.set(df, t);
  }
  return t;
}

/** n, median, min, max, mean, sample stddev and the t-based 95 % CI of the mean of xs (n >= 1). */
export function sampleStats(xs: readonly number[]): SampleStats {
  const n = xs.length;
  const mean = xs.reduce((a, b) => a + b, 0) / n;
  const min = Math.min(...xs);
  const max = Math.max(...xs);
  const stddev = n > 1 ? Math.sqrt(xs.reduce((a, x) => a + (x - mean) ** 2, 0) / (n - 1)) : 0;
  const half = n > 1 ? studentT975(n - 1) * (stddev / Math.sqrt(n)) : null;
  return { n, median: median(xs), min, max, mean, stddev, ci95: half === null ? null : [mean - half, mean + half], deterministic: min === max };
}

export interface WelchResult {
  t: number;
  df: number;
  p: number;
}

/** Welch's t-test on two samples' statistics (each n >= 2, not both without variance). */
export function welchTTest(a: SampleStats, b: SampleStats): WelchResult {
  const va = (a.stddev * a.stddev) / a.n;
  const vb = (b.stddev * b.stddev) / b.n;
  const se = Math.sqrt(va + vb);
  const t = (b.mean - a.mean) / se;
  // Welch-Satterthwaite degrees of freedom.
  const df = (va + vb) ** 2 / ((va * va) / (a.n - 1) + (vb * vb) / (b.n - 1));
  return { t, df, p: studentTTwoSidedP(t, df) };
}

export type TestName = 'welch-t' | 'exact' | 'n/a';

/** The verdict on one difference: which test, its p-value, and (after correction) significance. */
export interface TestResult {
  test: TestName;
  p: number | null;
  t?: number;
  df?: number;
  /** Filled by holmCorrect() for Welch rows; decided directly for exact rows; null for n/a. */
  significant: boolean | null;
  note: string;
}

/**
 * Test B against A. One run on either side: no test. No variance on either side (modeled figures
 * on one worker repeat exactly): the figures are not samples of noise, so the difference is exact;
 * "significant" then means "differs at all". Otherwise Welch's t-test; significance is left for
 * holmCorrect(), which sees the whole table.
 */
export function testDifference(a: SampleStats, b: SampleStats): TestResult {
  if (a.n < 2 || b.n < 2) return { test: 'n/a', p: null, significant: null, note: 'n/a (1 run)' };
  if (a.stddev === 0 && b.stddev === 0) {
    const differs = a.mean !== b.mean;
    return { test: 'exact', p: differs ? 0 : 1, significant: differs, note: 'exact (no variance)' };
  }
  const w = welchTTest(a, b);
  return { test: 'welch-t', p: w.p, t: w.t, df: w.df, significant: null, note: `Welch t=${w.t.toFixed(2)}, df=${w.df.toFixed(1)}` };
}

/**
 * Holm's step-down correction over the Welch rows of one comparison: a table of dozens of
 * percentiles would otherwise show a "significant" wall-clock difference by chance in about one
 * row in twenty. Controls the family-wise error rate at alpha; sets `significant` on each.
 */
export function holmCorrect(tests: TestResult[], alpha: number): void {
  const welch = tests.filter((t) => t.test === 'welch-t').sort((x, y) => x.p! - y.p!);
  const m = welch.length;
  let rejecting = true;
  welch.forEach((t, i) => {
    rejecting = rejecting && t.p! <= alpha / (m - i);
    t.significant = rejecting;
  });
}
