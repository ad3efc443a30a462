/**
 * `mmuh report`'s output as data: NAME.html, NAME.md and one NAME.<label>.<histogram>.hgrm per
 * input and histogram (the runs of a repeat set merged), so the CLI only writes what this returns.
 */
import { basename } from 'node:path';
import { hgrmText } from './hgrm.js';
import { renderHtml } from './html.js';
import type { ReportInput } from './inputs.js';
import { renderMarkdown } from './markdown.js';
import { reportTables } from './report-tables.js';
import { unionInOrder } from './repeat-aggregate.js';

export interface ReportFiles {
  html: string;
  markdown: string;
  /** File names relative to the HTML's directory. */
  hgrm: { file: string; text: string }[];
}

/** A label or histogram key as a file-name part: populate.page_fault/wall -> populate.page_fault.wall. */
export function fileSafe(s: string): string {
  return s.replace(/\//g, '.').replace(/[^A-Za-z0-9._+=-]/g, '_');
}

/** `name` is the HTML file's base name without .html; `tool` says what made it (version, commit). */
export function makeReport(inputs: ReportInput[], name: string, tool: string): ReportFiles {
  const base = basename(name);
  const hgrm: ReportFiles['hgrm'] = [];
  for (const x of inputs) {
    for (const key of unionInOrder(x.runs.map((r) => Object.keys(r.histograms)))) {
      const encoded = x.runs.map((r) => r.histograms[key]).filter((h) => h !== undefined && h.count > 0).map((h) => h!.encoded);
      if (encoded.length > 0) hgrm.push({ file: `${base}.${fileSafe(x.label)}.${fileSafe(key)}.hgrm`, text: hgrmText(encoded) });
    }
  }
  const rt = reportTables(inputs);
  const files = hgrm.map((h) => h.file);
  return { html: renderHtml(inputs, rt, { name: base, tool, hgrmFiles: files }), markdown: renderMarkdown(base, inputs, rt, files, tool), hgrm };
}
