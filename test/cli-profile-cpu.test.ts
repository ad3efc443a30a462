// `mmuh run … --profile cpu`: a small real run writes one .cpuprofile per thread, and the result
// carries a top self-time table per thread — the main thread and a worker that ran the vCPUs —
// whose self times add up to no more than the profile's duration; the terminal view shows them.
import { afterAll, describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RunResult } from '../src/scenario/result.js';
import { mmuh, oneLine } from './fixtures/mmuh.js';

const dir = mkdtempSync(join(tmpdir(), 'mmuh-profile-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('--profile cpu', () => {
  it('main + worker profiles, each with a non-empty top table within its duration', () => {
    const json = join(dir, 'r.json');
    const r = mmuh(['run', 'demand-paging', '-b', '16M', '--workers', '1', '--profile', 'cpu', '--profile-top', '8', '--json', json]);
    expect(r.code, r.err).toBe(0);
    const result = JSON.parse(readFileSync(json, 'utf8')) as RunResult;
    expect(result.status).toBe('ok');
    // Default directory: profiles/ next to --json.
    const profDir = join(dir, 'profiles');
    const files = readdirSync(profDir).filter((f) => f.endsWith('.cpuprofile'));
    const profiles = result.profiles!;
    expect(profiles.length).toBeGreaterThanOrEqual(2);
    expect(profiles.length).toBe(files.length);
    expect(profiles[0]!.thread).toBe('main');
    expect(profiles.slice(1).every((p) => /^worker \d+$/.test(p.thread))).toBe(true);
    for (const p of profiles) {
      expect(existsSync(p.file), p.file).toBe(true);
      expect(p.top.length).toBeGreaterThan(0);
      expect(p.top.length).toBeLessThanOrEqual(8);
      const prof = JSON.parse(readFileSync(p.file, 'utf8')) as { startTime: number; endTime: number; nodes: { callFrame: { functionName: string } }[] };
      const durationMs = (prof.endTime - prof.startTime) / 1000;
      expect(p.top.reduce((s, t) => s + t.selfMs, 0)).toBeLessThanOrEqual(durationMs);
      expect(p.top.every((t, i) => i === 0 || t.selfMs <= p.top[i - 1]!.selfMs)).toBe(true);
      expect(p.top.every((t) => t.pct >= 0 && t.pct <= 100 && Number.isInteger(t.line) && typeof t.fn === 'string')).toBe(true);
    }
    // The worker profile is the thread that ran the vCPUs: the phase task is in its call tree.
    const worker = JSON.parse(readFileSync(profiles[1]!.file, 'utf8')) as { nodes: { callFrame: { functionName: string } }[] };
    expect(worker.nodes.some((n) => n.callFrame.functionName === 'runPhaseTask')).toBe(true);
    // The view (printed by the parent, after the child's selftest lines) has a table per thread.
    expect(r.out).toMatch(/^Overall demand paging rate:/m);
    expect(r.out).toMatch(/^profile main: .*\.cpuprofile$/m);
    expect(r.out).toMatch(/^profile worker \d+: .*\.cpuprofile$/m);
    expect(r.out.indexOf('Overall demand paging rate')).toBeLessThan(r.out.indexOf('profile main'));
  });

  it('--profile-dir and --profile-top without --profile are refused (exit 2)', () => {
    for (const args of [['--profile-dir', dir], ['--profile-top', '3']]) {
      const r = mmuh(['run', 'demand-paging', '-b', '16M', ...args]);
      expect(r.code).toBe(2);
      expect(oneLine(r)).toMatch(/has no effect without --profile cpu/);
    }
  });
});
