/**
 * Which harness produced a result and what its modeled clock means: the package version, the
 * git commit of the checkout it ran from (a report without it cannot be reproduced), and the
 * cost model's name, content version and assumption.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { costModelVersion, kModeledAssumption, loadCostModel } from '../metrics/cost-model.js';
import type { HarnessInfo, ModelInfo } from '../scenario/result.js';

/** The package root: package.json is above src/cli (tests) or dist/src/cli (the CLI). */
export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json')) && dirname(dir) !== dir) dir = dirname(dir);
  return dir;
}

export function version(): string {
  return (JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as { version: string }).version;
}

function git(args: string[]): string | null {
  try {
    return execFileSync('git', args, { cwd: packageRoot(), encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 5000 }).trim();
  } catch {
    return null; // not a checkout, or no git
  }
}

/** What the run's code is built from (dist/ is compiled from src/). */
const kCodePaths = ['src', 'workers', 'bin', 'benchmarks', 'package.json', 'package-lock.json', 'tsconfig.json'];

let cached: HarnessInfo | null = null;

/**
 * $MMUH_GIT_COMMIT wins (an installed package has no .git; a CI job knows its commit), else
 * `git rev-parse HEAD` in the package root; null when neither answers.
 */
export function harnessInfo(): HarnessInfo {
  if (cached) return cached;
  const env = process.env.MMUH_GIT_COMMIT;
  let commit: string | null = env && /^[0-9a-f]{7,40}$/i.test(env) ? env.toLowerCase() : null;
  let dirty: boolean | null = null;
  if (commit === null) {
    const head = git(['rev-parse', 'HEAD']);
    commit = head && /^[0-9a-f]{40}$/.test(head) ? head : null;
    if (commit !== null) {
      // Changes to the harness's own code, not to results or reports written into the checkout.
      const status = git(['status', '--porcelain', '--untracked-files=no', '--', ...kCodePaths]);
      dirty = status === null ? null : status.length > 0;
    }
  }
  cached = { name: 'kvm-mmu-harness', version: version(), commit, dirty };
  return cached;
}

export function modelInfo(costModel: string): ModelInfo {
  const m = loadCostModel(costModel);
  return { costModel: { name: m.name, version: costModelVersion(m), description: m.description }, assumption: kModeledAssumption };
}
