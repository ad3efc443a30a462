/**
 * Markdown views: the report's tables (NAME.md beside NAME.html, pasteable into a mail or a cover
 * letter) and `mmuh compare --markdown`. GitHub-flavoured tables; the figures are the HTML's.
 */
import type { Comparison } from './comparison.js';
import { comparisonCells, kMethod, verdicts } from './comparison.js';
import type { ReportInput } from './inputs.js';
import { modelNote, noisyInputs, noisyText, type ReportTables, type Table } from './report-tables.js';

function mdCell(s: string): string {
  return s.replace(/\|/g, '\\|').replace(/\n/g, ' ');
}

export function markdownTable(header: string[], rows: string[][], marked?: Set<number>): string {
  const line = (r: string[]) => `| ${r.map(mdCell).join(' | ')} |`;
  const align = header.map((_, i) => (i === 0 ? ':---' : '---:'));
  return [line(header), `| ${align.join(' | ')} |`, ...rows.map((r, i) => line(marked?.has(i) ? [`**${r[0]}**`, ...r.slice(1)] : r))].join('\n');
}

function section(t: Table): string {
  const notes = t.notes.map((n) => `\n${n}`).join('\n');
  return `## ${t.caption}\n\n${markdownTable(t.header, t.rows, t.marked)}\n${notes}\n`;
}

export function noisyWarning(inputs: ReportInput[]): string[] {
  return noisyInputs(inputs).map((n) => `> **Noisy machine**: ${noisyText(n)}. Wall figures from these runs carry that noise.`);
}

export function renderMarkdown(name: string, inputs: ReportInput[], rt: ReportTables, hgrmFiles: string[], tool: string): string {
  const out: string[] = [`# ${name}`, '', `${inputs.map((x) => `\`${x.label}\``).join(' vs ')}: ${inputs[0]!.result.scenario}, made by ${tool}.`, ''];
  const warn = noisyWarning(inputs);
  for (const w of warn) out.push(w, '');
  for (const t of rt.tables) out.push(section(t));
  if (hgrmFiles.length > 0) out.push('## Latency distributions', '', 'HdrHistogram percentile distributions (values in µs; open them in the HdrHistogram plotter):', '', ...hgrmFiles.map((f) => `- ${f}`), '');
  return out.join('\n');
}

/** `mmuh compare --markdown`. */
export function compareMarkdown(c: Comparison, inputs: ReportInput[]): string {
  const { header, rows } = comparisonCells(c);
  return [markdownTable(header, rows), '', ...verdicts(c), '', kMethod, '', modelNote(inputs), ...noisyWarning(inputs).flatMap((w) => ['', w])].join('\n') + '\n';
}
