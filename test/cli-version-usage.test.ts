// §3.8 CLI conventions: --version from package.json, usage errors on stderr (stdout empty),
// --help lists the flags.
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { mmuh, oneLine } from './fixtures/mmuh.js';

describe('mmuh conventions', () => {
  it('--version prints package.json\'s version', () => {
    const v = (JSON.parse(readFileSync(join(__dirname, '..', 'package.json'), 'utf8')) as { version: string }).version;
    const r = mmuh(['--version']);
    expect(r.code).toBe(0);
    expect(r.out.trim()).toBe(`mmuh (kvm-mmu-harness) ${v}`);
  });
  it('no command: usage on stderr, exit 2; --help: usage on stdout, exit 0', () => {
    const r = mmuh([]);
    expect(r.code).toBe(2);
    expect(r.out).toBe('');
    expect(r.err).toMatch(/^usage: mmuh/);
    const h = mmuh(['--help']);
    expect(h.code).toBe(0);
    expect(h.out).toMatch(/--version/);
  });
  it('`run` without a scenario and a bad flag: one line on stderr, nothing on stdout', () => {
    for (const args of [['run'], ['run', 'dirty-log-perf', '-k'], ['nope']]) {
      const r = mmuh(args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.out).toBe('');
      oneLine(r);
    }
  });
  it('run <scenario> --help lists every visible flag', () => {
    const h = mmuh(['run', 'dirty-log-perf', '--help']).out;
    for (const f of ['-v, --vcpus', '-b, --bytes', '-s, --backing', '-a, --random', '-r, --seed', '-g, --no-manual-caps', '--ring-entries', '--json']) expect(h).toContain(f);
  });
});
