/**
 * `mmuh report RESULT.json… -o reports/NAME.html [--label A,B…]`: the HTML report, NAME.md and the
 * .hgrm files beside it. Bad input (unreadable file, another schema, incomparable runs, a bad -o)
 * is one line and exit 2.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { UsageError, parseFlagsAndArgs, type FlagSpec } from '../scenario/flags.js';
import { loadInputs } from '../report/inputs.js';
import { makeReport } from '../report/report-files.js';
import { harnessInfo } from './build-info.js';

export const kReportUsage = `usage: mmuh report RESULT.json… -o reports/NAME.html [--label A,B…]

Writes NAME.html (self-contained: inline SVG, no network), NAME.md (the same tables) and
NAME.<label>.<histogram>.hgrm (HdrHistogram percentile distributions, µs) beside it.
The first file is the baseline. Labels default to the flags that differ between the files.

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
  const inputs = loadInputs(files, labels);
  const name = basename(output).replace(/\.html$/, '');
  const dir = dirname(output);
  const r = makeReport(inputs, name, toolName());
  const written: [string, string][] = [[output, r.html], [join(dir, `${name}.md`), r.markdown], ...r.hgrm.map((h) => [join(dir, h.file), h.text] as [string, string])];
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
