/**
 * The self-contained HTML report: inline CSS and SVG, no script, nothing fetched at view time.
 * Sections: a noisy-machine warning when any run was noisy, the comparison table, phase bars in
 * wall and modeled time, latency by percentile per histogram (runs overlaid), pages_4k/2m/1g and
 * TLB flushes over the phases, configuration, environment, CPU profiles. Modeled charts and tables
 * carry the model note (the cost model and what modeled time assumes) right beneath them.
 *
 * DOM hooks (tests and scripts): svg[data-chart=percentile|phase-bars|page-timeline|tlb-flushes],
 * table[data-table=inputs|comparison|phase-stats|config|environment|profile], [data-warning=noisy],
 * [data-model-note].
 */
import { kHistogramPercentiles, type SampleStats } from '../scenario/result.js';
import { percentilePoints } from './hgrm.js';
import type { ReportInput } from './inputs.js';
import { noisyInputs, noisyText, modelNote, type ReportTables, type Table } from './report-tables.js';
import { unionInOrder } from './repeat-aggregate.js';
import { sampleStats } from './significance.js';
import { barChart, esc, lineChart, percentileChart, seriesColor, type LineSeries, type PercentileSeries } from './svg-charts.js';

/** Axis ticks are decades: 100 ns, 1 µs, 10 ms, 1 s. */
function fmtDecade(ns: number): string {
  const units = [[1e9, 's'], [1e6, 'ms'], [1e3, 'µs'], [1, 'ns']] as const;
  const [div, u] = units.find(([d]) => ns >= d) ?? [1, 'ns'];
  return `${Number((ns / div).toPrecision(3))} ${u}`;
}

export const kCss = `
body{font:14px/1.4 system-ui,sans-serif;margin:24px auto;max-width:1200px;padding:0 16px;color:#222}
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:8px 0;font-size:12px}caption{text-align:left;font-weight:bold;padding:4px 0}
th,td{border:1px solid #ddd;padding:2px 6px;text-align:right;white-space:nowrap}th:first-child,td:first-child{text-align:left}
tr.diff td{background:#fff6d5}td.sig{background:#e3f4e3;font-weight:bold}
.warning{border:2px solid #c00;background:#fdecea;padding:8px 12px;margin:12px 0}
.note{color:#555;font-size:12px;max-width:1100px}.model-note{color:#6a4c00;font-size:12px;max-width:1100px}
.charts{display:flex;flex-wrap:wrap;gap:12px}.charts>svg,.charts>figure{flex:1 1 520px;min-width:0}
.charts svg{width:100%;height:auto;border:1px solid #eee}figure{margin:0}table[data-table=config] td{text-align:left;white-space:normal;max-width:360px}
.scroll{overflow-x:auto}
`;

function tableHtml(t: Table): string {
  const sigCols = new Set(t.header.map((h, i) => (h === 'significant' ? i : -1)).filter((i) => i >= 0));
  const head = `<tr>${t.header.map((h) => `<th>${esc(h)}</th>`).join('')}</tr>`;
  const body = t.rows.map((r, i) => `<tr${t.marked?.has(i) ? ' class="diff"' : ''}>${r.map((c, j) => `<td${sigCols.has(j) && c === 'yes' ? ' class="sig"' : ''}>${esc(c)}</td>`).join('')}</tr>`).join('');
  const notes = t.notes.map((n) => `<p class="${n.startsWith('Modeled figures') ? 'model-note" data-model-note="1' : 'note'}">${esc(n)}</p>`).join('');
  return `<div class="scroll"><table data-table="${t.id}"><caption>${esc(t.caption)}</caption>${head}${body}</table></div>${notes}`;
}

function modelNoteHtml(inputs: ReportInput[]): string {
  return `<p class="model-note" data-model-note="1">${esc(modelNote(inputs))}</p>`;
}

/** Median and CI per phase per input, as bars (wall and modeled side by side). */
function phaseBars(inputs: ReportInput[]): string {
  const phases = unionInOrder(inputs.map((x) => x.result.phases.map((p) => p.name)));
  const charts = (['wall', 'modeled'] as const).map((clock) => {
    const series = inputs.map((x, k) => {
      const st: (SampleStats | null)[] = phases.map((p) => {
        const v = x.runs.map((r) => r.phases.find((q) => q.name === p)).filter((q) => q !== undefined).map((q) => (clock === 'wall' ? q.wallNs : q.modeledNs));
        return v.length > 0 ? sampleStats(v) : null;
      });
      return {
        label: x.label, color: seriesColor(k), values: st.map((s) => s?.median ?? null),
        lo: st.map((s) => s?.ci95?.[0] ?? null), hi: st.map((s) => s?.ci95?.[1] ?? null),
      };
    });
    return barChart({
      title: `Phases, ${clock} time (median${inputs.some((x) => x.runs.length > 1) ? ', whiskers: 95% CI of the mean' : ''})`,
      categories: phases, series, log: true, fmtY: fmtDecade, yLabel: `${clock} time (log)`, attrs: { chart: 'phase-bars', clock },
    });
  });
  return `<div class="charts">${charts.join('')}</div>${modelNoteHtml(inputs)}`;
}

/** One chart per histogram: every run of every input, coloured by input. */
function percentileCharts(inputs: ReportInput[]): string {
  const keys = unionInOrder(inputs.map((x) => Object.keys(x.result.histograms)));
  const out: string[] = [];
  for (const key of keys) {
    const series: PercentileSeries[] = [];
    inputs.forEach((x, k) => {
      x.runs.forEach((r) => {
        const h = r.histograms[key];
        if (h && h.count > 0) series.push({ label: x.label, color: seriesColor(k), points: percentilePoints([h.encoded]) });
      });
    });
    if (series.length === 0) continue;
    const modeled = key.endsWith('/modeled');
    const runs = Math.max(...inputs.map((x) => x.runs.length));
    const chart = percentileChart({ title: `${key}: latency by percentile${runs > 1 ? ' (one line per run)' : ''}`, series, fmtY: fmtDecade, attrs: { chart: 'percentile', histogram: key, clock: modeled ? 'modeled' : 'wall' } });
    out.push(`<figure>${chart}${modeled ? modelNoteHtml(inputs) : ''}</figure>`);
  }
  return `<div class="charts">${out.join('')}</div>`;
}

function timelines(rt: ReportTables): string {
  const { phases, perInput } = rt.phaseStats;
  const dashes = { pages_4k: undefined, pages_2m: '6 3', pages_1g: '2 3' } as const;
  const pageSeries: LineSeries[] = perInput.flatMap((x, k) => ([['pages_4k', x.pages4k], ['pages_2m', x.pages2m], ['pages_1g', x.pages1g]] as const)
    .map(([stat, values]) => ({ label: `${x.label} ${stat}`, color: seriesColor(k), dash: dashes[stat], values: [...values] })));
  const pages = lineChart({ title: 'pages_4k / pages_2m / pages_1g after each phase', categories: phases, series: pageSeries, fmtY: (v) => String(v), yLabel: 'mapped pages', attrs: { chart: 'page-timeline' } });
  const flushes = barChart({
    title: 'Remote TLB flushes during each phase', categories: phases, log: false, fmtY: (v) => String(v), yLabel: 'flushes',
    series: perInput.map((x, k) => ({ label: x.label, color: seriesColor(k), values: x.tlbFlushes })), attrs: { chart: 'tlb-flushes' },
  });
  return `<div class="charts">${pages}${flushes}</div>`;
}

export interface HtmlMeta {
  name: string;
  tool: string;
  hgrmFiles: string[];
}

export function renderHtml(inputs: ReportInput[], rt: ReportTables, meta: HtmlMeta): string {
  const byId = (id: string) => rt.tables.filter((t) => t.id === id).map(tableHtml).join('');
  const noisy = noisyInputs(inputs);
  const warning = noisy.length === 0 ? '' : `<div class="warning" data-warning="noisy"><strong>Noisy machine.</strong> ${noisy.map((n) => esc(noisyText(n))).join('<br>')}<br>Wall figures from these runs carry that noise; modeled figures do not depend on it.</div>`;
  const hasProfiles = rt.tables.some((t) => t.id === 'profile');
  const hgrm = meta.hgrmFiles.length === 0 ? '' : `<details class="note"><summary>${meta.hgrmFiles.length} HdrHistogram percentile distributions beside this file (.hgrm, values in µs; the HdrHistogram plotter reads them)</summary><ul>${meta.hgrmFiles.map((f) => `<li>${esc(f)}</li>`).join('')}</ul></details>`;
  const pcts = kHistogramPercentiles.join(', ');
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,"><title>${esc(meta.name)}</title><style>${kCss}</style></head>
<body>
<h1>${esc(meta.name)}</h1>
<p>${inputs.map((x) => `<code>${esc(x.label)}</code>`).join(' vs ')}: scenario <code>${esc(inputs[0]!.result.scenario)}</code>; made by ${esc(meta.tool)}.</p>
${warning}
${byId('inputs')}
<h2>Comparison</h2>
<p class="note">Every phase in both clocks and every histogram percentile (${pcts}); values are mean ± standard deviation over the repeats.</p>
${byId('comparison')}
<h2>Phases</h2>
${phaseBars(inputs)}
<h2>Latency by percentile</h2>
${percentileCharts(inputs)}
${hgrm}
<h2>Page sizes and TLB flushes over the phases</h2>
${timelines(rt)}
${byId('phase-stats')}
<h2>Configuration</h2>
${byId('config')}
<h2>Environment</h2>
${byId('environment')}
${hasProfiles ? `<h2>CPU profiles</h2>\n${byId('profile')}` : ''}
</body></html>
`;
}
