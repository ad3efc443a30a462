// Same seed on one worker: every scenario and dirty-tracking strategy gives identical counters,
// stats, modeled phase times and modeled histograms, run to run — the ring's reaper and -e's
// disable included (the VMM thread acts at fixed points of vCPU progress on one worker, see
// Runner.phase). Only wall-clock figures may differ.
import { describe, expect, it } from 'vitest';
import { findScenario, parseFlags, quietIo } from './fixtures/dist.js';
import { kWallDerived, stripWall } from './fixtures/strip-wall.js';

/** Result fields derived from the wall clock (or the machine), which may differ run to run. */
const kDrop = new Set([
  ...kWallDerived,
  // demand-paging's rates over wall time (their modeled twins stay in).
  'totalGuestExecutionNs', 'perVcpuRate', 'overallRate', 'faultsPerSecond', 'faultsPerSecondPerWorker',
]);

async function run(scenario: string, args: string[]) {
  const s = findScenario(scenario)!;
  const f = parseFlags(s.flags, ['--workers', '1', '--slice', '512', ...args]);
  const r = await s.run(f, quietIo);
  return r;
}

const kCases: [string, string[]][] = [
  ['demand-paging', ['-v', '2', '-b', '4M', '-s', 'anonymous_thp']],
  ['demand-paging', ['--vms', '2', '-v', '1', '-b', '4M', '-s', 'anonymous_hugetlb_2mb']],
  ['dirty-log-perf', ['-v', '2', '-b', '4M', '-i', '2']],
  ['dirty-log-perf', ['-v', '2', '-b', '4M', '-i', '2', '--dirty', 'wrprot', '-g']],
  ['dirty-log-perf', ['-v', '2', '-b', '4M', '-i', '3', '--dirty', 'ring', '--ring-entries', '1024']],
  ['dirty-log-perf', ['-v', '2', '-b', '4M', '-i', '2', '--dirty', 'ring', '-e', '-a']],
  ['dirty-log-perf', ['-v', '2', '-b', '4M', '-i', '2', '-e', '-s', 'anonymous_hugetlb_2mb', '--split', 'on-fault']],
  ['dirty-log-perf', ['-v', '2', '-b', '4M', '-i', '2', '--dirty', 'wrprot', '--enable', 'wrprot-all', '-s', 'anonymous_thp', '-x', '2']],
  ['dirty-log-page-splitting', ['-v', '2', '-b', '4M', '-s', 'anonymous_hugetlb_2mb']],
];

describe('one worker, same seed: identical modeled results', () => {
  for (const [scenario, args] of kCases) {
    it(`${scenario} ${args.join(' ')}`, async () => {
      const a = await run(scenario, args);
      const b = await run(scenario, args);
      expect(a.audit.ok).toBe(true);
      expect(a.counters.guest_access).toBeGreaterThan(0);
      expect(stripWall(b, kDrop)).toEqual(stripWall(a, kDrop));
    }, 20_000);
  }
});
