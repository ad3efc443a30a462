/**
 * `npm run profile:clinic -- [flame|doctor] <mmuh args>`: run mmuh under clinic (flame by
 * default, or doctor) when clinic is installed; it is an optional extra, not a dependency, so
 * without it this prints how to install it and exits 2. Flame is the default because doctor's
 * analysis fails on a mmuh run here ("Decoded message is not valid", clinic 13.0.0 on Node
 * 20.20, while it works on a single-threaded script): clinic's worker_threads issues
 * (clinicjs/node-clinic#213, #414) are open and the project is no longer maintained.
 *
 * clinic samples the main thread only: the vCPUs run on worker threads, which it does not see
 * (clinic flame finds none of their frames; doctor reads the main thread's event loop). For
 * the workers use `mmuh run … --profile cpu` (one profile per thread).
 */
import { spawnSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const kRoot = fileURLToPath(new URL('../../../', import.meta.url));
const kBin = join(kRoot, 'bin', 'mmuh.js');
const kTools = ['flame', 'doctor'] as const;

export const kClinicHint =
  'clinic is not installed (an optional extra, not a dependency of the harness): npm install --no-save clinic@13 (or npm install -g clinic), then run this again';
export const kWorkerNote = 'clinic sees only the main thread; the vCPUs run on worker threads: profile them with mmuh run … --profile cpu';

/** node_modules/.bin/clinic of the package, else the first clinic on PATH. */
export function findClinic(env: NodeJS.ProcessEnv = process.env): string | null {
  const dirs = [join(kRoot, 'node_modules', '.bin'), ...(env.PATH ?? '').split(delimiter).filter((d) => d !== '')];
  for (const d of dirs) {
    try {
      accessSync(join(d, 'clinic'), constants.X_OK);
      return join(d, 'clinic');
    } catch {
      // not here
    }
  }
  return null;
}

export function clinicMain(argv: string[]): number {
  const tool = (kTools as readonly string[]).includes(argv[0] ?? '') ? argv[0]! : 'flame';
  const args = tool === argv[0] ? argv.slice(1) : argv;
  if (args.length === 0) {
    process.stderr.write(`mmuh: usage: npm run profile:clinic -- [${kTools.join('|')}] run <scenario> [flags]\n`);
    return 2;
  }
  const clinic = findClinic();
  if (clinic === null) {
    process.stderr.write(`mmuh: ENOENT: ${kClinicHint}\n`);
    return 2;
  }
  process.stderr.write(`mmuh: note: ${kWorkerNote}\n`);
  const r = spawnSync(clinic, [tool, '--no-open', '--', process.execPath, kBin, ...args], {
    stdio: 'inherit', env: { ...process.env, NO_INSIGHT: '1' },
  });
  if (r.error) {
    process.stderr.write(`mmuh: ${clinic}: ${r.error.message}\n`);
    return 2;
  }
  return r.status ?? 1;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) process.exitCode = clinicMain(process.argv.slice(2));
