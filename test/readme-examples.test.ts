// The README stays true: its library snippet runs as written (extracted from README.md and run
// against the built package by its own name), and every `node bin/mmuh.js run …` example
// parses and passes the pre-run checks.
import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { findScenario } from '../src/scenario/index.js';
import { parseFlags } from '../src/scenario/flags.js';
import { parseAllDocuments } from 'yaml';
import { loadSweepFile, parseSweep } from '../src/sweep/sweep-file.js';
import { planSweep } from '../src/sweep/plan.js';

const root = join(__dirname, '..');
const readme = readFileSync(join(root, 'README.md'), 'utf8');

describe('README', () => {
  it('the library snippet runs and prints what its comments say', () => {
    const at = readme.indexOf('### As a library');
    const start = readme.indexOf('```ts\n', at) + 6;
    const code = readme.slice(start, readme.indexOf('```', start));
    expect(code).toMatch(/from 'kvm-mmu-harness'/);
    // Inside the package directory, 'kvm-mmu-harness' resolves to the package itself (exports).
    const dir = mkdtempSync(join(root, 'test', '.readme-'));
    try {
      writeFileSync(join(dir, 'snippet.mjs'), code);
      const out = execFileSync(process.execPath, [join(dir, 'snippet.mjs')], { encoding: 'utf8' });
      const expected = [...code.matchAll(/console\.log\(.*\/\/ (.*)$/gm)].map((m) => m[1]!.trim());
      expect(out.trim().split('\n')).toEqual(expected);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
  it('every `mmuh run` example parses and passes the scenario checks', () => {
    const lines = [...readme.matchAll(/^node bin\/mmuh\.js run (\S+)(.*?)(?:\s+#.*)?$/gm)];
    expect(lines.length).toBeGreaterThanOrEqual(5);
    for (const [line, name, rest] of lines) {
      if (rest!.includes('--help')) continue;
      const s = findScenario(name!);
      expect(s, line).toBeDefined();
      const f = parseFlags(s!.flags, rest!.trim().split(/\s+/).filter((x) => x.length > 0));
      expect(() => s!.check?.(f), line).not.toThrow();
    }
  });
  it('every `mmuh sweep` example names a sweep file that plans', () => {
    const files = [...readme.matchAll(/^node bin\/mmuh\.js sweep (\S+)/gm)].map((m) => m[1]!);
    expect(files.length).toBeGreaterThanOrEqual(3);
    const harness = { name: 'kvm-mmu-harness', version: '0', commit: null, dirty: null };
    for (const f of new Set(files)) expect(planSweep(loadSweepFile(join(root, f)), harness).cells.length, f).toBeGreaterThan(0);
  });
  it('the Kubernetes example is an Indexed Job whose shards cover the sweep it mounts', () => {
    const text = readFileSync(join(root, 'examples', 'kubernetes', 'sweep-indexed-job.yaml'), 'utf8');
    const docs = parseAllDocuments(text).map((d) => d.toJS() as Record<string, any>);
    const cm = docs.find((d) => d.kind === 'ConfigMap')!;
    const job = docs.find((d) => d.kind === 'Job')!;
    expect(job.spec.completionMode).toBe('Indexed');
    const cmd = (job.spec.template.spec.containers[0].command as string[]).join(' ');
    const shards = Number(/--shard "\$JOB_COMPLETION_INDEX\/(\d+)"/.exec(cmd)![1]);
    expect(shards).toBe(job.spec.completions);
    const file = /sweep \/sweep\/(\S+)/.exec(cmd)![1]!;
    const harness = { name: 'kvm-mmu-harness', version: '0', commit: null, dirty: null };
    const mounted = planSweep(parseSweep(cm.data[file], file), harness);
    // The ConfigMap carries the example sweep: the same cells.
    const example = planSweep(loadSweepFile(join(root, 'examples', 'sweeps', 'dirty-strategies.yaml')), harness);
    expect(mounted.cells.map((c) => [c.id, c.argv])).toEqual(example.cells.map((c) => [c.id, c.argv]));
    for (const f of ['sweep-merge-job.yaml']) expect(parseAllDocuments(readFileSync(join(root, 'examples', 'kubernetes', f), 'utf8')).every((d) => d.errors.length === 0)).toBe(true);
  });
  it('the setup commands work on a fresh clone (npm ci before npm test)', () => {
    expect(readme).toMatch(/npm ci && npm test/);
  });
});
