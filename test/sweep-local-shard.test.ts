/**
 * Local sweeps and batch shards through the CLI: a 4-cell x 2-repeat sweep run locally and as
 * `--shard 0/2` + `--shard 1/2` + `mmuh merge` gives the same modeled figures, counters,
 * histogram counts and stats per cell (one worker per run); the merge adds histograms and sums
 * counters over a cell's repeats; a missing shard's cells are named; --resume keeps complete
 * results; a run that fails twice is a failed cell with its error while the sweep finishes; a run
 * from another harness is refused at merge.
 */
import { mkdtempSync, readFileSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mmuh, oneLine } from './fixtures/mmuh.js';
import { figures, readSweep, writeSweep } from './fixtures/sweep.js';
import type { SweepResult } from '../src/sweep/sweep-result.js';
import type { RunResult } from '../src/scenario/result.js';

let tmp: string;
let file: string;
let local: SweepResult;

const kSweep = `name: local-shard
scenario: dirty-log-perf
seed: 11
repeat: 2
base: { vcpus: 1, workers: 1, iterations: 2 }
axes:
  dirty: [pml, wrprot]
  bytes: [8M, 12M]
`;

beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'mmuh-sweep-local-'));
  file = writeSweep(tmp, 'local-shard.yaml', kSweep);
  const r = mmuh(['sweep', file, '--out', join(tmp, 'local'), '--jobs', '2', '-q']);
  expect(r.err).toBe('');
  expect(r.code).toBe(0);
  expect(r.out).toMatch(/^sweep local-shard-[0-9a-f]{8}: 4 cells \(4 ok, 0 failed, 0 missing\), 8 runs in [\d.]+ s -> /);
  local = readSweep(join(tmp, 'local', 'sweep.json'));
});

afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('mmuh sweep (local) and --shard + mmuh merge', () => {
  it('lists the cells with --dry-run and runs nothing', () => {
    const r = mmuh(['sweep', file, '--dry-run', '--out', join(tmp, 'dry')]);
    expect(r.code).toBe(0);
    const lines = r.out.trim().split('\n');
    expect(lines[0]).toMatch(/4 cells x 2 repeat\(s\) = 8 runs, seed 11$/);
    expect(lines.slice(1).map((l) => l.split('  ')[0])).toEqual(['dirty=pml,bytes=8M', 'dirty=pml,bytes=12M', 'dirty=wrprot,bytes=8M', 'dirty=wrprot,bytes=12M']);
    expect(() => statSync(join(tmp, 'dry'))).toThrow();
  });

  it('keeps every repeat per cell and merges them losslessly', () => {
    expect(local.schema).toBe('kvm-mmu-harness/sweep@1');
    expect(local.cells).toHaveLength(4);
    for (const c of local.cells) {
      expect(c.status).toBe('ok');
      expect(c.runs.map((r) => [r.runId, r.status, r.worker])).toEqual([[`${c.id}#1`, 'ok', 'local'], [`${c.id}#2`, 'ok', 'local']]);
      const runs = c.result!.repeats!.runs;
      expect(runs).toHaveLength(2);
      expect(runs.every((r) => r.seed === c.seed && r.config.seed === c.seed)).toBe(true);
      expect(c.merged!.runs).toBe(2);
      for (const [k, h] of Object.entries(c.merged!.histograms)) {
        expect(h.count).toBe(runs.reduce((s, r) => s + (r.histograms[k]?.count ?? 0), 0));
        expect(h.max).toBe(Math.max(...runs.map((r) => r.histograms[k]?.max ?? 0)));
      }
      for (const [k, v] of Object.entries(c.merged!.counters)) expect(v).toBe(runs[0]!.counters[k]! + runs[1]!.counters[k]!);
      // One worker per run: modeled time repeats exactly.
      for (const p of c.merged!.phases) expect(p.modeledNs).toEqual([p.modeledNs[0], p.modeledNs[0]]);
      const pages = (c.merged!.stats as Record<string, Record<string, number>>);
      const key = Object.keys(pages)[0]!;
      expect(pages[key]!.pages_4k).toBe(runs.reduce((s, r) => s + (r.stats[key]!.total.pages_4k as number), 0));
    }
    // The axes change what they should: wrprot's second pass takes write-protection faults, PML's does not.
    const wr = local.cells.find((c) => c.id === 'dirty=wrprot,bytes=8M')!.merged!;
    const pml = local.cells.find((c) => c.id === 'dirty=pml,bytes=8M')!.merged!;
    expect(wr.phases.find((p) => p.name === 'iteration-2')!.modeledNs[0]).toBeGreaterThan(pml.phases.find((p) => p.name === 'iteration-2')!.modeledNs[0]!);
  });

  it('two shards and a merge give the local sweep, cell for cell', () => {
    const dir = join(tmp, 'shards');
    for (const s of ['0/2', '1/2']) {
      const r = mmuh(['sweep', file, '--shard', s, '--out', dir, '-q']);
      expect(r.code).toBe(0);
      expect(r.out).toMatch(new RegExp(`shard ${s}: 2 cells, 4 runs \\(0 failed, 0 kept\\)`));
    }
    const m = mmuh(['merge', dir, '-o', join(tmp, 'merged.json')]);
    expect(m.err).toBe('');
    expect(m.code).toBe(0);
    const merged = readSweep(join(tmp, 'merged.json'));
    expect(merged.executor.mode).toBe('merge');
    expect(merged.executor.workers).toEqual(['shard 0/2', 'shard 1/2']);
    expect(merged.cells.map((c) => c.id)).toEqual(local.cells.map((c) => c.id));
    expect(figures(merged)).toEqual(figures(local));
  });

  it('names the cells a merge is missing, and still writes what it has', () => {
    const dir = join(tmp, 'half');
    expect(mmuh(['sweep', file, '--shard', '1/2', '--out', dir, '-q']).code).toBe(0);
    const m = mmuh(['merge', dir]);
    expect(m.code).toBe(1);
    expect(m.err).toContain('mmuh: cell dirty=pml,bytes=8M missing: dirty=pml,bytes=8M#1: no result');
    expect(m.err).toContain('mmuh: cell dirty=wrprot,bytes=8M missing');
    expect(m.err).not.toContain('bytes=12M');
    const s = readSweep(join(dir, 'sweep.json'));
    expect(s.summary).toMatchObject({ cells: 4, ok: 2, missing: 2 });
    expect(s.notes[0]).toBe('2 of 4 cells missing: dirty=pml,bytes=8M dirty=wrprot,bytes=8M');
  });

  it('--resume keeps complete results and reruns only what is missing', () => {
    const dir = join(tmp, 'local');
    const keep = join(dir, 'runs', 'dirty=pml,bytes=8M#1.json');
    const gone = join(dir, 'runs', 'dirty=wrprot,bytes=12M#2.json');
    const before = statSync(keep).mtimeMs;
    unlinkSync(gone);
    const r = mmuh(['sweep', file, '--out', dir, '--resume']);
    expect(r.code).toBe(0);
    expect(r.err).toContain('sweep: 7 of 8 runs already complete (--resume)');
    expect(r.err).toContain('[8/8] dirty=wrprot,bytes=12M#2 ok');
    expect(r.err.match(/\] \S+ ok/g)).toHaveLength(1);
    expect(statSync(keep).mtimeMs).toBe(before);
    expect(figures(readSweep(join(dir, 'sweep.json')))).toEqual(figures(local));
  });

  it('a run that fails twice is a failed cell with its error; the other cells finish', () => {
    const f = writeSweep(tmp, 'fail.yaml', 'scenario: dirty-log-perf\nbase: { vcpus: 1, workers: 1, host-memory: 36M }\naxes:\n  bytes: [8M, 40M]\n');
    const r = mmuh(['sweep', f, '--out', join(tmp, 'fail'), '--jobs', '1']);
    expect(r.code).toBe(1);
    expect(r.err).toContain('sweep: bytes=40M#1: try 2');
    expect(r.err).toMatch(/mmuh: cell bytes=40M failed: bytes=40M#1: EFAULT: KVM_RUN: host out of memory/);
    const s = readSweep(join(tmp, 'fail', 'sweep.json'));
    expect(s.summary).toMatchObject({ cells: 2, ok: 1, failed: 1, missing: 0 });
    const bad = s.cells.find((c) => c.id === 'bytes=40M')!;
    expect(bad.runs[0]).toMatchObject({ status: 'failed', attempts: 2 });
    expect(bad.result).toBeNull();
    expect(s.cells.find((c) => c.id === 'bytes=8M')!.status).toBe('ok');
  });

  it('refuses to merge a run made by another harness, naming the file; --resume reruns it', () => {
    const dir = join(tmp, 'local');
    const f = join(dir, 'runs', 'dirty=pml,bytes=12M#1.json');
    const r = JSON.parse(readFileSync(f, 'utf8')) as RunResult;
    r.harness = { ...r.harness!, commit: '0123456789abcdef0123456789abcdef01234567' };
    writeFileSync(f, JSON.stringify(r));
    const m = mmuh(['merge', dir, '-o', join(tmp, 'x.json')]);
    expect(m.code).toBe(2);
    expect(oneLine(m)).toMatch(/^mmuh: EINVAL: .*dirty=pml,bytes=12M#1\.json was made by kvm-mmu-harness \S+ \(commit 0123456789abcdef/);
    // Another harness's result is not this sweep's: --resume runs it again.
    const r2 = mmuh(['sweep', file, '--out', dir, '--resume']);
    expect(r2.code).toBe(0);
    expect(r2.err).toContain('sweep: 7 of 8 runs already complete (--resume)');
    expect(r2.err).toContain('[8/8] dirty=pml,bytes=12M#1 ok');
    expect(figures(readSweep(join(dir, 'sweep.json')))).toEqual(figures(local));
  });

  it('refuses bad usage in one line', () => {
    expect(oneLine(mmuh(['sweep']))).toMatch(/needs one sweep file/);
    expect(oneLine(mmuh(['sweep', join(tmp, 'nope.yaml')]))).toMatch(/^mmuh: ENOENT: cannot read sweep file/);
    expect(oneLine(mmuh(['sweep', file, '--shard', '2/2']))).toMatch(/0 <= i < n/);
    expect(oneLine(mmuh(['sweep', file, '--shard', '0/2', '--queue', 'redis://127.0.0.1:1/0']))).toMatch(/give one/);
    expect(oneLine(mmuh(['sweep', file, '--queue', 'http://x']))).toMatch(/only redis:\/\//);
    expect(oneLine(mmuh(['merge', join(tmp, 'nowhere')]))).toMatch(/^mmuh: ENOENT: .*no sweep plan here/);
    const other = writeSweep(tmp, 'other.yaml', kSweep.replace('seed: 11', 'seed: 12'));
    expect(oneLine(mmuh(['sweep', other, '--out', join(tmp, 'local')]))).toMatch(/^mmuh: EEXIST: --out .*local holds sweep local-shard-[0-9a-f]{8}, not local-shard-[0-9a-f]{8}: give another --out$/);
    const bad = writeSweep(tmp, 'bad.yaml', 'scenario: dirty-log-perf\naxes:\n  dirty: [pml, nope]\n');
    const r = mmuh(['sweep', bad]);
    expect(r.code).toBe(2);
    expect(oneLine(r)).toMatch(/^mmuh: EINVAL: .*bad\.yaml:3: axes\.dirty\.1: --dirty: 'nope' is not one of/);
  });
});
