/**
 * `report-20-files`: how long `mmuh report` takes for 20 result files, and how big the HTML is.
 *
 * Inputs: 4 real `mmuh run dirty-log-perf -b 16M -i 2 --repeat 3` results (strategies pml,
 * wrprot, ring, pml without manual caps; 3 runs each), each written 5 times with seeds 1..5 in
 * its config so the 20 files are 20 labelled inputs (the report's work depends on the results'
 * contents, not on which process made them: 60 runs, 20 x 7-8 histograms, 140+ .hgrm files).
 * Timed: the whole command in a child process, as a user runs it (Node start, load, render,
 * write), 5 times; the value is the median wall time.
 */
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RunResult } from '../src/scenario/result.js';
import { runChild } from './child.js';
import { scenarioChild } from './scenario-child.js';
import { atMost, closeWindow, openWindow, repeatedFigure, round, type BenchOptions, type BenchResult, type Benchmark, type Figure, type Window } from './lib.js';

const kStrategies = [['--dirty', 'pml'], ['--dirty', 'wrprot'], ['--dirty', 'ring'], ['--dirty', 'pml', '-g']];
const kSeeds = 5;
const kMaxHtmlBytes = 2_000_000;

/** The result with `seed` as its seed (top level, config and every run): a distinct input. */
function reseeded(r: RunResult, seed: number): RunResult {
  const one = (x: RunResult): RunResult => ({ ...x, seed, config: { ...x.config, seed } });
  return r.repeats ? { ...one(r), repeats: { ...r.repeats, runs: r.repeats.runs.map(one) } } : one(r);
}

export const report20: Benchmark = {
  name: 'report-20-files',
  description: '`mmuh report` of 20 dirty-log-perf results (3 runs each) in a child: wall time and HTML bytes',
  async run(o: BenchOptions): Promise<BenchResult> {
    const dir = mkdtempSync(join(tmpdir(), 'mmuh-bench-report-'));
    const w0 = openWindow();
    try {
      const files: string[] = [];
      for (const flags of kStrategies) {
        const r = await scenarioChild(o, 'dirty-log-perf', ['-b', '16M', '-i', '2', '--repeat', '3', '--workers', '1', ...flags], 120_000, 1);
        if (r.child.exitCode !== 0 || r.result === null) throw new Error(`mmuh run ${flags.join(' ')} failed: exit ${r.child.exitCode}: ${r.child.stderrTail.trim().split('\n').pop() ?? ''}`);
        for (let s = 1; s <= kSeeds; s++) {
          const f = join(dir, `${flags.filter((x) => !x.startsWith('--')).join('-')}-seed${s}.json`);
          writeFileSync(f, JSON.stringify(reseeded(r.result, s)));
          files.push(f);
        }
      }
      const reps = o.quick ? 2 : 5;
      const out = join(dir, 'out', 'twenty.html');
      const times: number[] = [];
      const windows: Window[] = [];
      for (let i = 0; i < reps; i++) {
        const w = openWindow();
        const c = await runChild(process.execPath, ['bin/mmuh.js', 'report', ...files, '-o', out], { cwd: o.root, timeoutMs: 60_000 });
        windows.push(closeWindow(w, 1, c.cpuMs ?? 0));
        if (c.exitCode !== 0) throw new Error(`mmuh report failed: exit ${c.exitCode}: ${c.stderrTail.trim()}`);
        times.push(c.wallS);
        o.log(`  run ${i + 1}/${reps}: ${c.wallS.toFixed(2)} s`);
      }
      const bytes = statSync(out).size;
      const md = statSync(join(dir, 'out', 'twenty.md')).size;
      const time = repeatedFigure('report-20-files', times, 's', 'lower', windows, (v) => ({ text: '< 2 s', ok: v < 2 }));
      time.value = round(time.value, 3);
      const size: Figure = {
        name: 'report-20-files.html-bytes', value: bytes, unit: 'B', better: 'lower', target: atMost(kMaxHtmlBytes, 'B')(bytes), noisy: false, notes: [],
      };
      const html = readFileSync(out, 'utf8');
      return {
        name: this.name, description: this.description, seed: o.seed,
        config: { inputs: files.length, runsPerInput: 3, strategies: kStrategies.map((f) => f.join(' ')), repetitions: reps },
        figures: [time, size], window: closeWindow(w0, 1), samples: times.map((t, i) => ({ rep: i + 1, wallS: t, window: windows[i] })),
        details: { htmlBytes: bytes, markdownBytes: md, charts: (html.match(/<svg /g) ?? []).length, tables: (html.match(/<table /g) ?? []).length },
        noisy: time.noisy, notes: time.notes,
      };
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
};
