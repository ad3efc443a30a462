// memslot-perf and memslot-modification-stress take their selftests' letters with the selftests'
// meanings; a bad value is one line on stderr with parse_args()'s sentence, exit 2, before
// anything is allocated.
import { describe, expect, it } from 'vitest';
import { mmuh, oneLine } from './fixtures/mmuh.js';

const perf = (...a: string[]) => mmuh(['run', 'memslot-perf', ...a]);
const stress = (...a: string[]) => mmuh(['run', 'memslot-modification-stress', ...a]);

describe('memslot-perf flags', () => {
  const cases: [string[], RegExp][] = [
    [['-s', '1'], /^mmuh: Slot count cap must be larger than 1 or -1 for no cap$/],
    [['-s', '0'], /^mmuh: Slot count cap must be larger than 1 or -1 for no cap$/],
    [['-e', '6'], /^mmuh: Last test to run has to be non-negative and less than 6$/],
    [['-f', '-1'], /^mmuh: First test must be non-negative, got -1$/],
    [['-f', '4', '-e', '3'], /^mmuh: First test to run cannot be greater than the last test to run$/],
    [['-l', '-2'], /^mmuh: Test length must be non-negative, got -2$/],
    [['-r', '0'], /^mmuh: Runs per test must be greater than 0, got 0$/],
    [['-t', '0'], /^mmuh: Host wait timeout must be greater than 0, got 0$/],
    [['-l', '2', '--modeled-length', '0.1'], /both set the test length: give one/],
    [['--modeled-length', '0'], /--modeled-length must be a positive number of seconds/],
    [['-s', 'x'], /-s\/--slots: 'x' is not an integer/],
    [['-x'], /unknown flag '-x'/],
  ];
  for (const [args, msg] of cases) {
    it(args.join(' '), () => {
      const r = perf(...args);
      expect(r.code).toBe(2);
      expect(oneLine(r)).toMatch(msg);
      expect(r.out).toBe('');
    });
  }
  it('--help lists the selftest letters', () => {
    const h = perf('--help');
    expect(h.code).toBe(0);
    for (const f of ['-v, --verbose', '-d, --debug-checks', '-q, --disable-slot-zap-quirk', '-s, --slots', '-f, --first-test', '-e, --last-test', '-l, --test-length', '-r, --runs', '-t, --wait-timeout']) {
      expect(h.out).toContain(f);
    }
  });
});

describe('memslot-modification-stress flags', () => {
  const cases: [string[], RegExp][] = [
    [['-i', '0'], /^mmuh: Number of iterations must be greater than 0, got 0$/],
    [['-d', '-5'], /^mmuh: Delay must be non-negative, got -5$/],
    [['-m', '3'], /-m selects a guest mode: this model has one/],
    [['-o'], /-o \(overlapping vCPU regions\) has no effect with one vCPU/],
    [['-v', '0'], /-v\/--vcpus must be at least 1/],
  ];
  for (const [args, msg] of cases) {
    it(args.join(' '), () => {
      const r = stress(...args);
      expect(r.code).toBe(2);
      expect(oneLine(r)).toMatch(msg);
    });
  }
  it('-q is the zap quirk (quiet is --quiet); prints the selftest\'s lines', () => {
    const r = stress('-q', '-b', '8M', '-i', '3', '--quiet');
    expect(r.code, r.err).toBe(0);
    expect(r.out.trimEnd().split('\n')).toEqual([
      'Testing guest mode: PA-bits:42, VA-bits:48,  4K pages',
      expect.stringMatching(/^guest physical test memory: \[0x[0-9a-f]+, 0x[0-9a-f]+\)$/),
      'Memslot zap quirk disabled',
      'Finished creating vCPUs',
      'Started all vCPUs',
      'All vCPU threads joined',
    ]);
    const on = stress('-b', '8M', '-i', '3');
    expect(on.code, on.err).toBe(0);
    expect(on.out).toMatch(/^Memslot zap quirk enabled$/m);
    // The view shows each ioctl kind's latency histogram.
    expect(on.out).toMatch(/^set_memory_region\.create\/modeled +3 /m);
    expect(on.out).toMatch(/^set_memory_region\.delete\/wall +3 /m);
  });
});
