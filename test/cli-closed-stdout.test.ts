// §3.3: `mmuh … | head -1` closes stdout early. The run ends quietly: no EPIPE stack trace, the
// exit code is the run's own (0 here, not 141), and the --json result is still written.
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { kBin } from './fixtures/mmuh.js';

describe('closed stdout', () => {
  it('| head -1: exit 0 under pipefail, nothing on stderr, JSON written', () => {
    const dir = mkdtempSync(join(tmpdir(), 'mmuh-pipe-'));
    const file = join(dir, 'r.json');
    const cmd = `set -o pipefail; '${process.execPath}' '${kBin}' run demand-paging -b 64M -v 2 --workers 1 --json '${file}' | head -1`;
    const r = spawnSync('bash', ['-c', cmd], { encoding: 'utf8', timeout: 120_000 });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout.trim().split('\n')).toHaveLength(1);
    expect(JSON.parse(readFileSync(file, 'utf8')).status).toBe('ok');
  });
});
