// demand_paging_test's getopt string is "ac:d:hm:u:r:s:v:o": -a is "a single userfaultfd for all
// of guest memory" and -r "reader threads per uffd". Until userfaultfd is modelled mmuh refuses
// them (exit 2, one line naming the flag to use) instead of reading `-r 4` as a seed.
import { describe, expect, it } from 'vitest';
import { mmuh, oneLine } from './fixtures/mmuh.js';

describe('demand-paging refuses demand_paging_test\'s userfaultfd flags', () => {
  it('-r 4 and -a exit 2 naming --seed and --random-access', () => {
    const r = mmuh(['run', 'demand-paging', '-b', '4M', '-r', '4']);
    expect(r.code).toBe(2);
    expect(oneLine(r)).toMatch(/-r is "the number of reader threads per uffd".*use --seed/);
    const a = mmuh(['run', 'demand-paging', '-b', '4M', '-a']);
    expect(a.code).toBe(2);
    expect(oneLine(a)).toMatch(/use --random-access/);
  });
  it('--random-access --seed runs, and --help lists them without -a/-r', () => {
    const r = mmuh(['run', 'demand-paging', '-b4M', '--random-access', '--seed', '3', '--workers', '1', '-q']);
    expect(r.code, r.err).toBe(0);
    const h = mmuh(['run', 'demand-paging', '--help']).out;
    expect(h).toMatch(/--random-access/);
    expect(h).toMatch(/ {4}--seed/);
    expect(h).not.toMatch(/-a, |-r, /);
  });
});
