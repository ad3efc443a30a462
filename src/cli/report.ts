/**
 * `mmuh report RESULT.json… -o reports/NAME.html [--label A,B…]`: the HTML report, NAME.md and the
 * .hgrm files beside it; `mmuh report SWEEP.json -o NAME.html`: the sweep's matrix report and
 * NAME.md. Bad input (unreadable file, another schema, incomparable runs, a sweep among run
 * results, a bad -o) is one line and exit 2.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { UsageError, parseFlagsAndArgs, type FlagSpec } from '../scenario/flags.js';
import { loadInputs, readJsonFile } from '../report/inputs.js';
import { makeReport } from '../report/report-files.js';
import { kSweepSchema } from '../sweep/sweep-result.js';
import { checkSweep, isSweepJson, makeSweepReport } from '../sweep/sweep-report.js';
import { harnessInfo } from './build-info.js';

export const kReportUsage = `usage: mmuh report RESULT.json… -o reports/NAME.html [--label A,B…]
       mmuh report SWEEP.json -o reports/NAME.html

Writes NAME.html (self-contained: inline SVG, no network), NAME.md (the same tables) and
NAME.<label>.<histogram>.hgrm (HdrHistogram percentile distributions, µs) beside it.
The first file is the baseline. Labels default to the flags that differ between the files.
A sweep file (schema ${kSweepSchema}, from mmuh sweep) is reported alone: one matrix row
per cell, heat maps of the modeled figures over the axes; NAME.html and NAME.md.

  -o, --output FILE   the HTML file to write
  --label A,B,…       one label per file, in order`;

const kReportFlags: FlagSpec[] = [
  { name: 'output', short: 'o', type: 'string', default: null, help: 'the HTML file to write' },
  { name: 'label', type: 'string', default: null, help: 'labels, comma-separated, one per file' },
];

export function labelsFlag(v: unknown): string[] | null {
  return typeof v === 'string' ? v.split(',').map((s) => s.trim()) : null;
}

export function toolName(): string {
  const h = harnessInfo();
  return `mmuh report (${h.name} ${h.version}, commit ${h.commit ?? 'unknown'}${h.dirty ? ' with uncommitted changes' : ''})`;
}

/** Load, render and write; returns the paths written. */
export function writeReport(files: string[], labels: string[] | null, output: string): string[] {
  if (!output.endsWith('.html')) throw new UsageError(`EINVAL: -o ${output}: give an .html file name (NAME.md and the .hgrm files go beside it)`);
  const name = basename(output).replace(/\.html$/, '');
  const dir = dirname(output);
  // Each file parsed once: the schema says which report it gets.
  const jsons = files.map(readJsonFile);
  const sweepAt = jsons.findIndex(isSweepJson);
  let written: [string, string][];
  if (sweepAt >= 0) {
    if (files.length > 1) throw new UsageError(`EINVAL: '${files[sweepAt]}' is a sweep (${kSweepSchema}): report it alone, not with other result files`);
    if (labels !== null) throw new UsageError('EINVAL: --label: a sweep names its cells by their axis values');
    const r = makeSweepReport(checkSweep(files[0]!, jsons[0]), name, toolName());
    written = [[output, r.html], [join(dir, `${name}.md`), r.markdown]];
  } else {
    const r = makeReport(loadInputs(files, labels, jsons), name, toolName());
    written = [[output, r.html], [join(dir, `${name}.md`), r.markdown], ...r.hgrm.map((h) => [join(dir, h.file), h.text] as [string, string])];
  }
  return writeFiles(output, dir, written);
}

function writeFiles(output: string, dir: string, written: [string, string][]): string[] {
  try {
    mkdirSync(dir, { recursive: true });
    for (const [path, text] of written) writeFileSync(path, text);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? 'EIO';
    throw new UsageError(`${code}: -o ${output}: cannot write the report (${(e as Error).message})`);
  }
  return written.map(([p]) => p);
}

export function reportCommand(argv: string[], out: { write(s: string): void }): number {
  const { flags: f, args: files } = parseFlagsAndArgs(kReportFlags, argv);
  if (typeof f.output !== 'string') throw new UsageError('mmuh report needs -o NAME.html (where to write the report)');
  const written = writeReport(files, labelsFlag(f.label), f.output);
  out.write(`wrote ${written[0]} (+ ${written[1]}, ${written.length - 2} .hgrm)\n`);
  return 0;
}
