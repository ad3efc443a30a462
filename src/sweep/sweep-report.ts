/**
 * The report of a sweep (`mmuh report SWEEP.json -o NAME.html`): what a cover letter quotes. A
 * header with the plan (scenario, base flags, axes, repeat, seed, cells ok/failed/missing), the
 * model note and a noisy-machine warning; matrix tables, one row per cell (its axis values, its
 * status, then every phase's modeled time and wall median and the histograms' p50/p99/count);
 * heat maps of the modeled figures (two axes: one per figure; more: small multiples over the
 * remaining axes; one: grouped bars). Failed and missing cells keep their row, with the error.
 * NAME.md carries the same tables.
 *
 * DOM hooks: table[data-table=sweep|matrix|failures] (matrix: data-matrix=phases-modeled|
 * phases-wall|histograms-modeled|histograms-wall; rows tr[data-cell][data-status], figures
 * td[data-value] with the exact number), svg[data-chart=heatmap|sweep-bars][data-figure],
 * heat-map cells rect[data-cell], [data-warning=noisy], [data-model-note].
 */
import { kModeledAssumption } from '../metrics/cost-model.js';
import { kCss } from '../report/html.js';
import type { ReportInput } from '../report/inputs.js';
import { markdownTable } from '../report/markdown.js';
import { runsOf, unionInOrder } from '../report/repeat-aggregate.js';
import { modelNote, noisyInputs, noisyText } from '../report/report-tables.js';
import { median } from '../report/significance.js';
import { barChart, esc, heatMap, seriesColor, type HeatCell } from '../report/svg-charts.js';
import { fmtNs } from '../report/text.js';
import { UsageError } from '../scenario/flags.js';
import { kSweepSchema, type AxisValue, type SweepAxis, type SweepCell, type SweepResult } from './sweep-result.js';

/** One figure of one cell: what the table prints and the number behind it (null: none). */
interface Fig {
  text: string;
  value: number | null;
  /** The exact figures behind the text (every run's modeled time when they vary). */
  title?: string;
}

const kNone: Fig = { text: '-', value: null };

/** A matrix column: its header and how a cell's figure is read from its merged runs. */
interface Column {
  header: string;
  /** Short name for a chart title. */
  figure: string;
  of(c: SweepCell): Fig;
}

interface MatrixTable {
  id: string;
  caption: string;
  header: string[];
  /** Per row: the cell, its texts (axis values, status, … figures), and the numbers under the figure columns. */
  rows: { cell: SweepCell; texts: string[]; values: (number | null)[]; titles: (string | undefined)[] }[];
  /** Figure columns: a table without any (no wall histograms) is left out. */
  figures: number;
  notes: string[];
}

function axisText(v: AxisValue | undefined): string {
  return v === undefined ? '-' : String(v);
}

/** "dirty=pml, bytes=8M": how a cell is named in warnings, tooltips and bar legends. */
export function cellLabel(axes: SweepAxis[], c: SweepCell): string {
  return axes.length === 0 ? c.id : axes.map((a) => `${a.flag}=${axisText(c.values[a.flag])}`).join(', ');
}

/** The cell's error: its own, else its first failed or missing run's. */
function cellError(c: SweepCell): string {
  return c.error ?? c.runs.find((r) => r.error !== undefined && r.status !== 'ok')?.error ?? '';
}

/** Modeled time over the runs: the value when they agree (one worker: they do), else the median, marked. */
function agreed(xs: number[]): Fig {
  if (xs.length === 0) return kNone;
  if (xs.every((x) => x === xs[0])) return { text: fmtNs(xs[0]!), value: xs[0]! };
  const m = median(xs);
  return { text: `${fmtNs(m)} (varies)`, value: m, title: `runs: ${xs.map((x) => `${x} ns`).join(', ')}` };
}

function phaseColumns(phases: string[]): { modeled: Column[]; wall: Column[] } {
  const find = (c: SweepCell, p: string) => c.merged?.phases.find((q) => q.name === p);
  // The total per run, then agreed over runs: only when every phase has every run, else an index
  // would add run 2's phase to run 3's.
  const total: Column = {
    header: 'total modeled', figure: 'total modeled time',
    of: (c) => {
      const m = c.merged;
      if (!m || m.runs === 0 || m.phases.length === 0 || m.phases.some((p) => p.modeledNs.length !== m.runs)) return kNone;
      return agreed(Array.from({ length: m.runs }, (_, k) => m.phases.reduce((a, p) => a + p.modeledNs[k]!, 0)));
    },
  };
  return {
    modeled: [total, ...phases.map((p) => ({ header: `${p} modeled`, figure: `${p}: modeled time`, of: (c: SweepCell) => agreed(find(c, p)?.modeledNs ?? []) }))],
    wall: phases.map((p) => ({
      header: `${p} wall median`, figure: `${p}: wall median`,
      of: (c: SweepCell) => {
        const q = find(c, p);
        return q === undefined ? kNone : { text: fmtNs(q.wallMedianNs), value: q.wallMedianNs };
      },
    })),
  };
}

function histogramColumns(keys: string[]): Column[] {
  return keys.flatMap((key) => (['p50', 'p99', 'count'] as const).map((m) => ({
    header: `${key} ${m}`, figure: `${key} ${m}`,
    of: (c: SweepCell): Fig => {
      const h = c.merged?.histograms[key];
      if (h === undefined) return kNone;
      if (m === 'count') return { text: String(h.count), value: h.count };
      return h.count === 0 ? kNone : { text: fmtNs(h[m]), value: h[m] };
    },
  })));
}

function matrix(s: SweepResult, id: string, caption: string, cols: Column[], withError: boolean, notes: string[]): MatrixTable {
  const axes = s.sweep.axes;
  const header = [...(axes.length === 0 ? ['cell'] : axes.map((a) => a.flag)), 'status', 'runs', ...(withError ? ['error'] : []), ...cols.map((c) => c.header)];
  const rows = s.cells.map((cell) => {
    const figs = cols.map((col) => col.of(cell));
    const lead = [...(axes.length === 0 ? [cell.id] : axes.map((a) => axisText(cell.values[a.flag]))), cell.status, `${cell.merged?.runs ?? 0}/${cell.runs.length}`];
    if (withError) lead.push(cellError(cell));
    return {
      cell, texts: [...lead, ...figs.map((f) => f.text)],
      values: [...lead.map(() => null), ...figs.map((f) => f.value)], titles: [...lead.map(() => undefined), ...figs.map((f) => f.title)],
    };
  });
  return { id, caption, header, rows, figures: cols.length, notes };
}

export interface SweepTables {
  plan: { header: string[]; rows: string[][] };
  matrices: MatrixTable[];
  failures: { header: string[]; rows: string[][] } | null;
  /** The columns the charts plot (modeled: deterministic for a seed on one worker). */
  chartColumns: Column[];
}

function kv(o: Record<string, AxisValue>): string {
  const e = Object.entries(o);
  return e.length === 0 ? '(none)' : e.map(([k, v]) => `${k}=${String(v)}`).join(' ');
}

export function sweepTables(s: SweepResult): SweepTables {
  const sp = s.sweep;
  const sum = s.summary;
  const h = s.harness;
  const plan = {
    header: ['', 'value'],
    rows: [
      ['sweep', sp.name], ['id', sp.id], ['scenario', sp.scenario], ['base flags', kv(sp.base)],
      ...sp.axes.map((a) => [`axis ${a.flag}`, a.values.map(String).join(', ')]),
      ['repeat', String(sp.repeat)], ['attempts', String(sp.attempts)], ['seed', String(sp.seed)],
      ['cells', `${sum.cells}: ${sum.ok} ok, ${sum.failed} failed, ${sum.missing} missing`], ['runs', String(sum.runs)],
      ['executor', `${s.executor.mode}${s.executor.jobs !== undefined ? `, ${s.executor.jobs} job${s.executor.jobs === 1 ? '' : 's'}` : ''}${s.executor.workers.length > 0 ? `, workers ${s.executor.workers.join(', ')}` : ''}`],
      ['sweep wall time', s.executor.wallNs === null ? '-' : fmtNs(s.executor.wallNs)],
      ['harness', h ? `${h.name} ${h.version}, commit ${h.commit ?? 'unknown'}${h.dirty ? ' (uncommitted changes)' : ''}` : 'unknown'],
    ],
  };
  const phases = unionInOrder(s.cells.map((c) => c.merged?.phases.map((p) => p.name) ?? []));
  const keys = unionInOrder(s.cells.map((c) => Object.keys(c.merged?.histograms ?? {})));
  const pc = phaseColumns(phases);
  const hm = histogramColumns(keys.filter((k) => k.endsWith('/modeled')));
  const hw = histogramColumns(keys.filter((k) => k.endsWith('/wall')));
  const anyBad = s.cells.some((c) => c.status !== 'ok');
  const matrices = [
    matrix(s, 'phases-modeled', 'Phases, modeled time (per cell; "varies" marks runs that disagree, with their median)', pc.modeled, anyBad, []),
    matrix(s, 'phases-wall', 'Phases, wall time (median over the runs)', pc.wall, false, []),
    matrix(s, 'histograms-modeled', 'Latency histograms, modeled (all runs of a cell added)', hm, false, []),
    matrix(s, 'histograms-wall', 'Latency histograms, wall (all runs of a cell added)', hw, false, []),
  ].filter((m) => m.figures > 0);
  const bad = s.cells.filter((c) => c.status !== 'ok' || c.runs.some((r) => r.status === 'failed' || r.status === 'missing'));
  const failures = bad.length === 0 ? null : {
    header: ['cell', 'values', 'status', 'runs', 'error'],
    rows: bad.map((c) => [
      c.id, cellLabel(sp.axes, c), c.status,
      // A run's error only where it is not the cell's (the error column has that one).
      c.runs.map((r) => `#${r.k} ${r.status}${r.error && r.error !== cellError(c) ? ` (${r.error})` : ''}${r.attempts !== undefined && r.attempts > 1 ? `, ${r.attempts} tries` : ''}`).join('; ') || '(none)',
      cellError(c),
    ]),
  };
  const p99 = hm.filter((c) => c.header.endsWith(' p99'));
  return { plan, matrices, failures, chartColumns: [...pc.modeled, ...p99] };
}

/** The cells with a result as report inputs, so the run report's model note and noise checks apply as they are. */
function cellInputs(s: SweepResult): ReportInput[] {
  return s.cells.filter((c) => c.result !== null).map((c) => ({ file: c.id, label: cellLabel(s.sweep.axes, c), result: c.result!, runs: runsOf(c.result!) }));
}

function sweepModelNote(inputs: ReportInput[]): string {
  return inputs.length > 0 ? modelNote(inputs) : `Modeled figures: ${kModeledAssumption}. Cost model unknown (no cell completed).`;
}

function noisyLines(inputs: ReportInput[]): { head: string; lines: string[] } | null {
  const n = noisyInputs(inputs);
  if (n.length === 0) return null;
  const runs = n.reduce((a, x) => a + x.noisyRuns, 0);
  const all = inputs.reduce((a, x) => a + x.runs.length, 0);
  return { head: `${runs} of ${all} runs, in ${n.length} of ${inputs.length} cells, ran on a noisy machine`, lines: n.map(noisyText) };
}

// ---------------------------------------------------------------------------------------------
// Charts

/** Every combination of the axes' values, in axis order (the first axis slowest). */
function combinations(axes: SweepAxis[]): Record<string, AxisValue>[] {
  let out: Record<string, AxisValue>[] = [{}];
  for (const a of axes) out = out.flatMap((o) => a.values.map((v) => ({ ...o, [a.flag]: v })));
  return out;
}

function findCell(s: SweepResult, want: Record<string, AxisValue>): SweepCell | undefined {
  return s.cells.find((c) => Object.entries(want).every(([k, v]) => c.values[k] === v));
}

function heatCell(s: SweepResult, c: SweepCell | undefined, col: Column, where: string): HeatCell {
  if (c === undefined) return { value: null, text: '-', title: `${where}: no such cell in the sweep` };
  const f = col.of(c);
  const label = cellLabel(s.sweep.axes, c);
  const text = f.value === null ? (c.status === 'ok' ? '-' : c.status) : f.text;
  return { value: f.value, text, title: `${label}: ${f.text}${f.title ? ` (${f.title})` : ''}${c.status === 'ok' ? '' : ` [${c.status}${cellError(c) ? `: ${cellError(c)}` : ''}]`}`, attrs: { cell: c.id, status: c.status } };
}

/**
 * Two axes and more: per figure one heat map (rows the first axis, columns the second) per
 * combination of the remaining axes, on one colour scale so the multiples compare.
 */
function heatMaps(s: SweepResult, cols: Column[]): string {
  const [a1, a2, ...rest] = s.sweep.axes as [SweepAxis, SweepAxis, ...SweepAxis[]];
  const facets = combinations(rest);
  return cols.map((col) => {
    const vals = s.cells.map((c) => col.of(c).value).filter((v): v is number => v !== null);
    const domain: [number, number] | undefined = vals.length > 0 ? [Math.min(...vals), Math.max(...vals)] : undefined;
    const maps = facets.map((facet) => {
      const facetText = kv(facet);
      const cells = a1.values.map((v1) => a2.values.map((v2) => {
        const want = { ...facet, [a1.flag]: v1, [a2.flag]: v2 };
        return heatCell(s, findCell(s, want), col, kv(want));
      }));
      return heatMap({
        title: rest.length > 0 ? `${col.figure} — ${facetText}` : col.figure, rowLabel: a1.flag, colLabel: a2.flag,
        rows: a1.values.map(String), cols: a2.values.map(String), cells, domain, fmt: fmtNs,
        attrs: { chart: 'heatmap', figure: col.figure, ...(rest.length > 0 ? { facet: facetText } : {}) },
      });
    });
    return `<figure data-figure="${esc(col.figure)}"><div class="charts">${maps.join('')}</div></figure>`;
  }).join('');
}

/** One axis (or none): grouped bars, the figures as categories and one bar per cell. */
function bars(s: SweepResult, cols: Column[], title: string, figure: string): string {
  if (cols.length === 0) return '';
  return barChart({
    title, categories: cols.map((c) => c.header), log: true, fmtY: fmtNs, yLabel: 'modeled time (log)',
    series: s.cells.map((c, k) => ({ label: cellLabel(s.sweep.axes, c), color: seriesColor(k), values: cols.map((col) => col.of(c).value) })),
    attrs: { chart: 'sweep-bars', figure },
  });
}

function chartsHtml(s: SweepResult, t: SweepTables): string {
  const phaseCols = t.chartColumns.filter((c) => !c.header.endsWith(' p99'));
  const p99Cols = t.chartColumns.filter((c) => c.header.endsWith(' p99'));
  if (s.sweep.axes.length >= 2) {
    return `<h3>Modeled time per phase</h3>${heatMaps(s, phaseCols)}${p99Cols.length > 0 ? `<h3>Modeled latency p99</h3>${heatMaps(s, p99Cols)}` : ''}`;
  }
  return `<div class="charts">${bars(s, phaseCols, 'Phases, modeled time per cell', 'phases-modeled')}${bars(s, p99Cols, 'Latency p99, modeled, per cell', 'histograms-modeled-p99')}</div>`;
}

// ---------------------------------------------------------------------------------------------
// HTML and Markdown

function matrixHtml(m: MatrixTable): string {
  const head = `<tr>${m.header.map((h) => `<th>${esc(h)}</th>`).join('')}</tr>`;
  const body = m.rows.map((r) => `<tr data-cell="${esc(r.cell.id)}" data-status="${r.cell.status}"${r.cell.status === 'ok' ? '' : ' class="bad"'}>${r.texts.map((x, j) => {
    const v = r.values[j];
    const title = r.titles[j];
    return `<td${v !== null && v !== undefined ? ` data-value="${v}"` : ''}${title ? ` title="${esc(title)}"` : ''}>${esc(x)}</td>`;
  }).join('')}</tr>`).join('');
  return `<div class="scroll"><table data-table="matrix" data-matrix="${m.id}"><caption>${esc(m.caption)}</caption>${head}${body}</table></div>${m.notes.map((n) => `<p class="note">${esc(n)}</p>`).join('')}`;
}

function plainTableHtml(id: string, caption: string, t: { header: string[]; rows: string[][] }): string {
  return `<div class="scroll"><table data-table="${id}"><caption>${esc(caption)}</caption><tr>${t.header.map((h) => `<th>${esc(h)}</th>`).join('')}</tr>` +
    `${t.rows.map((r) => `<tr>${r.map((x) => `<td>${esc(x)}</td>`).join('')}</tr>`).join('')}</table></div>`;
}

const kSweepCss = `tr.bad td{background:#fdecea}table[data-table=sweep] td,table[data-table=failures] td{text-align:left;white-space:normal;max-width:640px}
figure[data-figure]{margin:8px 0}.charts>svg{flex:0 1 auto}`;

function renderSweepHtml(s: SweepResult, t: SweepTables, name: string, tool: string, inputs: ReportInput[]): string {
  const noisy = noisyLines(inputs);
  const warning = noisy === null ? '' : `<div class="warning" data-warning="noisy"><strong>Noisy machine.</strong> ${esc(noisy.head)}; wall figures from these runs carry that noise, modeled figures do not depend on it.<details><summary>per cell</summary>${noisy.lines.map(esc).join('<br>')}</details></div>`;
  const note = `<p class="model-note" data-model-note="1">${esc(sweepModelNote(inputs))}</p>`;
  const sp = s.sweep;
  const m = (id: string) => t.matrices.filter((x) => x.id === id).map(matrixHtml).join('');
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,"><title>${esc(name)}</title><style>${kCss}${kSweepCss}</style></head>
<body>
<h1>${esc(name)}</h1>
<p>Sweep <code>${esc(sp.name)}</code> (id <code>${esc(sp.id)}</code>): scenario <code>${esc(sp.scenario)}</code> over ${sp.axes.length === 0 ? 'no axes' : sp.axes.map((a) => `<code>${esc(a.flag)}</code>`).join(' × ')}, ${s.summary.cells} cells × ${sp.repeat} run${sp.repeat === 1 ? '' : 's'}; made by ${esc(tool)}.</p>
${warning}
${plainTableHtml('sweep', 'Sweep', t.plan)}
${s.notes.map((n) => `<p class="note">${esc(n)}</p>`).join('')}
${note}
${t.failures === null ? '' : `<h2>Failed and missing cells</h2>\n${plainTableHtml('failures', 'Cells that did not complete every run', t.failures)}`}
<h2>Phases</h2>
${m('phases-modeled')}
${note}
${m('phases-wall')}
<h2>Charts</h2>
${chartsHtml(s, t)}
${note}
<h2>Latency histograms</h2>
${m('histograms-modeled')}
${m('histograms-wall')}
</body></html>
`;
}

function renderSweepMarkdown(s: SweepResult, t: SweepTables, name: string, tool: string, inputs: ReportInput[]): string {
  const sp = s.sweep;
  const out = [`# ${name}`, '', `Sweep \`${sp.name}\` (id \`${sp.id}\`): ${sp.scenario} over ${sp.axes.map((a) => `\`${a.flag}\``).join(' × ') || 'no axes'}, ${s.summary.cells} cells × ${sp.repeat} run${sp.repeat === 1 ? '' : 's'}; made by ${tool}.`, ''];
  const noisy = noisyLines(inputs);
  if (noisy !== null) out.push(`> **Noisy machine**: ${noisy.head}. Wall figures from these runs carry that noise.`, '');
  out.push('## Sweep', '', markdownTable(t.plan.header, t.plan.rows), '', ...s.notes.flatMap((n) => [n, '']), sweepModelNote(inputs), '');
  if (t.failures !== null) out.push('## Failed and missing cells', '', markdownTable(t.failures.header, t.failures.rows), '');
  for (const m of t.matrices) out.push(`## ${m.caption}`, '', markdownTable(m.header, m.rows.map((r) => r.texts)), '', ...m.notes.flatMap((n) => [n, '']));
  out.push(`Heat maps of the modeled figures: ${name}.html.`, '');
  return out.join('\n');
}

/** `name` is the HTML file's base name without .html; `tool` says what made it (version, commit). */
export function makeSweepReport(s: SweepResult, name: string, tool: string): { html: string; markdown: string } {
  const t = sweepTables(s);
  const inputs = cellInputs(s);
  return { html: renderSweepHtml(s, t, name, tool, inputs), markdown: renderSweepMarkdown(s, t, name, tool, inputs) };
}

// ---------------------------------------------------------------------------------------------
// Loading

export function isSweepJson(json: unknown): boolean {
  return typeof json === 'object' && json !== null && (json as { schema?: unknown }).schema === kSweepSchema;
}

/** The parsed file as a SweepResult, or one UsageError line naming what is missing (the report would crash on it). */
export function checkSweep(file: string, json: unknown): SweepResult {
  const bad = (why: string) => new UsageError(`EINVAL: '${file}' is not a complete ${kSweepSchema} result: ${why}`);
  if (!isSweepJson(json)) throw bad('wrong schema');
  const s = json as Partial<SweepResult>;
  const sp = s.sweep as Partial<SweepResult['sweep']> | undefined;
  if (typeof sp !== 'object' || sp === null || typeof sp.scenario !== 'string' || typeof sp.name !== 'string') throw bad('no sweep spec (name, scenario)');
  if (!Array.isArray(sp.axes) || sp.axes.some((a) => typeof a?.flag !== 'string' || !Array.isArray(a.values))) throw bad('sweep.axes is not a list of {flag, values}');
  if (typeof sp.base !== 'object' || sp.base === null) throw bad('no sweep.base');
  if (!Array.isArray(s.cells)) throw bad('no cells');
  s.cells.forEach((c, i) => {
    if (typeof c?.id !== 'string' || typeof c.values !== 'object' || c.values === null || !Array.isArray(c.runs) || !['ok', 'failed', 'missing'].includes(c.status)) {
      throw bad(`cell ${i + 1} has no id, values, runs or status`);
    }
    const m = c.merged;
    if (m !== null && (typeof m !== 'object' || !Array.isArray(m.phases) || typeof m.histograms !== 'object' || m.histograms === null)) throw bad(`cell ${c.id}: merged has no phases or histograms`);
  });
  if (typeof s.summary !== 'object' || s.summary === null || typeof s.executor !== 'object' || s.executor === null) throw bad('no summary or executor');
  if (!Array.isArray(s.notes)) throw bad('no notes');
  return s as SweepResult;
}
