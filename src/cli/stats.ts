/**
 * `mmuh stats [--json] [--units] FILE|-`: read a KVM binary stats buffer (the bytes of a
 * KVM_GET_STATS_FD file, saved from real KVM or from the harness's getStatsFd()) from a file or
 * stdin and print it as kvm_stat's batch mode does (report/kvm-stat.ts), or as JSON.
 * Exit 0; 2 for bad usage, an unreadable file (ENOENT, EACCES, EISDIR) or a buffer that is not
 * a KVM stats layout (EINVAL), with one line on stderr.
 */
import { readFileSync } from 'node:fs';
import { KvmError } from '../host/errno.js';
import { parseBinaryStats } from '../kvm/stats-parse.js';
import { kvmStatJson, renderKvmStat } from '../report/kvm-stat.js';
import { UsageError, flagHelp, parseFlagsAndArgs, type FlagSpec } from '../scenario/flags.js';

const kStatsFlags: FlagSpec[] = [
  { name: 'json', type: 'bool', default: false, help: 'print the header, id and every descriptor with its data as JSON' },
  { name: 'units', type: 'bool', default: false, help: 'append each value scaled by its exponent, in its unit (s, B, cycles)' },
];

export const kStatsUsage = `usage: mmuh stats [--json] [--units] FILE|-
Print a KVM binary stats buffer (KVM_GET_STATS_FD's bytes; - reads stdin) as kvm_stat -1 does.

${flagHelp(kStatsFlags)}`;

/** Returns the exit code; `write` prints to stdout. */
export function statsCommand(argv: string[], write: (s: string) => void): number {
  if (argv.includes('--help') || argv.includes('-h')) {
    write(kStatsUsage + '\n');
    return 0;
  }
  let flags: Record<string, unknown>;
  let args: string[];
  try {
    ({ flags, args } = parseFlagsAndArgs(kStatsFlags, argv));
    if (args.length !== 1) throw new UsageError(`stats: give one FILE (or - for stdin), got ${args.length}; see mmuh stats --help`);
  } catch (e) {
    if (e instanceof UsageError) return usage(e.message);
    throw e;
  }
  const file = args[0]!;
  let buf: Buffer;
  try {
    buf = readFileSync(file === '-' ? 0 : file);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    return usage(`stats: ${err.code ?? 'EIO'}: cannot read '${file}': ${(err.message ?? '').replace(/^[A-Z]+: /, '').replace(/, open '.*'$/, '')}`);
  }
  let parsed;
  try {
    parsed = parseBinaryStats(buf);
  } catch (e) {
    if (e instanceof KvmError) return usage(`stats: ${file === '-' ? 'stdin' : file}: ${e.message}`);
    throw e;
  }
  write((flags.json ? JSON.stringify(kvmStatJson(parsed), null, 2) : renderKvmStat(parsed, { units: flags.units === true })) + '\n');
  return 0;
}

function usage(msg: string): number {
  process.stderr.write(`mmuh: ${msg}\n`);
  return 2;
}
