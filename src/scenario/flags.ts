/**
 * Scenario flags in KVM-selftest style: short options as the selftests spell them (-v, -b, -s,
 * -a, -o, -r, -i, -w, -x, -e, -g) plus long ones, parsed as getopt(3) parses them: grouped short
 * flags (`-ao`), attached values (`-b1G`, `-v4`), a value that starts with '-' taken as the value
 * (`-b -a` sets -b to "-a", as getopt does), `--name=value`, `--no-<bool>`, last one wins.
 * Tokenising is node:util parseArgs (non-strict, so we see every token and word errors
 * ourselves); this module adds the types, ranges and one-line errors. Bad input is a
 * UsageError: the CLI prints one line and exits 2.
 */
import { parseArgs } from 'node:util';

export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export type FlagType = 'int' | 'size' | 'bool' | 'string' | 'enum' | 'float';

export interface FlagSpec {
  name: string;
  short?: string;
  type: FlagType;
  default: unknown;
  help: string;
  choices?: readonly string[];
  min?: number;
  max?: number;
  /**
   * The flag is recognised only to be refused with this sentence (an upstream option the
   * harness does not model, e.g. demand_paging_test's userfaultfd -a/-r), rather than being
   * reported as unknown or, worse, reinterpreted.
   */
  refuse?: string;
  /** Not listed by --help (refused upstream spellings). */
  hidden?: boolean;
}

/** parse_size() from the selftests' test_util.c: a number with an optional K/M/G/T suffix. */
export function parseSize(s: string): number {
  const m = /^(\d+)([kKmMgGtT]?)[bB]?$/.exec(s.trim());
  if (!m) throw new UsageError(`bad size '${s}' (expected a number with an optional K, M, G or T suffix)`);
  const mult = { '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 }[m[2]!.toLowerCase() as '' | 'k' | 'm' | 'g' | 't'];
  const v = Number(m[1]) * mult;
  if (!Number.isSafeInteger(v)) throw new UsageError(`size '${s}' is too large`);
  return v;
}

export function formatSize(bytes: number): string {
  for (const [u, s] of [[2 ** 40, 'T'], [2 ** 30, 'G'], [2 ** 20, 'M'], [2 ** 10, 'K']] as const) {
    if (bytes >= u && bytes % u === 0) return `${bytes / u}${s}`;
  }
  return String(bytes);
}

/** Flag values by long name, plus the set of flags the user gave (conflict checks need it). */
export type ParsedFlags = Record<string, unknown> & { readonly [kGiven]?: ReadonlySet<string> };
export const kGiven: unique symbol = Symbol('given');

/** The long names the user set explicitly (as opposed to defaults). */
export function givenFlags(f: Record<string, unknown>): ReadonlySet<string> {
  return (f as ParsedFlags)[kGiven] ?? new Set();
}

export function parseFlags(specs: FlagSpec[], argv: string[]): Record<string, unknown> {
  const { flags, args } = parseFlagsAndArgs(specs, argv);
  if (args.length > 0) throw new UsageError(`unexpected argument '${args[0]}'`);
  return flags;
}

/** parseFlags() for a command that also takes operands (`mmuh stats FILE`): they come back in order. */
export function parseFlagsAndArgs(specs: FlagSpec[], argv: string[]): { flags: Record<string, unknown>; args: string[] } {
  const out: Record<string, unknown> = {};
  const args: string[] = [];
  for (const s of specs) out[s.name] = s.default;
  const byName = new Map(specs.map((s) => [s.name, s]));
  const options: Record<string, { type: 'string' | 'boolean'; short?: string }> = {};
  for (const s of specs) {
    options[s.name] = s.short ? { type: s.type === 'bool' ? 'boolean' : 'string', short: s.short } : { type: s.type === 'bool' ? 'boolean' : 'string' };
  }
  const { tokens } = parseArgs({ args: argv, options, strict: false, allowPositionals: true, tokens: true });
  const given = new Set<string>();
  for (const t of tokens) {
    if (t.kind === 'positional') {
      args.push(t.value);
      continue;
    }
    if (t.kind === 'option-terminator') continue;
    let spec = byName.get(t.name);
    let negated = false;
    if (!spec && t.rawName.startsWith('--no-')) {
      const base = byName.get(t.name.slice(3));
      if (base?.type === 'bool') {
        spec = base;
        negated = true;
      }
    }
    // A long name spelled with one dash (-vms) or a short one with two (--v) is not a flag.
    if (!spec || (t.rawName.startsWith('--') ? t.rawName !== `--${t.name}` : t.rawName !== `-${spec.short}`)) {
      throw new UsageError(`unknown flag '${t.rawName}'${t.rawName.startsWith('--') ? '' : ` (in '${argv[t.index]}')`}`);
    }
    if (spec.refuse) throw new UsageError(spec.refuse);
    given.add(spec.name);
    if (spec.type === 'bool') {
      if (t.value !== undefined) throw new UsageError(`flag ${t.rawName} takes no value`);
      out[spec.name] = !negated;
      continue;
    }
    if (t.value === undefined) throw new UsageError(`flag ${t.rawName} needs a value`);
    out[spec.name] = parseValue(spec, t.value);
  }
  Object.defineProperty(out, kGiven, { value: given, enumerable: false });
  return { flags: out, args };
}

function parseValue(spec: FlagSpec, raw: string): unknown {
  const label = spec.short ? `-${spec.short}/--${spec.name}` : `--${spec.name}`;
  let v: number;
  switch (spec.type) {
    case 'string':
      return raw;
    case 'enum':
      if (!spec.choices!.includes(raw)) throw new UsageError(`${label}: '${raw}' is not one of ${spec.choices!.join(', ')}`);
      return raw;
    case 'size':
      v = parseSize(raw);
      break;
    case 'int':
      if (!/^-?\d+$/.test(raw)) throw new UsageError(`${label}: '${raw}' is not an integer`);
      v = Number(raw);
      break;
    case 'float':
      v = Number(raw);
      if (!Number.isFinite(v)) throw new UsageError(`${label}: '${raw}' is not a number`);
      break;
    default:
      throw new UsageError(`${label}: unsupported flag type`);
  }
  if (spec.min !== undefined && v < spec.min) throw new UsageError(`${label} must be at least ${spec.min}, got ${raw}`);
  if (spec.max !== undefined && v > spec.max) throw new UsageError(`${label} must be at most ${spec.max}, got ${raw}`);
  return v;
}

export function flagHelp(specs: FlagSpec[]): string {
  return specs
    .filter((s) => !s.hidden)
    .map((s) => {
      const names = `${s.short ? `-${s.short}, ` : '    '}--${s.name}${s.type === 'bool' ? '' : ` <${s.type === 'enum' ? s.choices!.join('|') : s.type}>`}`;
      const def = s.default === undefined || s.default === false || s.default === null ? '' : ` (default: ${typeof s.default === 'number' && s.type === 'size' ? formatSize(s.default) : String(s.default)})`;
      return `  ${names.padEnd(44)} ${s.help}${def}`;
    })
    .join('\n');
}
