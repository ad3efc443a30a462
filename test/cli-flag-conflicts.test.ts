// §3.5: conflicting or inert flag combinations are refused before the run (exit 2, one
// sentence); --workers above the vCPU count is capped with a note (stderr and host.notes).
import { describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mmuh, oneLine } from './fixtures/mmuh.js';
import { findScenario } from '../src/scenario/index.js';
import { parseFlags, UsageError } from '../src/scenario/flags.js';

const huge = ['-s', 'anonymous_hugetlb_2mb', '-b', '4M'];
const refused: [string[], RegExp][] = [
  [['dirty-log-perf', '-g', '--enable', 'wrprot-all'], /--enable .* -g does not enable/],
  [['dirty-log-perf', '--dirty', 'ring', '-g'], /--dirty ring never enables manual protect/],
  [['dirty-log-perf', '--dirty', 'ring', '--enable', 'initially-set'], /--dirty ring does not use KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2/],
  [['dirty-log-perf', '--ring-entries', '1024'], /--ring-entries .* needs --dirty ring/],
  [['dirty-log-perf', '--dirty', 'ring', '--ring-entries', '3000'], /not a power of two/],
  [['dirty-log-perf', ...huge, '-g', '--huge', 'wrprot-huge'], /--huge only applies under KVM_DIRTY_LOG_INITIALLY_SET, which -g/],
  [['dirty-log-perf', ...huge, '--enable', 'wrprot-all', '--huge', 'lazy'], /which --enable wrprot-all turns off/],
  [['dirty-log-perf', ...huge, '--dirty', 'ring', '--huge', 'lazy'], /which --dirty ring turns off/],
  [['dirty-log-perf', ...huge, '-g', '--split', 'eager-clear'], /--split eager-clear only differs from on-fault/],
  [['dirty-log-perf', ...huge, '-g', '--split', 'eager-enable'], /--split eager-enable only differs from eager/],
  [['dirty-log-perf', '-s', 'anonymous', '--split', 'on-fault'], /--split has no effect with -s anonymous/],
  [['dirty-log-perf', '-s', 'anonymous', '--recover', 'zap-collapsible'], /--recover has no effect with -s anonymous/],
  [['dirty-log-perf', '-o', '-b', '4M'], /-o .* no effect with one vCPU/],
  [['demand-paging', '-o', '-b', '4M'], /-o .* no effect with one vCPU/],
  [['dirty-log-page-splitting', '-o', '-v', '1'], /-o .* no effect with one vCPU/],
];

describe('conflicting and inert flags', () => {
  // In-process: the scenario's check() refuses each one with a UsageError (one sentence).
  it.each(refused)('%j is refused', (args, re) => {
    const [name, ...rest] = args;
    const s = findScenario(name!)!;
    const f = parseFlags(s.flags, rest);
    expect(() => s.check!(f)).toThrow(UsageError);
    expect(() => s.check!(f)).toThrow(re);
  });
  it('the CLI turns a refusal into one line on stderr and exit 2, before running anything', () => {
    for (const args of [refused[0]![0], refused[1]![0]]) {
      const r = mmuh(['run', ...args]);
      expect(r.code).toBe(2);
      expect(oneLine(r)).toMatch(args === refused[0]![0] ? refused[0]![1] : refused[1]![1]);
      expect(r.out).toBe('');
    }
  });
  it('combinations that mean something still run (-g --split on-fault on huge backing; ring alone)', () => {
    for (const args of [['-g', '--split', 'on-fault', ...huge], ['--dirty', 'ring', '--ring-entries', '1024', '-b', '4M'], ['--huge', 'wrprot-huge', ...huge]]) {
      const r = mmuh(['run', 'dirty-log-perf', ...args, '--workers', '1', '-q']);
      expect(r.code, `${args.join(' ')}: ${r.err}`).toBe(0);
    }
  });
  it('--workers above the vCPU count is capped with a note, printed and in host.notes', () => {
    const dir = mkdtempSync(join(tmpdir(), 'mmuh-workers-'));
    const file = join(dir, 'r.json');
    const r = mmuh(['run', 'demand-paging', '-b', '4M', '-v', '2', '--workers', '8', '--json', file]);
    expect(r.code, r.err).toBe(0);
    expect(oneLine(r)).toMatch(/^mmuh: note: --workers 8 capped to 2, the number of vCPUs/);
    const j = JSON.parse(readFileSync(file, 'utf8'));
    expect(j.host.notes).toContainEqual(expect.stringMatching(/^--workers 8 capped to 2/));
    expect(j.config.workers).toBe(2);
    expect(r.out).toMatch(/note: --workers 8 capped/);
  });
});
