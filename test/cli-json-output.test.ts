// §3.2: --json is checked before the run, written atomically (temp file + rename), and a failed
// run writes status 'failed' with the error, so a previous run's file never passes for this one's.
import { describe, expect, it } from 'vitest';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mmuh, oneLine } from './fixtures/mmuh.js';

describe('--json', () => {
  it('refuses a missing directory, a path under a file, and a directory: one line, exit 2, before running', () => {
    const dir = mkdtempSync(join(tmpdir(), 'mmuh-json-'));
    writeFileSync(join(dir, 'afile'), '');
    for (const [path, re] of [[join(dir, 'nope', 'r.json'), /does not exist/], [join(dir, 'afile', 'r.json'), /is not a directory/], [dir, /is a directory/]] as const) {
      const r = mmuh(['run', 'demand-paging', '-b', '4M', '--json', path]);
      expect(r.code, path).toBe(2);
      expect(oneLine(r)).toMatch(re);
      expect(r.out).toBe(''); // nothing ran
    }
  });
  it('a successful run writes status ok; no temp file is left beside it', () => {
    const dir = mkdtempSync(join(tmpdir(), 'mmuh-json-'));
    const r = mmuh(['run', 'demand-paging', '-b', '4M', '--workers', '1', '-q', '--json', join(dir, 'r.json')]);
    expect(r.code, r.err).toBe(0);
    expect(JSON.parse(readFileSync(join(dir, 'r.json'), 'utf8')).status).toBe('ok');
    expect(readdirSync(dir)).toEqual(['r.json']);
  });
  it('an EFAULT out of a vCPU replaces a previous ok file with status failed and the error', () => {
    const dir = mkdtempSync(join(tmpdir(), 'mmuh-json-'));
    const file = join(dir, 'r.json');
    writeFileSync(file, JSON.stringify({ schema: 'kvm-mmu-harness/result@1', status: 'ok' }));
    const r = mmuh(['run', 'demand-paging', '-b', '256M', '--host-memory', '64M', '--workers', '1', '-q', '--json', file]);
    expect(r.code).toBe(1);
    const j = JSON.parse(readFileSync(file, 'utf8'));
    expect(j.status).toBe('failed');
    expect(j.error.errno).toBe('EFAULT');
    expect(j.error.message).toMatch(/KVM_RUN: host out of memory/);
    expect(j.scenario).toBe('demand-paging');
    expect(readdirSync(dir)).toEqual(['r.json']);
  });
  it('a failed check writes the whole result with status failed', () => {
    const dir = mkdtempSync(join(tmpdir(), 'mmuh-json-'));
    const file = join(dir, 'r.json');
    const r = mmuh(['run', 'dirty-log-page-splitting', '-b', '64M', '--split', 'eager-enable', '--workers', '1', '-q', '--json', file]);
    expect(r.code).toBe(1);
    const j = JSON.parse(readFileSync(file, 'utf8'));
    expect(j.status).toBe('failed');
    expect(j.error).toEqual({ errno: null, message: '1 check(s) failed' });
    expect(j.phases.length).toBeGreaterThan(0);
  });
});
