// `mmuh compare` / `mmuh report` refuse bad input with one line on stderr and exit 2, before
// writing anything: an unreadable file, a directory, not JSON, another schema, a run that did not
// complete, results that measured different work (another scenario, other sizes), bad usage.
// Good input exits 0 whatever the verdict.
import { describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mmuh, oneLine } from './fixtures/mmuh.js';

const example = join(__dirname, '..', 'reports', 'example', 'dirty-log-perf-pml.json');
const dir = mkdtempSync(join(tmpdir(), 'mmuh-compare-bad-'));
const base = JSON.parse(readFileSync(example, 'utf8')) as Record<string, unknown> & { config: Record<string, unknown> };

function variant(name: string, change: (r: typeof base) => unknown): string {
  const file = join(dir, name);
  const r = structuredClone(base);
  writeFileSync(file, typeof change(r) === 'string' ? (change(r) as string) : JSON.stringify(r));
  return file;
}

const cases: [string, string[], RegExp][] = [
  ['a missing file', [example, join(dir, 'nope.json')], /^mmuh: ENOENT: cannot read '.*nope\.json' \(no such file\)$/],
  ['a directory', [example, dir], /^mmuh: EISDIR: cannot read '.*' \(a directory\)$/],
  ['not JSON', [example, variant('text.json', () => 'Test iterations: 2\n')], /^mmuh: EINVAL: '.*text\.json' is not JSON \(/],
  ['another schema', [example, variant('bench.json', (r) => { r.schema = 'kvm-mmu-harness/bench@1'; })], /^mmuh: EINVAL: '.*bench\.json' has schema 'kvm-mmu-harness\/bench@1', expected 'kvm-mmu-harness\/result@1'$/],
  ['no schema', [example, variant('plain.json', () => '{"phases": []}')], /has schema none, expected/],
  ['a failed run', [example, variant('failed.json', (r) => { r.status = 'failed'; r.error = { errno: 'EFAULT', message: 'KVM_RUN: host out of memory' }; })], /^mmuh: EINVAL: '.*failed\.json' is a failed run \(KVM_RUN: host out of memory\): its figures are partial/],
  ['another scenario', [example, variant('dp.json', (r) => { r.scenario = 'demand-paging'; })], /^mmuh: EINVAL: '.*dp\.json' is not comparable with '.*dirty-log-perf-pml\.json': scenario dirty-log-perf vs demand-paging$/],
  ['other sizes', [example, variant('big.json', (r) => { r.config.bytes = 2 ** 27; r.config.vcpus = 2; })], /is not comparable with .*: vcpus 1 vs 2, bytes 67108864 vs 134217728$/],
];

describe('bad inputs: one line, exit 2', () => {
  for (const [what, files, re] of cases) {
    it(`compare refuses ${what}`, () => {
      const c = mmuh(['compare', ...files]);
      expect(c.code, c.err).toBe(2);
      expect(oneLine(c)).toMatch(re);
      expect(c.out).toBe('');
    });
  }
  it('report refuses the same inputs (through the same loader) and writes nothing', () => {
    for (const [what, files, re] of [cases[0]!, cases[3]!, cases[7]!]) {
      const out = join(dir, `r-${what.replace(/\W/g, '_')}`, 'x.html');
      const r = mmuh(['report', ...files, '-o', out]);
      expect(r.code, r.err).toBe(2);
      expect(oneLine(r)).toMatch(re);
      expect(existsSync(out)).toBe(false);
    }
  });
  it('usage: one file, no -o, an -o that is not .html, an unknown flag, labels that do not fit', () => {
    const usage: [string[], RegExp][] = [
      [['compare', example], /needs two or more result files/],
      [['report', example], /needs -o NAME\.html/],
      [['report', example, '-o', join(dir, 'x.txt')], /EINVAL: -o .*x\.txt: give an \.html file name/],
      [['compare', example, example, '--bogus'], /unknown flag '--bogus'/],
      [['compare', example, example, '--label', 'a'], /EINVAL: --label gives 1 label\(s\) for 2 file\(s\)/],
      [['compare', example, example, '--label', 'a,a'], /labels must be non-empty and distinct/],
    ];
    for (const [args, re] of usage) {
      const r = mmuh(args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(oneLine(r)).toMatch(re);
    }
  });
  it('good input exits 0, with labels from --label', () => {
    const r = mmuh(['compare', example, example, '--label', 'before,after']);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/^metric +clock +before \(baseline\) +after +after relative/m);
    const sub = join(dir, 'new', 'dir');
    mkdirSync(sub, { recursive: true });
    const rep = mmuh(['report', example, '-o', join(sub, 'one.html')]);
    expect(rep.code, rep.err).toBe(0);
    expect(existsSync(join(sub, 'one.md'))).toBe(true);
  });
});
