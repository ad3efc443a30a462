// `npm run profile:clinic -- …` (dist/src/cli/clinic.js): without clinic it prints how to
// install it and exits 2; with one on PATH (a stand-in script that records its arguments) it
// runs `clinic flame|doctor --no-open -- node bin/mmuh.js <args>` (flame by default) and says clinic sees only
// the main thread.
import { afterAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { kBin } from './fixtures/mmuh.js';

const kClinicJs = join(__dirname, '..', 'dist', 'src', 'cli', 'clinic.js');
const dir = mkdtempSync(join(tmpdir(), 'mmuh-clinic-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function run(args: string[], path: string) {
  return spawnSync(process.execPath, [kClinicJs, ...args], { encoding: 'utf8', env: { ...process.env, PATH: path } });
}

describe('profile:clinic', () => {
  it('clinic absent: one line with the install hint, exit 2', (ctx) => {
    if (existsSync(join(__dirname, '..', 'node_modules', '.bin', 'clinic'))) return ctx.skip('clinic is installed in node_modules here');
    const r = run(['run', 'demand-paging'], dirname(process.execPath));
    expect(r.status).toBe(2);
    expect(r.stderr.trim().split('\n')).toEqual([expect.stringMatching(/^mmuh: ENOENT: clinic is not installed .* npm install --no-save clinic@13/)]);
  });

  it('clinic on PATH: doctor, or flame by default, on `node bin/mmuh.js <args>`, with the worker-thread note', () => {
    const log = join(dir, 'args');
    const fake = join(dir, 'clinic');
    writeFileSync(fake, `#!/bin/sh\nprintf '%s\\n' "$@" > '${log}'\nexit 3\n`);
    chmodSync(fake, 0o755);
    const path = `${dir}:${dirname(process.execPath)}:/usr/bin:/bin`;
    for (const [args, tool] of [[['doctor', 'run', 'demand-paging', '-b', '64M'], 'doctor'], [['run', 'demand-paging', '-b', '64M'], 'flame']] as const) {
      const r = run([...args], path);
      expect(r.status).toBe(3);
      expect(r.stderr).toMatch(/clinic sees only the main thread; .* --profile cpu/);
      expect(readFileSync(log, 'utf8').trim().split('\n')).toEqual([tool, '--no-open', '--', process.execPath, kBin, 'run', 'demand-paging', '-b', '64M']);
    }
  });

  it('no mmuh arguments: usage, exit 2', () => {
    const r = run(['flame'], dirname(process.execPath));
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/usage: npm run profile:clinic -- \[flame\|doctor\] run <scenario>/);
  });
});
