// The VMM warm-up (a scratch VM runs the VMM paths before the measured phases) changes wall
// times only: with and without it, one worker and the same seed give identical counters, stats,
// modeled phase times and modeled histograms. The result says it was done (config.vmmWarmup and
// one `--vmm-warmup` note that the text output prints), and --no-vmm-warmup turns it off.
import { describe, expect, it } from 'vitest';
import { findScenario, parseFlags, quietIo } from './fixtures/dist.js';
import { kWallDerived, stripWall } from './fixtures/strip-wall.js';

/** Wall-clock fields, the machine, and the warm-up's own flag/config/note. */
const kDrop = new Set([...kWallDerived, 'vmm-warmup', 'vmmWarmup']);
const strip = (x: unknown) => stripWall(x, kDrop);

async function run(scenario: string, args: string[]) {
  const s = findScenario(scenario)!;
  return s.run(parseFlags(s.flags, ['--workers', '1', '--slice', '512', ...args]), quietIo);
}

const kCases: [string, string[]][] = [
  ['dirty-log-perf', ['-v', '2', '-b', '4M', '-i', '2']],
  ['dirty-log-perf', ['-v', '2', '-b', '4M', '-i', '2', '--dirty', 'ring', '--ring-entries', '1024']],
  ['dirty-log-perf', ['-v', '1', '-b', '4M', '-i', '2', '--dirty', 'wrprot', '-g', '-s', 'anonymous_hugetlb_2mb']],
  ['dirty-log-page-splitting', ['-v', '2', '-b', '4M', '-s', 'anonymous_hugetlb_2mb']],
];

describe('VMM warm-up on a scratch VM', () => {
  for (const [scenario, args] of kCases) {
    it(`changes no modeled figure: ${scenario} ${args.join(' ')}`, async () => {
      const warm = await run(scenario, args);
      const cold = await run(scenario, [...args, '--no-vmm-warmup']);
      expect(warm.config.vmmWarmup).toBe(true);
      expect(cold.config.vmmWarmup).toBe(false);
      const notes = (r: typeof warm) => r.host.notes.filter((n) => n.startsWith('--vmm-warmup'));
      expect(notes(warm)).toHaveLength(1);
      expect(notes(cold)).toHaveLength(0);
      expect(warm.audit.ok).toBe(true);
      expect(warm.counters.guest_access).toBeGreaterThan(0);
      expect(strip(warm)).toEqual(strip(cold));
    }, 30_000);
  }
});
