/**
 * `mmuh run … --profile cpu`: the run is executed again in a child process under
 * `node --cpu-prof --cpu-prof-dir=DIR`, which writes one .cpuprofile per thread — the main
 * thread and every worker thread of every pool — when each exits. The child writes its result
 * to a file this process names (kProfileResultEnv) instead of printing its view; this process
 * reads the child's profiles, adds a top-N self-time table per thread to the result
 * (`result.profiles`), prints the view and writes --json.
 *
 * Why a child under --cpu-prof and not node:inspector Profiler sessions in each thread: the
 * flag is the same on Node 20 and 24 and covers every thread from its first instruction without
 * touching the worker runtime, whereas a Session per worker needs a stop message to reach each
 * piscina worker (the pool gives no placement guarantee, and between tasks its workers sleep
 * in Atomics.wait with their event loops frozen) and misses threads the run starts and ends on
 * its own (a warm-up pool, a second pass's pool).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { constants, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { checkCpuProfile, topSelfTime } from '../metrics/cpu-profile.js';
import type { RunResult } from '../scenario/result.js';
import { UsageError } from '../scenario/flags.js';

/** Set in the child: where it writes its result (and that it prints no view). */
export const kProfileResultEnv = 'MMUH_PROFILE_RESULT';

const kBin = fileURLToPath(new URL('../../../bin/mmuh.js', import.meta.url));

/** --profile-dir, else `profiles/` next to the --json file, else ./profiles. */
export function profileDir(flags: Record<string, unknown>): string {
  if (typeof flags['profile-dir'] === 'string') return resolve(flags['profile-dir']);
  if (typeof flags.json === 'string') return join(dirname(resolve(flags.json)), 'profiles');
  return resolve('profiles');
}

/** Create the profile directory before anything runs (UsageError: exit 2). */
export function checkProfileDir(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true });
  } catch (e) {
    throw new UsageError(`--profile-dir ${dir}: ${(e as NodeJS.ErrnoException).code ?? 'EIO'}: cannot create it`);
  }
}

export interface ProfiledRun {
  scenario: string;
  /** The flags as given after the scenario name (the child parses them again). */
  argv: string[];
  dir: string;
  top: number;
}

/** Run the child; returns its exit code and, if it got to write one, its result. */
export function runUnderCpuProf(p: ProfiledRun): { code: number; result: RunResult | null } {
  const tmp = mkdtempSync(join(tmpdir(), 'mmuh-profile-'));
  const resultFile = join(tmp, 'result.json');
  try {
    const r = spawnSync(process.execPath, [...process.execArgv, '--cpu-prof', `--cpu-prof-dir=${p.dir}`, kBin, 'run', p.scenario, ...p.argv], {
      stdio: 'inherit', env: { ...process.env, [kProfileResultEnv]: resultFile },
    });
    if (r.error) throw r.error;
    // A child killed by a signal exits as a shell reports it: 128 + the signal's number.
    const code = r.status ?? 128 + (r.signal ? (constants.signals as Record<string, number>)[r.signal] ?? 0 : 0);
    if (!existsSync(resultFile)) return { code, result: null };
    const result = JSON.parse(readFileSync(resultFile, 'utf8')) as RunResult;
    result.profiles = threadProfiles(p.dir, r.pid, p.top);
    return { code, result };
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

/**
 * The .cpuprofile files process `pid` wrote (`CPU.<date>.<time>.<pid>.<tid>.<seq>.cpuprofile`,
 * Node's default name; tid 0 is the main thread), each with its top-N self-time table.
 */
export function threadProfiles(dir: string, pid: number, top: number): NonNullable<RunResult['profiles']> {
  const re = new RegExp(`^CPU\\.\\d+\\.\\d+\\.${pid}\\.(\\d+)\\.(\\d+)\\.cpuprofile$`);
  const files = readdirSync(dir)
    .map((f) => ({ f, m: re.exec(f) }))
    .filter((x): x is { f: string; m: RegExpExecArray } => x.m !== null)
    .map(({ f, m }) => ({ file: join(dir, f), tid: Number(m[1]), seq: Number(m[2]) }))
    .sort((a, b) => a.tid - b.tid || a.seq - b.seq);
  return files.map(({ file, tid }) => {
    const t = topSelfTime(checkCpuProfile(JSON.parse(readFileSync(file, 'utf8'))), top);
    return { thread: tid === 0 ? 'main' : `worker ${tid}`, file, top: t.rows.map((r) => ({ ...r, selfMs: floor3(r.selfMs), pct: floor3(r.pct) })) };
  });
}

/** To the µs, down, so the rows still add up to no more than the profile's duration. */
function floor3(x: number): number {
  return Math.floor(x * 1000) / 1000;
}
