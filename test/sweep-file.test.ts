/**
 * The sweep file and its plan: every refusal names the file's line; cells are the cross product
 * in file order with stable ids and seeds derived from the sweep seed and the id; shards
 * partition the cells.
 */
import { describe, expect, it } from 'vitest';
import { UsageError } from '../src/scenario/flags.js';
import { parseSweep } from '../src/sweep/sweep-file.js';
import { cellIdOf, cellSeed, parseShard, planSweep, shardCells } from '../src/sweep/plan.js';

const harness = { name: 'kvm-mmu-harness', version: '0.0.0', commit: null, dirty: null };

function refusal(text: string): string {
  try {
    planSweep(parseSweep(text, 's.yaml'), harness);
  } catch (e) {
    expect(e).toBeInstanceOf(UsageError);
    return (e as Error).message;
  }
  throw new Error('the sweep was accepted');
}

const good = `name: t
scenario: dirty-log-perf
seed: 5
repeat: 2
base:
  -v: 1
  workers: 1
axes:
  dirty: [pml, wrprot, ring]
  bytes: [8M, 16M]
`;

describe('sweep file', () => {
  it('refuses bad files with the line that is wrong', () => {
    expect(refusal('scenario: nope\naxes: { dirty: [pml] }\n')).toMatch(/^EINVAL: s\.yaml:1: unknown scenario 'nope'/);
    expect(refusal('scenario: dirty-log-perf\naxes:\n  dirty: [pml, bogus]\n')).toMatch(/^EINVAL: s\.yaml:3: axes\.dirty\.1: --dirty: 'bogus' is not one of/);
    expect(refusal('scenario: dirty-log-perf\naxes:\n  dirty: [pml]\n  nosuch: [1]\n')).toMatch(/^EINVAL: s\.yaml:4: axes\.nosuch: dirty-log-perf has no flag 'nosuch'/);
    expect(refusal('scenario: dirty-log-perf\nbase:\n  json: out.json\naxes: { dirty: [pml] }\n')).toMatch(/^EINVAL: s\.yaml:3: base\.json: --json cannot be set in a sweep/);
    expect(refusal('scenario: dirty-log-perf\naxes:\n  seed: [1, 2]\n')).toMatch(/^EINVAL: s\.yaml:3: axes\.seed: --seed cannot be set .*derived/);
    expect(refusal('scenario: dirty-log-perf\nrepeats: 3\naxes: { dirty: [pml] }\n')).toMatch(/^EINVAL: s\.yaml:2: the sweep: unknown key 'repeats'/);
    expect(refusal('scenario: dirty-log-perf\naxes:\n  dirty: pml\n')).toMatch(/^EINVAL: s\.yaml:3: axes\.dirty: an axis is a list/);
    expect(refusal('scenario: dirty-log-perf\nbase: { bytes: 8M }\naxes:\n  -b: [8M, 16M]\n')).toMatch(/^EINVAL: s\.yaml:4: axes\.-b: --bytes is also in base/);
    expect(refusal('scenario: dirty-log-perf\naxes:\n  -v: [1, 0]\n')).toMatch(/^EINVAL: s\.yaml:3: axes\.-v\.1: -v\/--vcpus must be at least 1/);
    expect(refusal('scenario: dirty-log-perf\naxes:\n  random: [yes]\n')).toMatch(/^EINVAL: s\.yaml:3: axes\.random\.0: --random is a switch/);
    expect(refusal('scenario: dirty-log-perf\nrepeat: 0\naxes: { dirty: [pml] }\n')).toMatch(/^EINVAL: s\.yaml:2: repeat must be >= 1/);
    expect(refusal('scenario: dirty-log-perf\naxes: { dirty: [pml, pml] }\n')).toMatch(/^EINVAL: s\.yaml:2: axes\.dirty must NOT have duplicate items/);
    expect(refusal('scenario: dirty-log-perf\naxes:\n  dirty: [pml\n')).toMatch(/^EINVAL: s\.yaml:\d+: not valid YAML\/JSON/);
    expect(refusal('{"scenario": "dirty-log-perf",\n "axes": {\n  "dirty": ["pml"],\n  "vcpus": [1, 2000]}}\n')).toMatch(/^EINVAL: s\.yaml:4: axes\.vcpus\.1: .*at most 1024/);
    // A combination that `mmuh run` would refuse is refused for the whole sweep, naming the cell.
    expect(refusal('scenario: dirty-log-perf\naxes:\n  split: [eager, on-fault]\n')).toMatch(/^EINVAL: s\.yaml: cell split=eager: --split has no effect with -s anonymous/);
  });

  it('plans the cross product in file order, with stable ids, derived seeds and one run per repeat', () => {
    const p = planSweep(parseSweep(good, 's.yaml'), harness);
    expect(p.cells.map((c) => c.id)).toEqual([
      'dirty=pml,bytes=8M', 'dirty=pml,bytes=16M', 'dirty=wrprot,bytes=8M', 'dirty=wrprot,bytes=16M', 'dirty=ring,bytes=8M', 'dirty=ring,bytes=16M',
    ]);
    for (const c of p.cells) {
      expect(c.seed).toBe(cellSeed(5, c.id));
      expect(c.argv.slice(-2)).toEqual(['--seed', String(c.seed)]);
      expect(c.argv).toContain('--vcpus');
      expect(c.runs.map((r) => r.runId)).toEqual([`${c.id}#1`, `${c.id}#2`]);
      expect(c.runs.every((r) => r.argv === c.argv)).toBe(true);
    }
    expect(new Set(p.cells.map((c) => c.seed)).size).toBe(p.cells.length);
    // Stable: the same file plans the same; another seed or one more axis value is another sweep,
    // but the cells it shares keep their seeds when only the values change.
    const again = planSweep(parseSweep(good, 'other-name.yaml'), harness);
    expect(again.sweep.id).toBe(p.sweep.id);
    expect(again.cells).toEqual(p.cells);
    const more = planSweep(parseSweep(good.replace('[8M, 16M]', '[8M, 16M, 32M]'), 's.yaml'), harness);
    expect(more.sweep.id).not.toBe(p.sweep.id);
    expect(more.cells.find((c) => c.id === 'dirty=pml,bytes=8M')!.seed).toBe(p.cells[0]!.seed);
    const reseeded = planSweep(parseSweep(good.replace('seed: 5', 'seed: 6'), 's.yaml'), harness);
    expect(reseeded.cells[0]!.seed).not.toBe(p.cells[0]!.seed);
    expect(p.sweep.base).toEqual({ vcpus: 1, workers: 1 });
  });

  it('keeps ids file- and job-id-safe and unique', () => {
    expect(cellIdOf({ dirty: 'pml', bytes: '8M' })).toBe('dirty=pml,bytes=8M');
    const a = cellIdOf({ 'cost-model': 'a/b:c' });
    const b = cellIdOf({ 'cost-model': 'a:b/c' });
    expect(a).toMatch(/^cost-model=a_b_c~[0-9a-f]{8}$/);
    expect(a).not.toBe(b);
    expect(a).not.toMatch(/[:/]/);
  });

  it('shards partition the cells: every cell in exactly one shard', () => {
    const p = planSweep(parseSweep(good, 's.yaml'), harness);
    for (const n of [1, 2, 4, 7]) {
      const ids = Array.from({ length: n }, (_, i) => shardCells(p, i, n).map((c) => c.id)).flat();
      expect(ids.sort()).toEqual(p.cells.map((c) => c.id).sort());
    }
    expect(shardCells(p, 1, 2).map((c) => c.id)).toEqual(['dirty=pml,bytes=16M', 'dirty=wrprot,bytes=16M', 'dirty=ring,bytes=16M']);
    expect(parseShard('3/4')).toEqual({ i: 3, n: 4 });
    expect(() => parseShard('4/4')).toThrow(/0 <= i < n/);
    expect(() => parseShard('1-4')).toThrow(/give i\/n/);
  });
});
