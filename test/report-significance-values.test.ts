// The statistics behind repeats and `mmuh compare`, against reference values computed with
// scipy 1.17 (stats.t.sf, stats.t.ppf, special.betainc, stats.ttest_ind(equal_var=False)),
// hard-coded here so the test needs nothing but the harness.
import { describe, expect, it } from 'vitest';
import {
  holmCorrect, incompleteBeta, sampleStats, studentTQuantile, studentTTwoSidedP, testDifference, welchTTest, type TestResult,
} from '../src/report/significance.js';

describe('Student t through the regularized incomplete beta function', () => {
  it('I_x(a, b) matches betainc', () => {
    expect(incompleteBeta(0.5, 2, 3)).toBeCloseTo(0.6875, 12);
    expect(incompleteBeta(0.3, 0.5, 0.5)).toBeCloseTo(0.36901011956554536, 12);
    expect(incompleteBeta(0.4, 10, 20)).toBeCloseTo(0.7853183897628262, 12);
    expect(incompleteBeta(0, 2, 3)).toBe(0);
    expect(incompleteBeta(1, 2, 3)).toBe(1);
  });
  it('two-sided p: t=2.0, df=10 -> 0.0734; t=1, df=1 (Cauchy) -> 0.5; fractional df', () => {
    expect(studentTTwoSidedP(2.0, 10)).toBeCloseTo(0.07338803477074037, 10);
    expect(studentTTwoSidedP(-2.0, 10)).toBeCloseTo(0.07338803477074037, 10);
    expect(studentTTwoSidedP(1, 1)).toBeCloseTo(0.5, 12);
    expect(studentTTwoSidedP(3.5, 2.5)).toBeCloseTo(0.052345546960320344, 10);
    expect(studentTTwoSidedP(0, 7)).toBeCloseTo(1, 12);
  });
  it('0.975 quantiles for df 1, 2, 4, 10, 30', () => {
    const want = [[1, 12.70620474], [2, 4.30265273], [4, 2.77644511], [10, 2.22813885], [30, 2.04227246]] as const;
    for (const [df, t] of want) expect(studentTQuantile(0.975, df), `df ${df}`).toBeCloseTo(t, 7);
    expect(studentTQuantile(0.025, 10)).toBeCloseTo(-2.22813885, 7);
  });
});

describe('sample statistics and Welch', () => {
  it('mean, stddev (n-1), median and the t-based 95% CI of the mean', () => {
    const s = sampleStats([1, 2, 3, 4, 6]);
    expect(s.mean).toBeCloseTo(3.2, 12);
    expect(s.stddev).toBeCloseTo(Math.sqrt(3.7), 12);
    expect(s.median).toBe(3);
    const half = 2.7764451051977987 * Math.sqrt(3.7) / Math.sqrt(5);
    expect(s.ci95![0]).toBeCloseTo(3.2 - half, 9);
    expect(s.ci95![1]).toBeCloseTo(3.2 + half, 9);
    expect(s.deterministic).toBe(false);
    expect(sampleStats([7]).ci95).toBeNull();
    expect(sampleStats([5, 5, 5])).toMatchObject({ stddev: 0, deterministic: true, ci95: [5, 5] });
  });
  it('Welch: Wikipedia example 1 (t 2.4554, df 24.99, p 0.0214) and a 3-vs-3 case', () => {
    const a = [27.5, 21.0, 19.0, 23.6, 17.0, 17.9, 16.9, 20.1, 21.9, 22.6, 23.1, 19.6, 19.0, 21.7, 21.4];
    const b = [27.1, 22.0, 20.8, 23.4, 23.4, 23.5, 25.8, 22.0, 24.8, 20.2, 21.9, 22.1, 22.9, 20.5, 24.4];
    const w = welchTTest(sampleStats(a), sampleStats(b));
    expect(w.t).toBeCloseTo(2.455356398286006, 9);
    expect(w.df).toBeCloseTo(24.988529290231416, 9);
    expect(w.p).toBeCloseTo(0.021378001462866992, 9);
    const w3 = welchTTest(sampleStats([10.2, 12.0, 11.5]), sampleStats([10.1, 10.3, 9.9]));
    expect(w3.t).toBeCloseTo(-2.065352913384677, 9);
    expect(w3.df).toBeCloseTo(2.1849312011900337, 9);
    expect(w3.p).toBeCloseTo(0.16399745091846316, 9);
  });
});

describe('testDifference and Holm', () => {
  it('one run: n/a; no variance: exact; otherwise Welch', () => {
    expect(testDifference(sampleStats([1]), sampleStats([2, 3])).note).toBe('n/a (1 run)');
    expect(testDifference(sampleStats([4, 4, 4]), sampleStats([5, 5, 5]))).toMatchObject({ test: 'exact', p: 0, significant: true });
    expect(testDifference(sampleStats([4, 4, 4]), sampleStats([4, 4, 4]))).toMatchObject({ test: 'exact', p: 1, significant: false });
    expect(testDifference(sampleStats([1, 2, 3]), sampleStats([2, 3, 4])).test).toBe('welch-t');
  });
  it('Holm step-down: rejects in order of p while p <= alpha/(m-i), then stops', () => {
    const mk = (p: number): TestResult => ({ test: 'welch-t', p, significant: null, note: '' });
    const ts = [mk(0.04), mk(0.001), mk(0.013), mk(0.2)];
    holmCorrect(ts, 0.05);
    // Sorted: 0.001 <= 0.05/4 yes; 0.013 <= 0.05/3 yes; 0.04 <= 0.05/2 no -> stop; 0.2 no.
    expect(ts.map((t) => t.significant)).toEqual([false, true, true, false]);
    const exact: TestResult = { test: 'exact', p: 0, significant: true, note: '' };
    holmCorrect([exact], 0.05);
    expect(exact.significant).toBe(true);
  });
});
