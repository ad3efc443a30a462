/**
 * The local executor's defaults and its progress: --jobs fits the cores (over each run's worker
 * threads) and the available memory (over the largest cell's host-sizing estimate); on a terminal
 * the progress is one line redrawn in place, elsewhere one line per finished run.
 */
import { availableParallelism } from 'node:os';
import { describe, expect, it } from 'vitest';
import { parseSweep } from '../src/sweep/sweep-file.js';
import { planSweep } from '../src/sweep/plan.js';
import { defaultJobs } from '../src/sweep/cell-run.js';
import { sweepProgress } from '../src/sweep/progress.js';

const harness = { name: 'kvm-mmu-harness', version: '0', commit: null, dirty: null };
const plan = (base: string, axes: string) => {
  const p = planSweep(parseSweep(`scenario: demand-paging\nbase: ${base}\naxes: ${axes}\n`, 's.yaml'), harness);
  return { p, cells: p.cells };
};

describe('sweep --jobs default', () => {
  it('divides the cores by the runs\' worker threads', () => {
    const { p, cells } = plan('{ workers: 1, bytes: 8M }', '{ vcpus: [1, 2, 3, 4, 5, 6, 7, 8] }');
    const one = defaultJobs(p, cells, 64 * 2 ** 30);
    expect(one.jobs).toBe(Math.min(availableParallelism(), 8));
    const { p: p2, cells: c2 } = plan('{ workers: 2, bytes: 8M }', '{ vcpus: [2, 4] }');
    expect(defaultJobs(p2, c2, 64 * 2 ** 30).jobs).toBe(Math.max(1, Math.min(2, Math.floor(availableParallelism() / 2))));
  });

  it('divides the available memory by the largest cell\'s estimate', () => {
    // 256 GiB of guest memory at 4K: its metadata (page tables, frame table) is ~2 GiB by the estimate.
    const { p, cells } = plan('{ workers: 1 }', '{ bytes: [8M, 256G] }');
    const small = defaultJobs(p, cells, 1.5 * 2 ** 30);
    expect(small.jobs).toBe(1);
    expect(small.why).toMatch(/MiB per run = 1$/);
    const roomy = defaultJobs(p, cells, 1024 * 2 ** 30);
    expect(roomy.jobs).toBe(Math.min(availableParallelism(), 2));
  });
});

describe('sweep progress', () => {
  it('on a terminal redraws one status line and prints finished runs above it', () => {
    const out: string[] = [];
    const pr = sweepProgress({ isTTY: true, write: (s) => out.push(s) }, false);
    pr.start(3, 1);
    pr.running('a#1', 1);
    pr.finished('a#1', 'ok', 1500, null);
    pr.running('a#1', -1);
    pr.close();
    const text = out.join('');
    expect(text).toContain('sweep: 1 of 3 runs already complete (--resume)');
    expect(text).toMatch(/\r\x1b\[2K\[1\/3 done, 1 running\] 0:00  a#1/);
    expect(text).toContain('\r\x1b[2Ksweep: [2/3] a#1 ok 1.5 s\n');
    expect(text.endsWith('\r\x1b[2K')).toBe(true);
  });

  it('elsewhere prints one plain line per finished run, and nothing when quiet', () => {
    const out: string[] = [];
    const pr = sweepProgress({ isTTY: false, write: (s) => out.push(s) }, false);
    pr.start(2, 0);
    pr.running('b#1', 1);
    pr.finished('b#1', 'failed', 200, 'EFAULT: x');
    pr.close();
    expect(out).toEqual(['sweep: [1/2] b#1 failed 0.2 s: EFAULT: x\n']);
    const quiet: string[] = [];
    const q = sweepProgress({ isTTY: true, write: (s) => quiet.push(s) }, true);
    q.start(1, 0);
    q.finished('c#1', 'ok', 1, null);
    q.close();
    expect(quiet).toEqual([]);
  });
});
