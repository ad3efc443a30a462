// Live progress from the CLI: a piped run (with --watch) prints not one escape or carriage
// return, only the selftest lines and the view; on a pseudo-terminal (util-linux script(1),
// skipped where it is absent) the progress line and the --watch table are drawn with escape
// codes, NO_COLOR drops the colour but not the redraw, and -q draws nothing.
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { kBin, mmuh, oneLine } from './fixtures/mmuh.js';

const kRun = ['run', 'demand-paging', '-b', '32M', '-v', '2', '--workers', '2'];

/** Run mmuh on a pty of 120 columns: what the terminal received, or null without script(1). */
function onTty(args: string[], env: Record<string, string> = {}): string | null {
  const probe = spawnSync('script', ['--version'], { encoding: 'utf8' });
  if (probe.error) return null;
  const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  const cmd = `stty cols 120 rows 40; ${[process.execPath, kBin, ...args].map(quote).join(' ')}`;
  const r = spawnSync('script', ['-qec', cmd, '/dev/null'], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, TERM: 'xterm', ...env } });
  expect(r.status, r.stderr).toBe(0);
  return r.stdout;
}

describe('live progress', () => {
  it('a piped run prints no progress bytes, --watch included', () => {
    const r = mmuh([...kRun, '--watch', '--watch-delay', '0.1']);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/^Overall demand paging rate:/m);
    expect(r.out).not.toContain('\x1b');
    expect(r.out).not.toContain('\r');
    expect(r.out).not.toMatch(/pages\/s {2}|kvm statistics/);
  });

  it('on a terminal: the progress line and the kvm_stat table, erased in place, selftest lines kept', (ctx) => {
    const out = onTty([...kRun, '--watch', '--watch-delay', '0.1']);
    if (out === null) return ctx.skip('script(1) (util-linux) is not installed: no pseudo-terminal to run on');
    expect(out).toMatch(/demand-paging\x1b\[0m \[/);
    expect(out).toMatch(/\d+%  [\d.]+k? pages\/s  [\d.]+k? faults\/s/);
    expect(out).toContain('\r\x1b[2K');
    expect(out).toMatch(/\x1b\[1m(kvm statistics - summary|demand-paging)/);
    expect(out).toMatch(/Overall demand paging rate:/);
  });

  it('NO_COLOR: redrawn in place without colour; -q: nothing drawn', (ctx) => {
    const plain = onTty(kRun, { NO_COLOR: '1' });
    if (plain === null) return ctx.skip('script(1) (util-linux) is not installed: no pseudo-terminal to run on');
    expect(plain).toContain('\r\x1b[2K');
    expect(plain).toMatch(/demand-paging \[#*-*\]/);
    expect(plain).not.toMatch(/\x1b\[[0-9;]*m/);
    const quiet = onTty([...kRun, '-q']);
    expect(quiet).not.toContain('\x1b[2K');
    expect(quiet).not.toContain('pages/s  ');
  });

  it('--watch-delay without --watch is refused (exit 2)', () => {
    const r = mmuh([...kRun, '--watch-delay', '1']);
    expect(r.code).toBe(2);
    expect(oneLine(r)).toMatch(/--watch-delay has no effect without --watch/);
  });
});
