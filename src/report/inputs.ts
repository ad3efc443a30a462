/**
 * Result files as `mmuh report` and `mmuh compare` read them: loaded and checked (readable, JSON,
 * schema `kvm-mmu-harness/result@1`, a completed run, comparable with the first file), then
 * labelled by what differs between them (`pml` / `wrprot`, `wrprot+on-fault`), or as --label says.
 * Every refusal is one UsageError line with an errno-style name: the CLI prints it and exits 2.
 */
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { UsageError } from '../scenario/flags.js';
import { findScenario } from '../scenario/index.js';
import { kResultSchema, type RunResult } from '../scenario/result.js';
import { runsOf } from './repeat-aggregate.js';

export interface ReportInput {
  file: string;
  label: string;
  result: RunResult;
  /** The runs behind it (its repeats, or itself). */
  runs: RunResult[];
}

/**
 * What fixes the workload's shape: results that differ here measure different work, so a ratio of
 * their times means nothing. Everything else (tracking, split, backing, workers, cost model, seed)
 * is a choice a comparison is for.
 */
const kShapeKeys = ['vms', 'vcpus', 'bytes', 'iterations', 'slots', 'write-percent', 'random', 'random-access', 'overlap', 'mmio-every'];

/** Flags that say where output goes, not what ran: never part of a label. */
const kOutputFlags = new Set(['json', 'quiet', 'repeat']);

/** The file read and parsed; unreadable or not JSON is one UsageError line. */
export function readJsonFile(file: string): unknown {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? 'EIO';
    throw new UsageError(`${code}: cannot read '${file}' (${code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'a directory' : (e as Error).message})`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    // V8 quotes the offending text, newlines and all: keep the error one line.
    throw new UsageError(`EINVAL: '${file}' is not JSON (${(e as Error).message.replace(/\s+/g, ' ')})`);
  }
  return json;
}

/** `json` is the file's parsed text when the caller has read it already (mmuh report looks for a sweep first). */
export function loadResult(file: string, json: unknown = readJsonFile(file)): RunResult {
  const r = json as Partial<RunResult> | null;
  if (typeof r !== 'object' || r === null || Array.isArray(r)) throw new UsageError(`EINVAL: '${file}' is not a result object`);
  if (r.schema !== kResultSchema) {
    throw new UsageError(`EINVAL: '${file}' has schema ${r.schema === undefined ? 'none' : `'${String(r.schema)}'`}, expected '${kResultSchema}'`);
  }
  if (r.status !== 'ok') {
    throw new UsageError(`EINVAL: '${file}' is a ${String(r.status)} run${r.error ? ` (${r.error.message})` : ''}: its figures are partial; report completed runs only`);
  }
  if (!Array.isArray(r.phases) || typeof r.histograms !== 'object' || typeof r.config !== 'object' || r.config === null) {
    throw new UsageError(`EINVAL: '${file}' has no phases, histograms or config: not a complete ${kResultSchema} result`);
  }
  return r as RunResult;
}

/** Refuse results that measured different work than the first one. */
export function checkComparable(files: string[], results: RunResult[]): void {
  const a = results[0]!;
  results.slice(1).forEach((b, i) => {
    const why = a.scenario !== b.scenario
      ? `scenario ${a.scenario} vs ${b.scenario}`
      : kShapeKeys.filter((k) => k in a.config || k in b.config).filter((k) => JSON.stringify(a.config[k]) !== JSON.stringify(b.config[k]))
        .map((k) => `${k} ${JSON.stringify(a.config[k] ?? null)} vs ${JSON.stringify(b.config[k] ?? null)}`).join(', ');
    if (why) throw new UsageError(`EINVAL: '${files[i + 1]}' is not comparable with '${files[0]}': ${why}`);
  });
}

function labelPart(key: string, v: unknown): string {
  if (typeof v === 'string') return v;
  if (typeof v === 'boolean') return v ? key : `no-${key}`;
  return `${key}=${String(v)}`;
}

/**
 * A label per result from the scenario's flags whose values differ between the results (joined
 * with '+'); results that differ in none are named after their files (then #2, #3 if those clash).
 */
export function deriveLabels(files: string[], results: RunResult[]): string[] {
  const flags = findScenario(results[0]!.scenario)?.flags.map((f) => f.name) ?? Object.keys(results[0]!.config);
  const keys = flags.filter((k) => !kOutputFlags.has(k) && new Set(results.map((r) => JSON.stringify(r.config[k] ?? null))).size > 1);
  const labels = results.map((r, i) => (keys.length > 0 ? keys.map((k) => labelPart(k, r.config[k])).join('+') : basename(files[i]!).replace(/\.json$/, '')));
  const seen = new Map<string, number>();
  return labels.map((l) => {
    const n = (seen.get(l) ?? 0) + 1;
    seen.set(l, n);
    return n === 1 ? l : `${l}#${n}`;
  });
}

/** Load, check and label; `labels` is --label split on commas (one per file), or null. */
export function loadInputs(files: string[], labels: string[] | null, jsons?: unknown[]): ReportInput[] {
  if (files.length === 0) throw new UsageError('give at least one result file (mmuh run … --json FILE writes one)');
  const results = files.map((f, i) => loadResult(f, jsons ? jsons[i] : readJsonFile(f)));
  checkComparable(files, results);
  if (labels !== null) {
    if (labels.length !== files.length) throw new UsageError(`EINVAL: --label gives ${labels.length} label(s) for ${files.length} file(s)`);
    if (new Set(labels).size !== labels.length || labels.some((l) => l === '')) throw new UsageError('EINVAL: --label: labels must be non-empty and distinct');
  }
  const names = labels ?? deriveLabels(files, results);
  return results.map((result, i) => ({ file: files[i]!, label: names[i]!, result, runs: runsOf(result) }));
}
