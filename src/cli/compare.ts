/**
 * `mmuh compare A.json B.json [C.json…] [--markdown] [--label A,B…]`: every phase (both clocks)
 * and histogram percentile of each file against the first, with the relative change and the
 * significance of the difference. Exit 0 whatever the verdict; 2 with one line for bad input.
 */
import { UsageError, parseFlagsAndArgs, type FlagSpec } from '../scenario/flags.js';
import { compareInputs, comparisonCells, kMethod, verdicts } from '../report/comparison.js';
import { loadInputs } from '../report/inputs.js';
import { compareMarkdown, noisyWarning } from '../report/markdown.js';
import { modelNote } from '../report/report-tables.js';
import { table } from '../report/text.js';
import { labelsFlag } from './report.js';

export const kCompareUsage = `usage: mmuh compare A.json B.json [C.json…] [--markdown] [--label A,B…]

Compares every phase (wall and modeled) and histogram percentile of each file with the first:
mean ± stddev over repeats (mmuh run … --repeat N), the ratio to A, Welch's t-test (two-sided,
Holm-corrected per column at alpha 0.05), its p-value. "exact": both sides repeat without
variance (modeled figures on one worker). "n/a (1 run)": a side has one run.

  --markdown       a Markdown table (for a mail or a cover letter)
  --label A,B,…    one label per file, in order`;

const kCompareFlags: FlagSpec[] = [
  { name: 'markdown', type: 'bool', default: false, help: 'Markdown output' },
  { name: 'label', type: 'string', default: null, help: 'labels, comma-separated, one per file' },
];

export function compareCommand(argv: string[], out: { write(s: string): void }): number {
  const { flags: f, args: files } = parseFlagsAndArgs(kCompareFlags, argv);
  if (files.length < 2) throw new UsageError('mmuh compare needs two or more result files (the first is the baseline)');
  const inputs = loadInputs(files, labelsFlag(f.label));
  const c = compareInputs(inputs);
  if (f.markdown === true) {
    out.write(compareMarkdown(c, inputs));
    return 0;
  }
  const { header, rows } = comparisonCells(c);
  out.write([table(header, rows), '', ...verdicts(c), '', kMethod, modelNote(inputs), ...noisyWarning(inputs).map((w) => w.replace(/\*\*/g, '').replace(/^> /, 'warning: '))].join('\n') + '\n');
  return 0;
}
