// memslot-perf with --modeled-length and memslot-modification-stress on one worker repeat
// exactly for the same flags: iteration counts, counters, stats, modeled phases, modeled
// histograms and metrics — the host loop acts at fixed points between the vCPU's slices, and
// each run ends on the modeled timeline (memslot-perf) or after -i iterations with -d measured in
// the vCPUs' modeled time (modification-stress). Not so with -l (wall seconds decide how many
// iterations run), --concurrent-vmm or several workers (the VMM thread races the vCPUs).
import { describe, expect, it } from 'vitest';
import { findScenario, parseFlags, quietIo } from './fixtures/dist.js';
import { stripWall } from './fixtures/strip-wall.js';

async function run(scenario: string, args: string[]) {
  const s = findScenario(scenario)!;
  return s.run(parseFlags(s.flags, args), quietIo);
}

const kCases: [string, string[]][] = [
  ['memslot-perf', ['-s', '8', '--modeled-length', '0.0005', '--slice', '1024']],
  ['memslot-perf', ['-s', '64', '-f', '3', '-e', '4', '-q', '-r', '2', '--modeled-length', '0.0002']],
  ['memslot-modification-stress', ['-v', '2', '-b', '8M', '-i', '20', '--workers', '1']],
  ['memslot-modification-stress', ['-v', '2', '-b', '8M', '-i', '8', '-d', '200', '-q', '--workers', '1', '--slice', '512']],
];

describe('one worker, same flags: identical modeled results', () => {
  for (const [scenario, args] of kCases) {
    it(`${scenario} ${args.join(' ')}`, async () => {
      const a = await run(scenario, args);
      const b = await run(scenario, args);
      expect(a.audit.violations).toEqual([]);
      expect(a.counters.guest_access).toBeGreaterThan(0);
      expect(a.counters.srcu_sync).toBeGreaterThan(0);
      expect(stripWall(b)).toEqual(stripWall(a));
    }, 60_000);
  }
});
