// The shapes KVM's cover letters report, in modeled time (one worker: exact run to run):
//  - eager splitting moves cost from "Iteration 2 dirty memory" into the first CLEAR (manual
//    caps + INITIALLY_SET), or from "Iteration 1 dirty memory" into enable (-g);
//  - in-place recovery at disable needs far fewer TLB flushes than zap-collapsible.
import { describe, expect, it } from 'vitest';
import { findScenario, parseFlags, runDirtyLogPerf, quietIo } from './fixtures/dist.js';

const scenario = findScenario('dirty-log-perf')!;

async function perf(args: string[]) {
  const f = parseFlags(scenario.flags, ['-v', '2', '-b', '64M', '-s', 'anonymous_hugetlb_2mb', '-i', '3', '--workers', '1', ...args]);
  const lines: string[] = [];
  const r = await runDirtyLogPerf(f, { print: (l: string) => lines.push(l) });
  const modeled = Object.fromEntries(r.phases.map((p) => [p.name, p.modeledNs]));
  const flushes = (r as unknown as { tlbFlushes: Record<string, number> }).tlbFlushes;
  return { r, modeled, flushes, lines };
}

describe('dirty-log-perf shapes', () => {
  it('manual caps: eager split moves the cost from iteration 2 into the first clear', async () => {
    const eager = await perf([]);
    const lazy = await perf(['--split', 'on-fault']);
    expect(eager.r.audit.ok && lazy.r.audit.ok).toBe(true);
    expect(eager.modeled['clear-1']!).toBeGreaterThan(3 * lazy.modeled['clear-1']!);
    expect(lazy.modeled['iteration-2']!).toBeGreaterThan(5 * eager.modeled['iteration-2']!);
    // After the first clear everything is 4K with eager splitting.
    expect(eager.r.stats['clear-1']!.total.pages_2m).toBe(0);
    expect(eager.r.stats['clear-1']!.total.pages_4k).toBe(2 * 16384);
  });

  it('no manual caps (-g): eager split moves the cost from iteration 1 into enable', async () => {
    const eager = await perf(['-g']);
    const lazy = await perf(['-g', '--split', 'on-fault']);
    expect(eager.modeled.enable!).toBeGreaterThan(10 * lazy.modeled.enable!);
    expect(lazy.modeled['iteration-1']!).toBeGreaterThan(5 * eager.modeled['iteration-1']!);
    expect(eager.r.stats.enable!.total.pages_2m).toBe(0);
    expect(lazy.r.stats.enable!.total.pages_2m).toBe(64);
  });

  it('in-place recovery flushes far less than zap-collapsible, and both restore 2M mappings', async () => {
    const inPlace = await perf(['-g']);
    const zap = await perf(['-g', '--recover', 'zap-collapsible']);
    expect(inPlace.flushes.disable).toBe(1);
    expect(zap.flushes.disable).toBe(64); // one per 2M table
    expect(inPlace.r.stats.disable!.total.pages_2m).toBe(64);
    expect(zap.r.stats.disable!.total.pages_2m).toBe(0); // rebuilt by later faults
  });

  it('prints dirty_log_perf_test lines', async () => {
    const { lines } = await perf([]);
    const text = lines.join('\n');
    expect(text).toMatch(/^Test iterations: 3$/m);
    expect(text).toMatch(/^Populate memory time: \d+\.\d{9}s$/m);
    expect(text).toMatch(/^Enabling dirty logging time: \d+\.\d{9}s\n\n/m);
    for (const i of [1, 2, 3]) {
      expect(text).toMatch(new RegExp(`^Iteration ${i} dirty memory time: \\d+\\.\\d{9}s$`, 'm'));
      expect(text).toMatch(new RegExp(`^Iteration ${i} get dirty log time: \\d+\\.\\d{9}s$`, 'm'));
      expect(text).toMatch(new RegExp(`^Iteration ${i} clear dirty log time: \\d+\\.\\d{9}s$`, 'm'));
    }
    expect(text).toMatch(/^Disabling dirty logging time: \d+\.\d{9}s$/m);
    expect(text).toMatch(/^Get dirty log over 3 iterations took \d+\.\d{9}s\. \(Avg \d+\.\d{9}s\/iteration\)$/m);
    expect(text).toMatch(/^Clear dirty log over 3 iterations took \d+\.\d{9}s\. \(Avg \d+\.\d{9}s\/iteration\)$/m);
  });
});
