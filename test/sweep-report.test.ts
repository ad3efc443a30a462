// The sweep report (`mmuh report SWEEP.json`) on a real sweep: four cells of dirty-log-perf
// (--dirty pml|wrprot × -b 8M|16M, two runs each, run by the CLI as a sweep executor would) merged
// with mergeCellRuns, plus a failed and a missing cell (--dirty ring). Each figure in the matrix
// is checked against the runs it came from, so a shifted column, a swapped row, run 1 shown
// instead of the merged or median figure, or a dropped failed cell each fail a named assertion.
import { beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mmuh, oneLine } from './fixtures/mmuh.js';
import { makeSweepReport, sweepTables } from '../src/sweep/sweep-report.js';
import { mergeCellRuns } from '../src/sweep/merge-runs.js';
import { kSweepSchema, type AxisValue, type SweepAxis, type SweepCell, type SweepResult } from '../src/sweep/sweep-result.js';
import { runsOf } from '../src/report/repeat-aggregate.js';
import { median } from '../src/report/significance.js';
import { heatColor } from '../src/report/svg-charts.js';
import { fmtNs } from '../src/report/text.js';
import type { RunResult } from '../src/scenario/result.js';

const dir = mkdtempSync(join(tmpdir(), 'sweep-report-'));
const kAxes: { flag: string; values: string[] }[] = [{ flag: 'dirty', values: ['pml', 'wrprot', 'ring'] }, { flag: 'bytes', values: ['8M', '16M'] }];
const kError = 'EFAULT: KVM_RUN on vCPU 0 returned -14 (injected for the test)';

const idOf = (v: Record<string, AxisValue>) => Object.entries(v).map(([k, x]) => `${k}=${x}`).join(',');

function okCell(values: Record<string, string>, r: RunResult): SweepCell {
  const runs = runsOf(r);
  const id = idOf(values);
  return {
    id, values, seed: r.seed, argv: ['--dirty', values.dirty!, '-b', values.bytes!], status: 'ok',
    runs: runs.map((_, i) => ({ runId: `${id}#${i + 1}`, k: i + 1, status: 'ok', attempts: 1, worker: 'local' })),
    result: r, merged: mergeCellRuns(runs),
  };
}

function badCell(values: Record<string, string>, status: 'failed' | 'missing'): SweepCell {
  const id = idOf(values);
  const runs = [1, 2].map((k) => ({
    runId: `${id}#${k}`, k, status, ...(status === 'failed' ? { error: kError, attempts: 2 } : { error: 'no result in the results directory' }),
  }));
  return { id, values, seed: 1, argv: [], status, runs, result: null, merged: null, ...(status === 'failed' ? { error: kError } : {}) };
}

function sweepOf(cells: SweepCell[], axes: SweepAxis[] = kAxes): SweepResult {
  const r = cells.find((c) => c.result)!.result!;
  const count = (st: string) => cells.filter((c) => c.status === st).length;
  return {
    schema: kSweepSchema,
    sweep: { name: 'dirty-modes', id: 'dirty-modes-5f3a9c', scenario: 'dirty-log-perf', seed: 1, repeat: 2, attempts: 2, base: { vcpus: 1, iterations: 2, workers: 1 }, axes },
    cells, summary: { cells: cells.length, ok: count('ok'), failed: count('failed'), missing: count('missing'), runs: cells.length * 2 },
    executor: { mode: 'local', jobs: 1, workers: ['local'], wallNs: 12_345_678_900 }, harness: r.harness!, notes: [],
  };
}

/** A table's rows by cell id: the td texts and data-values (HTML-unescaped). */
function rowsOf(html: string, matrix: string): Map<string, { status: string; texts: string[]; values: (number | null)[] }> {
  const t = new RegExp(`<table data-table="matrix" data-matrix="${matrix}">([\\s\\S]*?)</table>`).exec(html);
  if (!t) throw new Error(`no matrix ${matrix}`);
  const out = new Map<string, { status: string; texts: string[]; values: (number | null)[] }>();
  for (const m of t[1]!.matchAll(/<tr data-cell="([^"]*)" data-status="([^"]*)"[^>]*>([\s\S]*?)<\/tr>/g)) {
    const tds = [...m[3]!.matchAll(/<td([^>]*)>([\s\S]*?)<\/td>/g)];
    out.set(m[1]!.replace(/&amp;/g, '&'), {
      status: m[2]!, texts: tds.map((d) => d[2]!.replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&quot;/g, '"').replace(/&amp;/g, '&')),
      values: tds.map((d) => (/data-value="([^"]*)"/.exec(d[1]!) ? Number(/data-value="([^"]*)"/.exec(d[1]!)![1]) : null)),
    });
  }
  return out;
}

function headerOf(html: string, matrix: string): string[] {
  const t = new RegExp(`<table data-table="matrix" data-matrix="${matrix}"><caption>[^<]*</caption><tr>([\\s\\S]*?)</tr>`).exec(html)!;
  return [...t[1]!.matchAll(/<th>([^<]*)<\/th>/g)].map((m) => m[1]!);
}

function heatMaps(html: string): string[] {
  return [...html.matchAll(/<svg [^>]*data-chart="heatmap"[\s\S]*?<\/svg>/g)].map((m) => m[0]);
}

let runs: Map<string, RunResult>;
let sweep: SweepResult;
let report: { html: string; markdown: string };

beforeAll(() => {
  runs = new Map();
  for (const dirty of ['pml', 'wrprot']) {
    for (const bytes of ['8M', '16M']) {
      const file = join(dir, `${dirty}-${bytes}.json`);
      const r = mmuh(['run', 'dirty-log-perf', '-v', '1', '-b', bytes, '--workers', '1', '-i', '2', '--dirty', dirty, '--repeat', '2', '-q', '--json', file]);
      if (r.code !== 0) throw new Error(`mmuh run failed (${r.code}): ${r.err}`);
      runs.set(idOf({ dirty, bytes }), JSON.parse(readFileSync(file, 'utf8')) as RunResult);
    }
  }
  const cells: SweepCell[] = [];
  for (const dirty of kAxes[0]!.values) {
    for (const bytes of kAxes[1]!.values) {
      const r = runs.get(idOf({ dirty, bytes }));
      cells.push(r ? okCell({ dirty, bytes }, r) : badCell({ dirty, bytes }, bytes === '8M' ? 'failed' : 'missing'));
    }
  }
  sweep = sweepOf(cells);
  writeFileSync(join(dir, 'sweep.json'), JSON.stringify(sweep));
  report = makeSweepReport(sweep, 'dirty-modes', 'test');
}, 120_000);

describe('sweep report', () => {
  it('the modeled matrix: a row per cell, its axis values, every phase as the runs recorded it', () => {
    const rows = rowsOf(report.html, 'phases-modeled');
    const header = headerOf(report.html, 'phases-modeled');
    expect(header.slice(0, 5)).toEqual(['dirty', 'bytes', 'status', 'runs', 'error']);
    // Failed and missing cells keep their rows: 6, not 4.
    expect([...rows.keys()]).toEqual(sweep.cells.map((c) => c.id));
    for (const [id, r] of runs) {
      const row = rows.get(id)!;
      const c = sweep.cells.find((x) => x.id === id)!;
      expect(row.texts.slice(0, 4)).toEqual([c.values.dirty, c.values.bytes, 'ok', '2/2']);
      for (const p of r.phases) {
        const j = header.indexOf(`${p.name} modeled`);
        expect(j, p.name).toBeGreaterThan(0);
        // Both runs of a cell agree on one worker, so the figure is the value itself, exactly.
        expect(row.values[j], `${id} ${p.name}`).toBe(p.modeledNs);
        expect(row.texts[j]).toBe(fmtNs(p.modeledNs));
      }
      expect(row.values[header.indexOf('total modeled')]).toBe(r.phases.reduce((a, p) => a + p.modeledNs, 0));
    }
    // The rows would be indistinguishable if the cells' figures were equal: 16M populates twice the pages.
    const pop = header.indexOf('populate modeled');
    expect(rows.get('dirty=pml,bytes=16M')!.values[pop]).not.toBe(rows.get('dirty=pml,bytes=8M')!.values[pop]);
  });

  it('the wall matrix shows the median over the runs, the histogram matrix the merged histogram', () => {
    const wall = rowsOf(report.html, 'phases-wall');
    const wh = headerOf(report.html, 'phases-wall');
    const hist = rowsOf(report.html, 'histograms-modeled');
    const hh = headerOf(report.html, 'histograms-modeled');
    for (const [id, r] of runs) {
      const rs = runsOf(r);
      expect(rs.length).toBe(2);
      for (const p of r.phases) expect(wall.get(id)!.values[wh.indexOf(`${p.name} wall median`)], p.name).toBe(median(rs.map((x) => x.phases.find((q) => q.name === p.name)!.wallNs)));
      const key = 'populate.page_fault/modeled';
      const merged = sweep.cells.find((c) => c.id === id)!.merged!.histograms[key]!;
      // The count is both runs' faults: run 1's histogram alone would be half.
      expect(hist.get(id)!.values[hh.indexOf(`${key} count`)]).toBe(rs.reduce((a, x) => a + x.histograms[key]!.count, 0));
      expect(hist.get(id)!.values[hh.indexOf(`${key} p99`)]).toBe(merged.p99);
      expect(hist.get(id)!.texts[hh.indexOf(`${key} p50`)]).toBe(fmtNs(merged.p50));
    }
    expect(report.html).toMatch(/<table data-table="matrix" data-matrix="histograms-wall">/);
  });

  it('failed and missing cells: their rows say so, with the error, and the failures table lists them', () => {
    const rows = rowsOf(report.html, 'phases-modeled');
    const failed = rows.get('dirty=ring,bytes=8M')!;
    expect(failed.status).toBe('failed');
    expect(failed.texts.slice(0, 5)).toEqual(['ring', '8M', 'failed', '0/2', kError]);
    expect(failed.texts.slice(5).every((t) => t === '-')).toBe(true);
    expect(rows.get('dirty=ring,bytes=16M')!.texts.slice(0, 5)).toEqual(['ring', '16M', 'missing', '0/2', 'no result in the results directory']);
    const failures = /<table data-table="failures">[\s\S]*?<\/table>/.exec(report.html)![0];
    expect(failures).toContain('dirty=ring, bytes=8M');
    expect(failures).toContain('<td>#1 failed, 2 tries; #2 failed, 2 tries</td>');
    expect(failures).toContain(`<td>${kError}</td>`);
    expect(report.html).toMatch(/<td>cells<\/td><td>6: 4 ok, 1 failed, 1 missing<\/td>/);
  });

  it('heat maps: one per modeled figure, one rect per cell, coloured by value, failed cells grey with their status', () => {
    const maps = heatMaps(report.html);
    const t = sweepTables(sweep);
    expect(maps.length).toBe(t.chartColumns.length);
    const total = maps.find((m) => m.includes('data-figure="total modeled time"'))!;
    const rects = [...total.matchAll(/<rect [^>]*data-cell="([^"]*)"[^>]*data-status="([^"]*)"/g)];
    expect(rects.map((m) => m[1])).toEqual(sweep.cells.map((c) => c.id));
    expect(total).toMatch(/data-rows="3" data-cols="2"/);
    // The extremes of the scale sit at its ends: an inverted or unshared scale would not.
    const totals = [...runs].map(([id, r]) => [id, r.phases.reduce((a, p) => a + p.modeledNs, 0)] as const).sort((a, b) => a[1] - b[1]);
    const fill = (id: string) => new RegExp(`<rect [^>]*fill="(#[0-9a-f]{6})"[^>]*data-cell="${id}"`).exec(total)![1];
    expect(fill(totals[0]![0])).toBe(heatColor(0));
    expect(fill(totals[totals.length - 1]![0])).toBe(heatColor(1));
    expect(fill('dirty=ring,bytes=8M')).toBe('#eeeeee');
    expect(total).toMatch(/>failed<\/text>/);
    expect(total).toMatch(/>missing<\/text>/);
    expect(total).toContain(`>${fmtNs(totals[0]![1])}</text>`);
    expect(report.html).not.toMatch(/<script|https?:\/\/(?!www\.w3\.org\/2000\/svg)/);
  });

  it('more than two axes: small multiples, one heat map per value of the rest, each with its own cells', () => {
    const axes = [...kAxes, { flag: 'workers', values: [1, 2] }];
    // The same runs stand in for workers=2 with their modeled times doubled, so the facets differ.
    const cells = [1, 2].flatMap((w) => sweep.cells.map((c) => {
      const values = { ...c.values, workers: w };
      const merged = c.merged && { ...c.merged, phases: c.merged.phases.map((p) => ({ ...p, modeledNs: p.modeledNs.map((x) => x * w) })) };
      return { ...c, id: idOf(values), values, merged };
    }));
    const r = makeSweepReport(sweepOf(cells, axes), 'three', 'test');
    const total = heatMaps(r.html).filter((m) => m.includes('data-figure="total modeled time"'));
    expect(total.map((m) => /data-facet="([^"]*)"/.exec(m)![1])).toEqual(['workers=1', 'workers=2']);
    total.forEach((m, i) => {
      expect([...m.matchAll(/<rect [^>]*data-cell="([^"]*)"/g)].map((x) => x[1])).toEqual(cells.slice(i * 6, i * 6 + 6).map((c) => c.id));
    });
    // One scale over the facets: the doubled facet holds the darkest cell, the first the lightest.
    expect(total[1]).toContain(`fill="${heatColor(1)}"`);
    expect(total[0]).toContain(`fill="${heatColor(0)}"`);
    expect(total[0]).not.toContain(`fill="${heatColor(1)}"`);
    expect(total[1]).not.toContain(`fill="${heatColor(0)}"`);
  });

  it('one axis: a bar chart, no heat map', () => {
    const cells = sweep.cells.filter((c) => c.values.bytes === '8M').map((c) => ({ ...c, values: { dirty: c.values.dirty! } }));
    const r = makeSweepReport(sweepOf(cells, [kAxes[0]!]), 'one', 'test');
    expect(heatMaps(r.html)).toEqual([]);
    const bars = /<svg [^>]*data-chart="sweep-bars"[^>]*data-figure="phases-modeled"[\s\S]*?<\/svg>/.exec(r.html)![0];
    expect([...bars.matchAll(/<g data-series="([^"]*)"/g)].map((m) => m[1])).toEqual(['dirty=pml', 'dirty=wrprot', 'dirty=ring']);
  });

  it('modeled figures that vary between runs: the median, marked', () => {
    const c = structuredClone(sweep.cells[0]!);
    c.merged!.phases[0]!.modeledNs = [100, 300, 900];
    const r = makeSweepReport(sweepOf([c], [kAxes[0]!]), 'v', 'test');
    const row = rowsOf(r.html, 'phases-modeled').get(c.id)!;
    const j = headerOf(r.html, 'phases-modeled').indexOf(`${c.merged!.phases[0]!.name} modeled`);
    expect(row.texts[j]).toBe('300 ns (varies)');
  });

  it('header: plan, model note, noisy warning exactly when a run was noisy', () => {
    const r = runs.get('dirty=pml,bytes=8M')!;
    expect(report.html).toMatch(/<td>base flags<\/td><td>vcpus=1 iterations=2 workers=1<\/td>/);
    expect(report.html).toMatch(/<td>axis dirty<\/td><td>pml, wrprot, ring<\/td>/);
    expect(report.html).toContain(`Cost model ${r.model!.costModel.name}@${r.model!.costModel.version}.`);
    const noise = (noisy: boolean) => {
      const host = (x: RunResult): RunResult => ({ ...x, host: { ...x.host, noisy, notes: noisy ? ['load average 9.00 exceeds the 2 CPUs: another process competed for them'] : [] } });
      return sweepOf(sweep.cells.map((c) => (c.result ? { ...c, result: { ...host(c.result), repeats: { ...c.result.repeats!, runs: c.result.repeats!.runs.map(host) } } } : c)));
    };
    const quiet = makeSweepReport(noise(false), 'q', 'test');
    expect(quiet.html).not.toMatch(/data-warning="noisy"/);
    expect(quiet.markdown).not.toMatch(/Noisy machine/);
    const noisy = makeSweepReport(noise(true), 'n', 'test');
    expect(noisy.html).toMatch(/data-warning="noisy"><strong>Noisy machine\.<\/strong> 8 of 8 runs, in 4 of 4 cells/);
    expect(noisy.markdown).toMatch(/Noisy machine/);
  });

  it('the Markdown carries the same matrix rows as the HTML', () => {
    for (const m of ['phases-modeled', 'phases-wall', 'histograms-modeled', 'histograms-wall']) {
      const header = headerOf(report.html, m);
      expect(report.markdown, m).toContain(`| ${header.join(' | ')} |`);
      for (const [id, row] of rowsOf(report.html, m)) expect(report.markdown, `${m} ${id}`).toContain(`| ${row.texts.map((x) => x.replace(/\|/g, '\\|')).join(' | ')} |`);
    }
    expect(report.markdown).toContain('## Failed and missing cells');
  });

  it('mmuh report SWEEP.json writes NAME.html and NAME.md; mixed with a run result it is one line, exit 2', () => {
    const out = join(dir, 'out', 'x.html');
    const ok = mmuh(['report', join(dir, 'sweep.json'), '-o', out]);
    expect(ok.code, ok.err).toBe(0);
    expect(readFileSync(out, 'utf8')).toMatch(/<table data-table="matrix" data-matrix="phases-modeled">/);
    expect(readFileSync(join(dir, 'out', 'x.md'), 'utf8')).toMatch(/^# x$/m);
    for (const files of [[join(dir, 'sweep.json'), join(dir, 'pml-8M.json')], [join(dir, 'pml-8M.json'), join(dir, 'sweep.json')]]) {
      const bad = mmuh(['report', ...files, '-o', join(dir, 'mixed', 'y.html')]);
      expect(bad.code).toBe(2);
      expect(oneLine(bad)).toMatch(/^mmuh: EINVAL: '.*sweep\.json' is a sweep \(kvm-mmu-harness\/sweep@1\)/);
      expect(existsSync(join(dir, 'mixed'))).toBe(false);
    }
    writeFileSync(join(dir, 'broken.json'), JSON.stringify({ schema: kSweepSchema, sweep: sweep.sweep }));
    const broken = mmuh(['report', join(dir, 'broken.json'), '-o', join(dir, 'b.html')]);
    expect(broken.code).toBe(2);
    expect(oneLine(broken)).toMatch(/EINVAL: .*broken\.json' is not a complete kvm-mmu-harness\/sweep@1 result: no cells/);
  });
});
