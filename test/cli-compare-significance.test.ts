// `mmuh compare` on real runs: two strategies (pml vs wrprot, 3 runs each) differ significantly
// where the model says they must (wrprot's second iteration takes fast page faults that PML does
// not: its modeled time differs exactly); two repeat sets of one configuration show no
// significant difference in any modeled figure (they repeat exactly) — wall figures are tested
// with Welch's t but not asserted here: they carry this shared machine's drift between the sets.
// One run a side: "n/a (1 run)".
import { beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mmuh } from './fixtures/mmuh.js';
import { compareInputs } from '../src/report/comparison.js';
import { loadInputs } from '../src/report/inputs.js';

const dir = mkdtempSync(join(tmpdir(), 'mmuh-compare-'));
const f = (n: string) => join(dir, n);

function run(name: string, dirty: string): void {
  const r = mmuh(['run', 'dirty-log-perf', '-b', '16M', '-i', '2', '--workers', '1', '--dirty', dirty, '--repeat', '3', '-q', '--json', f(name)]);
  if (r.code !== 0) throw new Error(`mmuh run --dirty ${dirty}: exit ${r.code}: ${r.err}`);
}

beforeAll(() => {
  run('pml-a.json', 'pml');
  run('wrprot.json', 'wrprot');
  run('pml-b.json', 'pml');
}, 120_000);

describe('mmuh compare', () => {
  it('pml vs wrprot: significant where the strategies differ, exit 0', () => {
    const r = mmuh(['compare', f('pml-a.json'), f('wrprot.json')]);
    expect(r.code, r.err).toBe(0);
    expect(r.err).toBe('');
    expect(r.out).toMatch(/^iteration-2 +modeled +.* exact \(no variance\) +- +yes$/m);
    expect(r.out).toMatch(/^wrprot vs pml: \d+ of \d+ tested figures differ significantly \([1-9]\d* modeled/m);
    const c = compareInputs(loadInputs([f('pml-a.json'), f('wrprot.json')], null));
    expect(c.labels).toEqual(['pml', 'wrprot']);
    const it2 = c.rows.find((x) => x.kind === 'phase' && x.name === 'iteration-2' && x.clock === 'modeled')!;
    expect(it2.vs[1]!.test).toMatchObject({ test: 'exact', significant: true });
    expect(it2.vs[1]!.relative).toBeGreaterThan(2);
    // Populating is the same work under both strategies: its modeled time is the same, not significant.
    const pop = c.rows.find((x) => x.kind === 'phase' && x.name === 'populate' && x.clock === 'modeled')!;
    expect(pop.vs[1]!.test).toMatchObject({ test: 'exact', significant: false, p: 1 });
    // Wall rows are Welch tests with a p-value, decided after Holm's correction.
    const wall = c.rows.filter((x) => x.clock === 'wall' && x.vs[1] !== null);
    expect(wall.length).toBeGreaterThan(10);
    for (const w of wall) {
      expect(w.vs[1]!.test.test).toBe('welch-t');
      expect(w.vs[1]!.test.p).toBeGreaterThanOrEqual(0);
      expect(w.vs[1]!.test.p).toBeLessThanOrEqual(1);
      expect(typeof w.vs[1]!.test.significant).toBe('boolean');
    }
  });
  it('two repeat sets of one configuration: no modeled figure differs significantly', () => {
    const c = compareInputs(loadInputs([f('pml-a.json'), f('pml-b.json')], null));
    // Nothing differs in the configuration: the labels are the file names.
    expect(c.labels).toEqual(['pml-a', 'pml-b']);
    const modeled = c.rows.filter((x) => x.clock === 'modeled' && x.vs[1] !== null);
    expect(modeled.length).toBeGreaterThan(10);
    for (const m of modeled) expect(m.vs[1]!.test, `${m.name} ${m.metric}`).toMatchObject({ test: 'exact', significant: false, p: 1 });
    const r = mmuh(['compare', f('pml-a.json'), f('pml-b.json'), '--markdown']);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/^\| metric \| clock \| pml-a \(baseline\) \| pml-b \| pml-b relative \| test \| p \| significant \|$/m);
    expect(r.out).toMatch(/^pml-b vs pml-a: (no significant difference in \d+ tested figures|\d+ of \d+ tested figures differ significantly \(0 modeled, \d+ wall\))$/m);
  });
  it('one run a side: n/a (1 run), and still exit 0', () => {
    for (const [src, dst] of [['pml-a.json', 'one-a.json'], ['wrprot.json', 'one-b.json']]) {
      writeFileSync(f(dst), JSON.stringify(JSON.parse(readFileSync(f(src), 'utf8')).repeats.runs[0]));
    }
    const r = mmuh(['compare', f('one-a.json'), f('one-b.json')]);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/^iteration-2 +modeled +.* n\/a \(1 run\) +- +-$/m);
    expect(r.out).toMatch(/no test \(1 run a side; use --repeat N\)/);
  });
});
