/**
 * mmuh: `mmuh run <scenario> [flags]`, `mmuh report RESULT.json… -o NAME.html`,
 * `mmuh compare A.json B.json…`, `mmuh list`, `mmuh stats FILE|-`, `--help` everywhere, `--version`.
 * Exit codes: 0 success; 1 the run failed (a KVM error out of a vCPU, the audit found a
 * violation, a check failed); 2 bad usage (unknown flag, bad size, conflicting flags, a run
 * that will not fit in memory, an unwritable --json path, a bad cost model); 4 kselftest's
 * KSFT_SKIP (the upstream test would skip). Usage errors are one line on stderr.
 */
import { findScenario, kScenarios } from '../scenario/index.js';
import { UsageError, flagHelp, givenFlags, parseFlags } from '../scenario/flags.js';
import { consoleIo, KSFT_SKIP, SkipError, type ScenarioDef, type ScenarioIo } from '../scenario/scenario.js';
import { kResultSchema, type FailedRunResult, type RunError, type RunResult } from '../scenario/result.js';
import { KvmError } from '../host/errno.js';
import { loadCostModel } from '../metrics/cost-model.js';
import { renderText } from '../report/text.js';
import { withRepeats } from '../report/repeat-aggregate.js';
import { createLiveView } from '../report/progress.js';
import { checkJsonPath, writeJsonAtomic } from '../report/json-out.js';
import { stdoutWriter } from './stdout.js';
import { statsCommand } from './stats.js';
import { checkProfileDir, kProfileResultEnv, profileDir, runUnderCpuProf } from './profile.js';
import { harnessInfo, modelInfo, version } from './build-info.js';

const kUsage = `usage: mmuh <command> [args]

commands:
  run <scenario> [flags]   run a scenario (mmuh run <scenario> --help for its flags;
                           --repeat N runs it N times and keeps every run)
  report RESULT.json… -o NAME.html [--label A,B…]
                           one self-contained HTML report (charts, comparison, environment),
                           NAME.md beside it and NAME.<label>.<histogram>.hgrm per histogram;
                           report SWEEP.json -o NAME.html: a sweep's matrix report
  compare A.json B.json… [--markdown] [--label A,B…]
                           every phase and histogram percentile against A: relative change,
                           Welch's t-test over repeats (Holm-corrected), p-value
  sweep SWEEP.yaml [--queue URL | --shard i/n]
                           a scenario over the cross product of flag axes, run locally,
                           on a BullMQ queue (Redis) or as batch shards; one merged result
  worker --queue URL       take sweep runs from the queue and run them
  merge DIR [-o FILE]      merge a sweep directory (shards' results) into one sweep result
  list                     list the scenarios
  stats [--json] FILE|-    print a KVM binary stats buffer (KVM_GET_STATS_FD bytes) as kvm_stat -1 does
  help, --help, -h         this text
  --version                the harness version

Results: --json FILE writes the result (schema ${kResultSchema}).
Exit codes: 0 ok, 1 the run failed, 2 bad usage or bad input files, 4 skipped (KSFT_SKIP).`;

function die(code: number, msg: string): number {
  process.stderr.write(`mmuh: ${msg}\n`);
  return code;
}

/**
 * A sweep's child run (sweep/cell-run.ts) exits when its stdin closes: the executor that started
 * it died, and a run nobody will collect must not hold the machine (as a killed queue worker's
 * cell would, while another worker retries it).
 */
function exitWithParent(): void {
  if (process.env.MMUH_EXIT_ON_STDIN_EOF !== '1') return;
  delete process.env.MMUH_EXIT_ON_STDIN_EOF;
  const quit = () => process.exit(137);
  process.stdin.on('end', quit);
  process.stdin.on('close', quit);
  process.stdin.on('error', quit);
  process.stdin.resume();
  // The watch alone must not keep a finished run alive.
  (process.stdin as unknown as { unref?: () => void }).unref?.();
}

export async function main(argv: string[]): Promise<number> {
  exitWithParent();
  const out = stdoutWriter();
  const [cmd, ...rest] = argv;
  if (cmd === undefined) {
    process.stderr.write(kUsage + '\n');
    return 2;
  }
  if (cmd === 'help' || cmd === '--help' || cmd === '-h') {
    out.write(kUsage + '\n');
    return 0;
  }
  if (cmd === '--version' || cmd === '-V') {
    out.write(`mmuh (kvm-mmu-harness) ${version()}\n`);
    return 0;
  }
  if (cmd === 'list') {
    for (const s of kScenarios) out.write(`${s.name.padEnd(28)} ${s.summary}  (after ${s.after})\n`);
    return 0;
  }
  if (cmd === 'report' || cmd === 'compare') {
    // Loaded on demand: `mmuh run` need not carry the report's modules (startup, and the RSS the
    // host-sizing estimate counts per process).
    const c = cmd === 'report'
      ? await import('./report.js').then((m) => ({ usage: m.kReportUsage, run: m.reportCommand }))
      : await import('./compare.js').then((m) => ({ usage: m.kCompareUsage, run: m.compareCommand }));
    if (rest.includes('--help') || rest.includes('-h')) {
      out.write(c.usage + '\n');
      return 0;
    }
    try {
      return c.run(rest, out);
    } catch (e) {
      if (e instanceof UsageError) return die(2, e.message);
      throw e;
    }
  }
  if (cmd === 'sweep' || cmd === 'worker' || cmd === 'merge') {
    // Loaded on demand, as report: BullMQ and the YAML parser are not a run's business.
    const m = await import('./sweep.js');
    const c = { sweep: { usage: m.kSweepUsage, run: m.sweepCommand }, worker: { usage: m.kWorkerUsage, run: m.workerCommand }, merge: { usage: m.kMergeUsage, run: m.mergeCommand } }[cmd];
    if (rest.includes('--help') || rest.includes('-h')) {
      out.write(c.usage + '\n');
      return 0;
    }
    try {
      return await c.run(rest, out);
    } catch (e) {
      if (e instanceof UsageError) return die(2, e.message);
      throw e;
    }
  }
  if (cmd === 'stats') return statsCommand(rest, (s) => out.write(s));
  if (cmd !== 'run') return die(2, `unknown command '${cmd}' (try mmuh --help)`);
  const [name, ...flags] = rest;
  if (name === undefined) return die(2, `usage: mmuh run <scenario> [flags]; scenarios: ${kScenarios.map((s) => s.name).join(', ')}`);
  if (name === '--help' || name === '-h') {
    out.write(`usage: mmuh run <scenario> [flags]\nscenarios: ${kScenarios.map((s) => s.name).join(', ')}\n`);
    return 0;
  }
  const scenario = findScenario(name);
  if (!scenario) return die(2, `unknown scenario '${name}' (mmuh list shows them)`);
  if (flags.includes('--help') || flags.includes('-h')) {
    out.write(`usage: mmuh run ${scenario.name} [flags]\n${scenario.summary}\nafter KVM's ${scenario.after}\n\n${flagHelp(scenario.flags)}\n`);
    return 0;
  }
  let parsed: Record<string, unknown>;
  let notes: string[];
  try {
    parsed = parseFlags(scenario.flags, flags);
    notes = prepare(scenario, parsed);
  } catch (e) {
    if (e instanceof UsageError) return die(2, e.message);
    throw e;
  }
  // A --profile parent leaves the notes to the child, which checks the same flags again.
  if (parsed.profile === 'cpu' && process.env[kProfileResultEnv] === undefined) return runProfiled(scenario, flags, parsed, out);
  for (const n of notes) process.stderr.write(`mmuh: note: ${n}\n`);
  return runScenario(scenario, parsed, notes, out);
}

/**
 * --profile cpu: the run happens in a child under --cpu-prof (profile.ts), which prints the
 * selftest lines and its errors itself; this process prints the view with the profiles and
 * writes --json.
 */
function runProfiled(scenario: ScenarioDef, argv: string[], parsed: Record<string, unknown>, out: { write(s: string): void }): number {
  const { code, result } = runUnderCpuProf({ scenario: scenario.name, argv, dir: profileDir(parsed), top: parsed['profile-top'] as number });
  if (result === null) return code;
  // As runScenario: a completed result (ok, or failed at a check/audit) gets the view.
  if (parsed.quiet !== true && 'phases' in result) out.write(renderText(result) + '\n');
  const werr = typeof parsed.json === 'string' ? writeResult(parsed.json, result) : null;
  return werr ? die(1, werr) : code;
}

/** Everything checked before the run allocates: conflicts, the cost model, the --json path. */
function prepare(scenario: ScenarioDef, parsed: Record<string, unknown>): string[] {
  const notes = scenario.check?.(parsed) ?? [];
  if (typeof parsed['cost-model'] === 'string') {
    try {
      loadCostModel(parsed['cost-model']);
    } catch (e) {
      if (e instanceof KvmError) throw new UsageError(`--cost-model: ${e.message}`);
      throw e;
    }
  }
  if (typeof parsed.json === 'string') checkJsonPath(parsed.json);
  const given = givenFlags(parsed);
  for (const f of ['profile-dir', 'profile-top']) if (given.has(f) && parsed.profile !== 'cpu') throw new UsageError(`--${f} has no effect without --profile cpu`);
  if (given.has('watch-delay') && parsed.watch !== true) throw new UsageError('--watch-delay has no effect without --watch');
  if (parsed.profile === 'cpu') checkProfileDir(profileDir(parsed));
  return notes;
}

async function runScenario(scenario: ScenarioDef, parsed: Record<string, unknown>, notes: string[], out: { write(s: string): void }): Promise<number> {
  // The child of a --profile run writes its result where the parent reads it, and no view.
  const profileChild = process.env[kProfileResultEnv] ?? null;
  delete process.env[kProfileResultEnv];
  const quiet = parsed.quiet === true || profileChild !== null;
  const json = profileChild ?? (typeof parsed.json === 'string' ? parsed.json : null);
  const repeat = typeof parsed.repeat === 'number' ? parsed.repeat : 1;
  const runs: RunResult[] = [];
  // Each repeat is a whole scenario run: a new host, new VMs and a new worker pool (fresh state),
  // the same flags and seed. The first failure ends the series and is what the file records.
  for (let k = 1; k <= repeat; k++) {
    const r = await runOnce(scenario, parsed, notes, out, json, k, repeat);
    if (typeof r === 'number') return r;
    if (r.status === 'failed') return finish(r, quiet, json, out);
    runs.push(r);
  }
  return finish(withRepeats(runs), quiet, json, out);
}

/**
 * One run with its live view (on a terminal): the result (ok, or failed at a check or the audit),
 * or the exit code of a run that ended without one (skip, KVM error). Run k of n > 1 says so in
 * its error messages.
 */
async function runOnce(
  scenario: ScenarioDef, parsed: Record<string, unknown>, notes: string[], out: { write(s: string): void }, json: string | null, k: number, n: number,
): Promise<RunResult | number> {
  const which = n > 1 ? `run ${k} of ${n}` : null;
  // Live progress (and --watch) on a terminal only; selftest lines then scroll above it.
  const live = createLiveView(
    {
      isTTY: process.stdout.isTTY, write: (s) => out.write(s),
      // Read at every draw: the terminal may be resized during the run.
      get columns() { return process.stdout.columns; },
      get rows() { return process.stdout.rows; },
    },
    { quiet: parsed.quiet === true, watch: parsed.watch === true, watchDelay: parsed['watch-delay'] as number },
  );
  const io: ScenarioIo & { lines: string[] } = consoleIo(false, live ? (s) => live.print(s.slice(0, -1)) : (s) => out.write(s));
  if (live) io.observer = live;
  if (k > 1) {
    if (live) live.print(`# repeat ${k} of ${n}`);
    else out.write(`# repeat ${k} of ${n}\n`);
  }
  let result: RunResult;
  try {
    // The commit and tree state are taken before the run (harnessInfo() caches them): a long run
    // must name the code it started with, not whatever the checkout holds when it ends.
    harnessInfo();
    result = await scenario.run(parsed, io);
  } catch (e) {
    live?.close();
    if (e instanceof UsageError) return die(2, e.message);
    if (e instanceof SkipError) {
      // kselftest's ksft_exit_skip(): "1..0 # SKIP <reason>" on stdout, exit KSFT_SKIP.
      io.print(`1..0 # SKIP ${e.message}`);
      const werr = json ? writeResult(json, failedResult(scenario, parsed, io.lines, 'skipped', { errno: null, message: e.message })) : null;
      return werr ? die(1, werr) : KSFT_SKIP;
    }
    const err = runError(e);
    if (err === null) throw e;
    if (which !== null) err.message = `${which}: ${err.message}`;
    const werr = json ? writeResult(json, failedResult(scenario, parsed, io.lines, 'failed', err)) : null;
    if (werr) die(1, werr);
    return die(1, err.message);
  }
  live?.close();
  result.output = io.lines;
  result.host.notes.push(...notes);
  result.harness = harnessInfo();
  result.model = modelInfo(typeof parsed['cost-model'] === 'string' ? parsed['cost-model'] : 'default');
  const failure = resultFailure(result);
  if (failure) {
    result.status = 'failed';
    result.error = which !== null ? { ...failure, message: `${which}: ${failure.message}` } : failure;
  }
  return result;
}

/** Print the view, write the file, and exit as the result says. */
function finish(result: RunResult, quiet: boolean, json: string | null, out: { write(s: string): void }): number {
  if (!quiet) out.write(renderText(result) + '\n');
  const werr = json ? writeResult(json, result) : null;
  if (werr) return die(1, werr);
  return result.status === 'failed' && result.error ? die(1, result.error.message) : 0;
}

/** Write the result; a failure here (the directory vanished mid-run, a full disk) fails the run. */
function writeResult(json: string, value: unknown): string | null {
  try {
    writeJsonAtomic(json, value);
    return null;
  } catch (e) {
    if (e instanceof UsageError) return e.message;
    throw e;
  }
}

function resultFailure(r: RunResult): RunError | null {
  if (typeof r.metrics.checksFailed === 'number' && r.metrics.checksFailed > 0) return { errno: null, message: `${r.metrics.checksFailed} check(s) failed` };
  if (!r.audit.ok) {
    const v = r.audit.violations[0]!;
    return { errno: null, message: `audit failed: ${r.audit.violations.length} violation(s), first: ${v.kind}: ${v.detail}` };
  }
  return null;
}

/** A KVM error, in this thread or re-thrown from a worker (structured clone keeps the message). */
function runError(e: unknown): RunError | null {
  if (e instanceof KvmError) return { errno: e.errno, message: e.message };
  const err = e as Error;
  const m = err && typeof err.message === 'string' ? /^(E[A-Z0-9]+): /.exec(err.message) : null;
  return m ? { errno: m[1]!, message: err.message } : null;
}

function failedResult(scenario: ScenarioDef, parsed: Record<string, unknown>, output: string[], status: 'failed' | 'skipped', error: RunError): FailedRunResult {
  return {
    schema: kResultSchema, status, error, scenario: scenario.name, config: { ...parsed },
    seed: typeof parsed.seed === 'number' ? parsed.seed : 0, output,
  };
}
