// demand_paging_test's getopt string is "ahom:u:d:b:s:v:c:r:": -a is "a single userfaultfd for all
// of guest memory", -r "reader threads per uffd", -d the handler delay, -c vCPU pinning. They mean
// that here too (never a seed or an access order), and the combinations upstream rejects, or that
// would do nothing, are refused with one line and exit 2.
import { describe, expect, it } from 'vitest';
import { mmuh, oneLine } from './fixtures/mmuh.js';

describe("demand-paging's userfaultfd flags", () => {
  it('-u MINOR over a private backing exits 2 with the upstream sentence', () => {
    const r = mmuh(['run', 'demand-paging', '-b', '4M', '-u', 'MINOR']);
    expect(r.code).toBe(2);
    expect(oneLine(r)).toMatch(/userfaultfd MINOR mode requires shared memory; pick a different -s/);
  });
  it('-u takes only MISSING or MINOR', () => {
    const r = mmuh(['run', 'demand-paging', '-b', '4M', '-u', 'WP']);
    expect(r.code).toBe(2);
    expect(oneLine(r)).toMatch(/MISSING, MINOR/);
  });
  it('-r, -a and -d without -u are refused as inert', () => {
    for (const args of [['-r', '4'], ['-a'], ['-d', '10']]) {
      const r = mmuh(['run', 'demand-paging', '-b', '4M', ...args]);
      expect(r.code, args.join(' ')).toBe(2);
      expect(oneLine(r)).toMatch(/no effect without -u/);
    }
  });
  it('-c is validated (one pCPU per vCPU) and recorded with a note that it is not applied', () => {
    const bad = mmuh(['run', 'demand-paging', '-b', '4M', '-v', '2', '-c', '0']);
    expect(bad.code).toBe(2);
    expect(oneLine(bad)).toMatch(/pCPU not provided for vCPU 1/);
    const ok = mmuh(['run', 'demand-paging', '-b', '4M', '-v', '2', '-c', '0,0', '--workers', '1', '-q']);
    expect(ok.code, ok.err).toBe(0);
    expect(ok.err + ok.out).toMatch(/--pin-vcpus \(-c\) 0,0: recorded, not applied/);
  });
  it('--seed has only its long name, and --help lists -a/-r/-u/-d/-c as the uffd options', () => {
    const h = mmuh(['run', 'demand-paging', '--help']).out;
    expect(h).toMatch(/ {4}--seed/);
    expect(h).toMatch(/-r, --uffd-readers/);
    expect(h).toMatch(/-a, --uffd-single/);
    expect(h).toMatch(/-u, --uffd-mode/);
    expect(h).toMatch(/-d, --uffd-delay/);
    expect(h).toMatch(/-c, --pin-vcpus/);
  });
});
