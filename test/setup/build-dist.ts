/**
 * vitest global setup: compile src/ to dist/ before any test runs, so neither `npm test` nor a
 * bare `npx vitest run` can test a stale dist/ (concurrency tests start workers from dist/, and
 * the fixtures import the model from there). tsc is incremental (its build info lives in dist/),
 * so an up-to-date tree costs about a second.
 */
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export default function setup(): void {
  const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  try {
    execFileSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.json')], { cwd: root, stdio: 'pipe' });
  } catch (e) {
    const out = (e as { stdout?: Buffer }).stdout?.toString() ?? String(e);
    throw new Error(`tsc failed; tests would run a stale dist/:\n${out}`);
  }
}
