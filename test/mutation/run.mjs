#!/usr/bin/env node
/**
 * Mutation testing of the MMU rules: apply one single-line change to src/ at a time, build, run
 * the suite, record whether a test failed (killed) or not (survived), restore the source.
 *
 *   node test/mutation/run.mjs                 every mutant, full suite each (the kill decision)
 *   node test/mutation/run.mjs --only a,b      just these mutant ids
 *   node test/mutation/run.mjs --quick         each mutant against its `tests` subset (if it has
 *                                              one) — faster while writing tests; the summary
 *                                              says which test set decided each kill
 *   node test/mutation/run.mjs --list          check every snippet (exactly once) and exit
 *   --no-baseline                              skip the unmutated-suite check (it must be green, or
 *                                              every mutant would look killed)
 *   --json FILE                                summary path (default test/mutation/last-run.json)
 *
 * mutants.json: [{ id, file, find, replace, rule, tests?, equivalent? }]. `find` must occur
 * exactly once in `file`, so a mutant keeps applying when other branches move lines; the tool
 * stops with an error otherwise. A mutant with `equivalent: "why"` is reported but left out of
 * the score. One mutant at a time: the machine has two cores and the suite uses both.
 *
 * Safety: before a file is changed its original goes to FILE.mutation-orig; it is restored in a
 * finally block and on SIGINT/SIGTERM, and a leftover .mutation-orig from a run that died is
 * restored (and reported) at start, before anything else happens.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, renameSync, writeFileSync, readdirSync, statSync, copyFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const kSuffix = '.mutation-orig';
const require = createRequire(import.meta.url);
const tsc = require.resolve('typescript/bin/tsc');
const vitest = join(root, 'node_modules', 'vitest', 'vitest.mjs');

function parseArgs(argv) {
  const o = { only: null, quick: false, list: false, noBaseline: false, tests: null, json: join(root, 'test', 'mutation', 'last-run.json') };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--only') o.only = new Set(argv[++i].split(','));
    else if (a === '--quick') o.quick = true;
    else if (a === '--list') o.list = true;
    else if (a === '--no-baseline') o.noBaseline = true;
    else if (a === '--tests') o.tests = argv[++i].split(',');
    else if (a === '--json') o.json = argv[++i];
    else {
      console.error(`mutate: unknown argument '${a}' (--only ids, --quick, --tests files, --list, --no-baseline, --json FILE)`);
      process.exit(2);
    }
  }
  return o;
}

/** Restore every FILE.mutation-orig under src/ (a previous run died mid-mutant). */
function restoreLeftovers() {
  const found = [];
  const walk = (dir) => {
    for (const e of readdirSync(dir)) {
      const p = join(dir, e);
      if (statSync(p).isDirectory()) walk(p);
      else if (p.endsWith(kSuffix)) found.push(p);
    }
  };
  walk(join(root, 'src'));
  for (const p of found) {
    renameSync(p, p.slice(0, -kSuffix.length));
    console.error(`mutate: restored ${relative(root, p.slice(0, -kSuffix.length))} from a previous run's backup`);
  }
}

/** The one file currently mutated (restored by restore()). */
let active = null;
function restore() {
  if (active === null) return;
  const orig = active + kSuffix;
  if (existsSync(orig)) renameSync(orig, active);
  active = null;
}
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    restore();
    console.error(`mutate: ${sig}, source restored`);
    process.exit(130);
  });
}
process.on('exit', restore);

function countOccurrences(text, snippet) {
  let n = 0;
  for (let i = text.indexOf(snippet); i >= 0; i = text.indexOf(snippet, i + 1)) n++;
  return n;
}

function checkMutant(m) {
  for (const k of ['id', 'file', 'find', 'rule']) {
    if (typeof m[k] !== 'string' || m[k] === '') throw new Error(`mutant ${m.id ?? '?'}: '${k}' must be a non-empty string`);
  }
  if (typeof m.replace !== 'string') throw new Error(`mutant ${m.id}: 'replace' must be a string ('' deletes the snippet)`);
  if (m.find === m.replace) throw new Error(`mutant ${m.id}: replace equals find`);
  const path = join(root, m.file);
  if (!existsSync(path)) throw new Error(`mutant ${m.id}: ${m.file} does not exist`);
  const n = countOccurrences(readFileSync(path, 'utf8'), m.find);
  if (n !== 1) throw new Error(`mutant ${m.id}: snippet occurs ${n} times in ${m.file} (must be exactly once): ${JSON.stringify(m.find)}`);
}

/** A mutant that makes the suite hang is killed (by the timeout), as vitest's own would. */
const kRunTimeoutMs = 300_000;

function run(cmd, args) {
  const t0 = Date.now();
  const r = spawnSync(process.execPath, [cmd, ...args], { cwd: root, encoding: 'utf8', maxBuffer: 64 << 20, timeout: kRunTimeoutMs, killSignal: 'SIGKILL' });
  const timedOut = r.error !== undefined && /ETIMEDOUT/.test(String(r.error));
  return { code: r.status ?? 1, out: (r.stdout ?? '') + (r.stderr ?? '') + (timedOut ? `\ntimed out after ${kRunTimeoutMs / 1000} s` : ''), ms: Date.now() - t0 };
}

/** The first failing test's name from vitest's output (for the report). */
function firstFailure(out) {
  // eslint-disable-next-line no-control-regex
  const plain = out.replace(/\x1b\[[0-9;]*m/g, '');
  const m = /FAIL\s+(test\/\S+\.test\.ts[^\n]*)/.exec(plain) ?? /timed out after \d+ s/.exec(plain);
  return m ? (m[1] ?? m[0]).trim().slice(0, 200) : null;
}

function runMutant(m, quick, tests) {
  const path = join(root, m.file);
  const text = readFileSync(path, 'utf8');
  copyFileSync(path, path + kSuffix);
  active = path;
  try {
    writeFileSync(path, text.replace(m.find, () => m.replace));
    const b = run(tsc, ['-p', 'tsconfig.json']);
    if (b.code !== 0) return { status: 'compile-error', detail: b.out.split('\n').slice(0, 3).join(' '), ms: b.ms };
    const subset = tests ?? (quick && Array.isArray(m.tests) && m.tests.length > 0 ? m.tests : []);
    const t = run(vitest, ['run', '--bail=1', ...subset]);
    return { status: t.code === 0 ? 'survived' : 'killed', by: t.code === 0 ? null : firstFailure(t.out), tests: subset.length ? subset : 'full suite', ms: b.ms + t.ms };
  } finally {
    restore();
  }
}

function main() {
  const o = parseArgs(process.argv.slice(2));
  restoreLeftovers();
  const all = JSON.parse(readFileSync(join(root, 'test', 'mutation', 'mutants.json'), 'utf8'));
  const ids = new Set();
  for (const m of all) {
    checkMutant(m);
    if (ids.has(m.id)) throw new Error(`duplicate mutant id ${m.id}`);
    ids.add(m.id);
  }
  if (o.only) for (const id of o.only) if (!ids.has(id)) throw new Error(`--only: no mutant '${id}'`);
  const chosen = all.filter((m) => o.only === null || o.only.has(m.id));
  if (o.list) {
    for (const m of chosen) console.log(`${m.id.padEnd(32)} ${m.file}${m.equivalent ? '  (equivalent)' : ''}`);
    console.log(`${chosen.length} mutants, every snippet found exactly once`);
    return;
  }
  // The unmutated tree must build and pass, or every mutant would look killed.
  const base = run(tsc, ['-p', 'tsconfig.json']);
  if (base.code !== 0) throw new Error(`the unmutated tree does not build:\n${base.out}`);
  if (!o.noBaseline) {
    const t = run(vitest, ['run']);
    if (t.code !== 0) throw new Error(`the unmutated suite fails (${firstFailure(t.out) ?? 'see vitest'}); every mutant would look killed`);
    console.log(`unmutated suite green (${(t.ms / 1000).toFixed(1)} s)`);
  }
  const results = [];
  for (const m of chosen) {
    if (m.equivalent) {
      results.push({ id: m.id, file: m.file, rule: m.rule, status: 'equivalent', why: m.equivalent });
      console.log(`${m.id.padEnd(32)} equivalent (${m.equivalent})`);
      continue;
    }
    const r = runMutant(m, o.quick, o.tests);
    results.push({ id: m.id, file: m.file, rule: m.rule, ...r });
    console.log(`${m.id.padEnd(32)} ${r.status.padEnd(13)} ${(r.ms / 1000).toFixed(1).padStart(5)} s  ${r.by ?? r.detail ?? ''}`);
  }
  // Rebuild dist/ from the restored source so nothing mutated is left behind.
  run(tsc, ['-p', 'tsconfig.json']);
  const scored = results.filter((r) => r.status === 'killed' || r.status === 'survived');
  const killed = scored.filter((r) => r.status === 'killed').length;
  const summary = {
    date: new Date().toISOString(),
    mode: o.tests ? `subset ${o.tests.join(' ')}` : o.quick ? 'quick (per-mutant test subsets where given)' : 'full suite per mutant',
    mutants: results.length,
    scored: scored.length,
    killed,
    survived: scored.length - killed,
    equivalent: results.filter((r) => r.status === 'equivalent').length,
    compileErrors: results.filter((r) => r.status === 'compile-error').length,
    score: scored.length ? Math.round((killed / scored.length) * 1000) / 10 : null,
    survivors: scored.filter((r) => r.status === 'survived').map((r) => r.id),
    results,
  };
  writeFileSync(o.json, JSON.stringify(summary, null, 2) + '\n');
  console.log(`\nscore ${summary.score} % (${killed}/${scored.length} killed; ${summary.equivalent} equivalent, ${summary.compileErrors} compile errors excluded) -> ${relative(root, o.json)}`);
  if (summary.survivors.length) console.log(`survivors: ${summary.survivors.join(', ')}`);
}

try {
  main();
} catch (e) {
  restore();
  console.error(`mutate: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(2);
}
