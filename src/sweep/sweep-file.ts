/**
 * The sweep file (YAML, or JSON, which is YAML): checked against a JSON Schema (ajv), then against
 * the scenario's own flags, every cell parsed and checked as `mmuh run` would before anything runs.
 * Every refusal is one UsageError line `EINVAL: FILE:LINE: …` naming the line that is wrong.
 *
 *   name: dirty-strategies       # optional; the file's base name otherwise
 *   scenario: dirty-log-perf
 *   seed: 1                      # the sweep's seed (cells derive theirs)
 *   repeat: 3                    # runs per cell
 *   base: { vcpus: 2, bytes: 64M, workers: 1 }
 *   axes:                        # cross product, in this order
 *     dirty: [pml, wrprot]
 *     split: [eager, lazy]
 */
import { readFileSync } from 'node:fs';
import { basename, extname } from 'node:path';
import { Ajv, type ErrorObject } from 'ajv';
import { LineCounter, parseDocument, isNode, type Document } from 'yaml';
import { UsageError, parseFlags, type FlagSpec } from '../scenario/flags.js';
import { findScenario, kScenarios } from '../scenario/index.js';
import type { AxisValue, SweepSpec } from './sweep-result.js';

/** Flags a sweep sets itself or that say where output goes: never in base or axes. */
const kReserved: Record<string, string> = {
  json: 'each run writes its result where the sweep says',
  quiet: 'runs are always quiet (-q)',
  repeat: 'use the top-level `repeat:` (each repeat is its own job)',
  watch: 'runs have no terminal', 'watch-delay': 'runs have no terminal',
  profile: 'not in a sweep', 'profile-dir': 'not in a sweep', 'profile-top': 'not in a sweep',
  seed: "each cell's seed is derived from the top-level `seed:` and the cell id",
};

const kScalar = { type: ['string', 'number', 'boolean'] };
export const kSweepFileSchema = {
  type: 'object',
  required: ['scenario', 'axes'],
  additionalProperties: false,
  properties: {
    name: { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$' },
    scenario: { type: 'string' },
    seed: { type: 'integer', minimum: 0, maximum: 2 ** 31 - 1 },
    repeat: { type: 'integer', minimum: 1, maximum: 1000 },
    attempts: { type: 'integer', minimum: 1, maximum: 10 },
    base: { type: 'object', additionalProperties: kScalar },
    axes: { type: 'object', minProperties: 1, additionalProperties: { type: 'array', minItems: 1, uniqueItems: true, items: kScalar } },
  },
} as const;

interface Located {
  doc: Document;
  lines: LineCounter;
  file: string;
}

/** 1-based line of the node at `path` (or its nearest present ancestor). */
function lineOf(l: Located, path: (string | number)[]): number {
  for (let n = path.length; n >= 0; n--) {
    const node = n === 0 ? l.doc.contents : l.doc.getIn(path.slice(0, n), true);
    if (isNode(node) && node.range) return l.lines.linePos(node.range[0]).line;
  }
  return 1;
}

function refuse(l: Located, path: (string | number)[], msg: string): never {
  throw new UsageError(`EINVAL: ${l.file}:${lineOf(l, path)}: ${msg}`);
}

function ajvMessage(e: ErrorObject): string {
  const where = e.instancePath === '' ? 'the sweep' : e.instancePath.slice(1).replace(/\//g, '.');
  if (e.keyword === 'additionalProperties') return `${where}: unknown key '${(e.params as { additionalProperty: string }).additionalProperty}' (keys: name, scenario, seed, repeat, attempts, base, axes)`;
  if (e.keyword === 'required') return `${where}: missing '${(e.params as { missingProperty: string }).missingProperty}'`;
  if (e.keyword === 'type' && e.instancePath.startsWith('/axes/')) return `${where}: an axis is a list of values ([a, b]), each a string, number or boolean`;
  return `${where} ${e.message ?? 'is invalid'}`;
}

/** A flag as the file names it: 'dirty', '--dirty', '-v', 'v'. */
function resolveFlag(specs: FlagSpec[], key: string): FlagSpec | undefined {
  const k = key.replace(/^--?/, '');
  return specs.find((s) => s.name === k) ?? (k.length === 1 ? specs.find((s) => s.short === k) : undefined);
}

/** argv for one flag value, as `mmuh run` takes it. */
export function flagArgv(spec: FlagSpec, v: AxisValue): string[] {
  if (spec.type === 'bool') return [v ? `--${spec.name}` : `--no-${spec.name}`];
  return [`--${spec.name}`, String(v)];
}

export interface LoadedSweep {
  spec: SweepSpec;
  /** The scenario's flags (for argv and checks). */
  flags: FlagSpec[];
  file: string;
}

const ajv = new Ajv({ allErrors: false, strict: true, allowUnionTypes: true });
const validate = ajv.compile(kSweepFileSchema);

/** Parse and check the sweep file's text; `file` names it in errors. */
export function parseSweep(text: string, file: string): LoadedSweep {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  const l: Located = { doc, lines, file };
  if (doc.errors.length > 0) {
    const e = doc.errors[0]!;
    throw new UsageError(`EINVAL: ${file}:${e.linePos?.[0]?.line ?? 1}: not valid YAML/JSON (${e.message.split('\n')[0]})`);
  }
  const raw = doc.toJS({ maxAliasCount: 100 }) as unknown;
  if (!validate(raw)) {
    const e = validate.errors![0]!;
    const path = e.instancePath.split('/').slice(1).map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
    if (e.keyword === 'additionalProperties') path.push((e.params as { additionalProperty: string }).additionalProperty);
    refuse(l, path, ajvMessage(e));
  }
  const r = raw as { name?: string; scenario: string; seed?: number; repeat?: number; attempts?: number; base?: Record<string, AxisValue>; axes: Record<string, AxisValue[]> };
  const scenario = findScenario(r.scenario);
  if (!scenario) refuse(l, ['scenario'], `unknown scenario '${r.scenario}' (one of ${kScenarios.map((s) => s.name).join(', ')})`);
  const specs = scenario.flags;
  const named = (where: 'base' | 'axes', key: string): FlagSpec => {
    const s = resolveFlag(specs, key);
    if (!s) refuse(l, [where, key], `${where}.${key}: ${scenario.name} has no flag '${key}' (mmuh run ${scenario.name} --help lists them)`);
    const why = kReserved[s.name];
    if (why !== undefined) refuse(l, [where, key], `${where}.${key}: --${s.name} cannot be set in a sweep (${why})`);
    return s;
  };
  const base: Record<string, AxisValue> = {};
  const baseArgv: string[] = [];
  for (const [key, v] of Object.entries(r.base ?? {})) {
    const s = named('base', key);
    if (s.name in base) refuse(l, ['base', key], `base.${key}: --${s.name} is given twice`);
    checkValue(l, ['base', key], specs, s, v);
    base[s.name] = v;
    baseArgv.push(...flagArgv(s, v));
  }
  const axes: SweepSpec['axes'] = [];
  for (const [key, values] of Object.entries(r.axes)) {
    const s = named('axes', key);
    if (s.name in base) refuse(l, ['axes', key], `axes.${key}: --${s.name} is also in base (an axis varies it; drop one)`);
    if (axes.some((a) => a.flag === s.name)) refuse(l, ['axes', key], `axes.${key}: --${s.name} is given twice`);
    values.forEach((v, i) => checkValue(l, ['axes', key, i], specs, s, v, baseArgv));
    axes.push({ flag: s.name, values });
  }
  const name = r.name ?? basename(file, extname(file)).replace(/[^A-Za-z0-9._-]/g, '_');
  const spec: Omit<SweepSpec, 'id'> = { name, scenario: scenario.name, seed: r.seed ?? 1, repeat: r.repeat ?? 1, attempts: r.attempts ?? 2, base, axes };
  return { spec: { ...spec, id: '' }, flags: specs, file };
}

/** One value parsed as `mmuh run` parses it (with the base flags, so ranges that depend on them show). */
function checkValue(l: Located, path: (string | number)[], specs: FlagSpec[], s: FlagSpec, v: AxisValue, baseArgv: string[] = []): void {
  const where = path.join('.');
  if (s.type === 'bool' && typeof v !== 'boolean') refuse(l, path, `${where}: --${s.name} is a switch: give true or false`);
  if (s.type !== 'bool' && typeof v === 'boolean') refuse(l, path, `${where}: --${s.name} takes a value, not ${v}`);
  try {
    parseFlags(specs, [...baseArgv, ...flagArgv(s, v)]);
  } catch (e) {
    if (e instanceof UsageError) refuse(l, path, `${where}: ${e.message}`);
    throw e;
  }
}

/** Read and parse; an unreadable file is ENOENT/EACCES in one line. */
export function loadSweepFile(file: string): LoadedSweep {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? 'EIO';
    throw new UsageError(`${code}: cannot read sweep file '${file}' (${code === 'ENOENT' ? 'no such file' : (e as Error).message})`);
  }
  return parseSweep(text, file);
}
