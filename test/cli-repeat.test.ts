// `mmuh run … --repeat N`: N whole runs (fresh host and VMs each), every run kept in the result,
// the aggregate per phase and per histogram percentile computed from them; the top level stays
// run 1's (a single-run reader reads it as before); the terminal shows the aggregate, the cost
// model (name@version) and what modeled time assumes; the result names the harness commit.
import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mmuh, oneLine } from './fixtures/mmuh.js';
import { median, sampleStats } from '../src/report/significance.js';
import type { RunResult } from '../src/scenario/result.js';

describe('--repeat', () => {
  it('3 runs of dirty-log-perf: every run kept, the aggregate is theirs, modeled figures exact', () => {
    const file = join(mkdtempSync(join(tmpdir(), 'mmuh-repeat-')), 'r.json');
    const r = mmuh(['run', 'dirty-log-perf', '-b', '16M', '-i', '2', '--workers', '1', '--repeat', '3', '--json', file]);
    expect(r.code, r.err).toBe(0);
    const j = JSON.parse(readFileSync(file, 'utf8')) as RunResult;
    const rep = j.repeats!;
    expect(rep.n).toBe(3);
    expect(rep.runs).toHaveLength(3);
    expect(rep.seedPolicy).toBe('same');
    expect(rep.runs.every((x) => x.seed === j.seed && x.repeats === undefined)).toBe(true);
    // Fresh state each run: every run populated its own VM (16M / 4K = 4096 faults each).
    expect(rep.runs.map((x) => x.stats.populate!.total.pf_taken)).toEqual([4096, 4096, 4096]);
    // The top level is run 1's.
    expect(j.phases).toEqual(rep.runs[0]!.phases);
    for (const p of rep.aggregate.phases) {
      const wall = rep.runs.map((x) => x.phases.find((q) => q.name === p.name)!.wallNs);
      const modeled = rep.runs.map((x) => x.phases.find((q) => q.name === p.name)!.modeledNs);
      expect(p.wall.median).toBe(median(wall));
      expect(p.wall.min).toBe(Math.min(...wall));
      expect(p.wall.ci95).toEqual(sampleStats(wall).ci95);
      // One worker, one seed: modeled time repeats exactly, its CI is a point.
      expect(p.modeled.deterministic, p.name).toBe(true);
      expect(p.modeled.ci95).toEqual([modeled[0], modeled[0]]);
    }
    const key = 'populate.page_fault/wall';
    expect(rep.aggregate.histograms[key]!.p99.median).toBe(median(rep.runs.map((x) => x.histograms[key]!.p99)));
    expect(rep.aggregate.ci).toMatch(/Student's t 95%/);
    expect(rep.aggregate.notes.join(' ')).toMatch(/deterministic for a seed on one worker/);
    // Terminal: the aggregate table, the model line, the repeats line.
    expect(r.out).toMatch(/phase \(median of 3\)/);
    expect(r.out).toMatch(/populate .*\(exact\)/);
    expect(r.out).toMatch(/^modeled: cost model default@[0-9a-f]{12}; modeled time assumes each vCPU runs on its own physical CPU/m);
    expect(r.out).toMatch(/^repeats: 3 runs/m);
    expect((r.out.match(/^# repeat \d of 3$/gm) ?? []).length).toBe(2);
    // The result says which harness and cost model made it.
    expect(j.model!.costModel.name).toBe('default');
    expect(j.model!.costModel.version).toMatch(/^[0-9a-f]{12}$/);
    let head: string | null = null;
    try {
      head = execFileSync('git', ['rev-parse', 'HEAD'], { cwd: join(__dirname, '..'), encoding: 'utf8' }).trim();
    } catch {
      // not a checkout
    }
    expect(j.harness!.commit).toBe(head);
  });
  it('one run stays a single run (no repeats field); MMUH_GIT_COMMIT names the commit', () => {
    const file = join(mkdtempSync(join(tmpdir(), 'mmuh-repeat-')), 'r.json');
    const r = mmuh(['run', 'demand-paging', '-b', '4M', '--workers', '1', '-q', '--json', file], { MMUH_GIT_COMMIT: 'abcdef1234567' });
    expect(r.code, r.err).toBe(0);
    const j = JSON.parse(readFileSync(file, 'utf8')) as RunResult;
    expect(j.repeats).toBeUndefined();
    expect(j.harness).toMatchObject({ name: 'kvm-mmu-harness', commit: 'abcdef1234567' });
  });
  it('--repeat 0 is refused: one line, exit 2', () => {
    const r = mmuh(['run', 'demand-paging', '-b', '4M', '--repeat', '0']);
    expect(r.code).toBe(2);
    expect(oneLine(r)).toMatch(/--repeat must be at least 1/);
  });
});
