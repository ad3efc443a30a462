/**
 * Scenario flags in KVM-selftest style: short options as the selftests spell them (-v, -b, -s,
 * -a, -o, -r, -i, -w, -x, -e, -g) plus long ones. Bad input is a UsageError: the CLI prints one
 * line and exits 2.
 */
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

export function parseFlags(specs: FlagSpec[], argv: string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const s of specs) out[s.name] = s.default;
  const byLong = new Map(specs.map((s) => [s.name, s]));
  const byShort = new Map(specs.filter((s) => s.short).map((s) => [s.short!, s]));
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    let spec: FlagSpec | undefined;
    let inline: string | undefined;
    if (arg.startsWith('--')) {
      const eq = arg.indexOf('=');
      const name = eq >= 0 ? arg.slice(2, eq) : arg.slice(2);
      inline = eq >= 0 ? arg.slice(eq + 1) : undefined;
      spec = byLong.get(name);
      if (!spec && name.startsWith('no-') && byLong.get(name.slice(3))?.type === 'bool') {
        out[name.slice(3)] = false;
        continue;
      }
    } else if (arg.startsWith('-') && arg.length >= 2) {
      spec = byShort.get(arg.slice(1, 2));
      if (arg.length > 2) inline = arg.slice(2);
    } else {
      throw new UsageError(`unexpected argument '${arg}'`);
    }
    if (!spec) throw new UsageError(`unknown flag '${arg}'`);
    if (spec.type === 'bool') {
      if (inline !== undefined) throw new UsageError(`flag ${arg} takes no value`);
      out[spec.name] = true;
      continue;
    }
    const raw = inline ?? argv[++i];
    if (raw === undefined) throw new UsageError(`flag ${arg} needs a value`);
    out[spec.name] = parseValue(spec, raw);
  }
  return out;
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
    .map((s) => {
      const names = `${s.short ? `-${s.short}, ` : '    '}--${s.name}${s.type === 'bool' ? '' : ` <${s.type === 'enum' ? s.choices!.join('|') : s.type}>`}`;
      const def = s.default === undefined || s.default === false || s.default === null ? '' : ` (default: ${typeof s.default === 'number' && s.type === 'size' ? formatSize(s.default) : String(s.default)})`;
      return `  ${names.padEnd(44)} ${s.help}${def}`;
    })
    .join('\n');
}
