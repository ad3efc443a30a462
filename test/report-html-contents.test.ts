// What `mmuh report` renders, checked on the HTML/Markdown strings (the headless-Chromium test
// checks the DOM of a real one): 20 result files stay under 2 MB of HTML (the size is
// deterministic for given inputs; the time is a benchmark, report-20-files); the charts and
// tables are there; a CPU-profile table per thread appears when a result carries `profiles`
// and not otherwise; the noisy-machine warning appears exactly when a run was noisy; modeled
// figures carry the model note; labels come from the flags that differ.
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeReport } from '../src/report/report-files.js';
import { deriveLabels, type ReportInput } from '../src/report/inputs.js';
import { runsOf } from '../src/report/repeat-aggregate.js';
import type { RunResult } from '../src/scenario/result.js';

const ex = (n: string) => JSON.parse(readFileSync(join(__dirname, '..', 'reports', 'example', `dirty-log-perf-${n}.json`), 'utf8')) as RunResult;
const pml = ex('pml');
const wrprot = ex('wrprot');

function input(label: string, r: RunResult): ReportInput {
  return { file: `${label}.json`, label, result: r, runs: runsOf(r) };
}

/** A copy with every run's host marked quiet, or noisy. */
function withNoise(r: RunResult, noisy: boolean): RunResult {
  const host = (x: RunResult): RunResult => ({ ...x, host: { ...x.host, noisy, notes: noisy ? ['load average 9.00 exceeds the 2 CPUs: another process competed for them'] : [] } });
  return { ...host(r), repeats: r.repeats ? { ...r.repeats, runs: r.repeats.runs.map(host) } : undefined };
}

const count = (html: string, re: RegExp) => (html.match(re) ?? []).length;

describe('mmuh report output', () => {
  it('labels: the differing flag (pml / wrprot), then seed when it differs too', () => {
    expect(deriveLabels(['a.json', 'b.json'], [pml, wrprot])).toEqual(['pml', 'wrprot']);
    const reseed = { ...wrprot, config: { ...wrprot.config, seed: 2 } };
    expect(deriveLabels(['a.json', 'b.json'], [pml, reseed])).toEqual(['seed=1+pml', 'seed=2+wrprot']);
    expect(deriveLabels(['x/a.json', 'y/a.json'], [pml, pml])).toEqual(['a', 'a#2']);
  });
  it('20 result files: HTML under 2 MB, every chart and table present', () => {
    const inputs = Array.from({ length: 20 }, (_, i) => input(`in${i}`, i % 2 ? wrprot : pml));
    const r = makeReport(inputs, 'twenty', 'test');
    const bytes = Buffer.byteLength(r.html);
    expect(bytes).toBeLessThan(2_000_000);
    const keys = new Set([...Object.keys(pml.histograms), ...Object.keys(wrprot.histograms)]);
    expect(count(r.html, /<svg [^>]*data-chart="percentile"/g)).toBe(keys.size);
    expect(count(r.html, /<svg [^>]*data-chart="phase-bars"/g)).toBe(2);
    expect(count(r.html, /<svg [^>]*data-chart="page-timeline"/g)).toBe(1);
    expect(count(r.html, /<svg [^>]*data-chart="tlb-flushes"/g)).toBe(1);
    for (const t of ['inputs', 'comparison', 'phase-stats', 'config', 'environment']) expect(count(r.html, new RegExp(`<table data-table="${t}"`, 'g')), t).toBe(1);
    // One .hgrm per input and histogram, runs merged.
    expect(r.hgrm.length).toBe(10 * Object.keys(pml.histograms).length + 10 * Object.keys(wrprot.histograms).length);
    expect(r.hgrm[0]!.file).toBe('twenty.in0.clear_dirty_log.modeled.hgrm');
    // 3 runs each: one percentile line per run per input.
    const chart = /<svg [^>]*data-histogram="populate.page_fault\/wall"[\s\S]*?<\/svg>/.exec(r.html)![0];
    expect(count(chart, /<g data-series="in\d+"><path/g)).toBe(60);
    expect(r.html).not.toMatch(/<script|https?:\/\/(?!www\.w3\.org\/2000\/svg)/);
  });
  it('CPU profile tables: one per thread when a result carries profiles, none without', () => {
    const profiled: RunResult = {
      ...wrprot,
      profiles: [
        { thread: 'main', file: 'CPU.1.0.cpuprofile', top: [{ fn: 'kvmTdpMmuMap', url: 'file:///x/dist/src/kvm/mmu/tdp/fault.js', line: 120, selfMs: 42.5, pct: 31.2 }] },
        { thread: 'worker 1', file: 'CPU.1.1.cpuprofile', top: [{ fn: '', url: 'node:internal/worker', line: 3, selfMs: 1, pct: 0.5 }] },
      ],
    };
    const withP = makeReport([input('pml', pml), input('wrprot', profiled)], 'p', 'test');
    expect(count(withP.html, /<table data-table="profile"/g)).toBe(2);
    expect(withP.html).toMatch(/CPU profile: wrprot, main \(CPU\.1\.0\.cpuprofile\)/);
    expect(withP.html).toMatch(/<td>kvmTdpMmuMap<\/td><td>file:\/\/\/x\/dist\/src\/kvm\/mmu\/tdp\/fault\.js:120<\/td><td>42\.5<\/td><td>31\.2<\/td>/);
    expect(withP.html).toMatch(/<td>\(anonymous\)<\/td>/);
    expect(withP.markdown).toMatch(/^## CPU profile: wrprot, worker 1 \(CPU\.1\.1\.cpuprofile\)$/m);
    const without = makeReport([input('pml', pml), input('wrprot', wrprot)], 'p', 'test');
    expect(without.html).not.toMatch(/data-table="profile"|CPU profile/);
    expect(without.markdown).not.toMatch(/CPU profile/);
  });
  it('the noisy-machine warning appears exactly when a run was noisy', () => {
    const quiet = makeReport([input('a', withNoise(pml, false)), input('b', withNoise(wrprot, false))], 'q', 'test');
    expect(quiet.html).not.toMatch(/data-warning="noisy"/);
    expect(quiet.markdown).not.toMatch(/Noisy machine/);
    const noisy = makeReport([input('a', withNoise(pml, false)), input('b', withNoise(wrprot, true))], 'n', 'test');
    expect(noisy.html).toMatch(/<div class="warning" data-warning="noisy"><strong>Noisy machine\.<\/strong> b: 3 of 3 runs noisy \(run 1: load average 9\.00 exceeds/);
    expect(noisy.markdown).toMatch(/^> \*\*Noisy machine\*\*: b: 3 of 3 runs noisy \(run 1: load average 9\.00/m);
  });
  it('modeled figures carry the cost model and the assumption; Markdown has the same tables', () => {
    const r = makeReport([input('pml', pml), input('wrprot', wrprot)], 'm', 'test');
    const modeledCharts = count(r.html, /<svg [^>]*data-chart="percentile"[^>]*data-clock="modeled"/g) + 1; // + the modeled phase bars
    const note = `Modeled figures: ${pml.model!.assumption}. Cost model ${pml.model!.costModel.name}@${pml.model!.costModel.version}.`;
    expect(count(r.html, /data-model-note="1"/g)).toBeGreaterThanOrEqual(modeledCharts + 1); // + the comparison table
    expect(r.html).toContain(note);
    expect(r.markdown).toContain(note);
    for (const caption of ['Inputs', 'Comparison against pml', 'Configuration and strategies', 'Environment']) expect(r.markdown).toMatch(new RegExp(`^## ${caption}`, 'm'));
    expect(r.markdown).toMatch(/^\| \*\*dirty\*\* \| pml \| wrprot \|$/m);
    expect(r.markdown).toMatch(/^\| git commit \| [0-9a-f]{40}/m);
  });
});
