// Scenario flags parse as getopt(3) parses a selftest's argv (grouped short flags, attached
// values, an option argument that starts with '-'), plus --name=value and --no-<bool>.
import { describe, expect, it } from 'vitest';
import { parseFlags, givenFlags, UsageError } from '../src/scenario/flags.js';
import { dirtyLogPerf } from '../src/scenario/dirty-log-perf.js';
import { demandPaging } from '../src/scenario/demand-paging.js';

const perf = (...a: string[]) => parseFlags(dirtyLogPerf.flags, a);

describe('getopt-style flags', () => {
  it('groups short booleans (-ao) and attaches values (-b1G, -v4, -i3)', () => {
    const f = perf('-ao', '-b1G', '-v4', '-i3');
    expect(f).toMatchObject({ random: true, overlap: true, bytes: 2 ** 30, vcpus: 4, iterations: 3 });
  });
  it('a group may end in a flag that takes the rest as its value (-ab64M)', () => {
    expect(perf('-ab64M')).toMatchObject({ random: true, bytes: 64 * 2 ** 20 });
  });
  it('takes the next word as the value even if it starts with a dash, as getopt does', () => {
    expect(() => perf('-b', '-a')).toThrow(/bad size '-a'/);
  });
  it('--name=value, --no-<bool>, and the last occurrence wins', () => {
    const f = perf('--bytes=2M', '-q', '--no-quiet', '-v', '2', '-v3');
    expect(f).toMatchObject({ bytes: 2 * 2 ** 20, quiet: false, vcpus: 3 });
  });
  it('records which flags were given (conflict checks tell a default from a choice)', () => {
    expect([...givenFlags(perf('-g', '-b1G'))].sort()).toEqual(['bytes', 'no-manual-caps']);
  });
  // -vms is -v with the value 'ms' to getopt, so it is a bad integer, not an unknown flag.
  it('refuses unknown flags, positionals, values on booleans and missing values, in one line', () => {
    for (const [args, re] of [[['--bogus'], /unknown flag '--bogus'/], [['-ak'], /unknown flag '-k' \(in '-ak'\)/], [['x'], /unexpected argument 'x'/],
      [['--quiet=1'], /takes no value/], [['-b'], /-b needs a value/], [['-vms', '2'], /-v\/--vcpus: 'ms' is not an integer/]] as const) {
      expect(() => perf(...args), args.join(' ')).toThrow(UsageError);
      expect(() => perf(...args)).toThrow(re);
    }
  });
  it('dirty-log-perf keeps dirty_log_perf_test\'s -a (random access) and -r (random seed)', () => {
    expect(perf('-a', '-r', '7')).toMatchObject({ random: true, seed: 7 });
  });
  it('demand-paging has --random-access and --seed (long only): its -a/-r are demand_paging_test\'s uffd options', () => {
    expect(parseFlags(demandPaging.flags, ['--random-access', '--seed', '9'])).toMatchObject({ 'random-access': true, seed: 9 });
    // demand_paging_test's meanings, never the seed or the access order.
    expect(parseFlags(demandPaging.flags, ['-r', '4'])).toMatchObject({ 'uffd-readers': 4, seed: 1 });
    expect(parseFlags(demandPaging.flags, ['-a'])).toMatchObject({ 'uffd-single': true, 'random-access': false });
    expect(parseFlags(demandPaging.flags, ['-oa'])).toMatchObject({ overlap: true, 'uffd-single': true });
    expect(parseFlags(demandPaging.flags, ['-u', 'MISSING', '-d50'])).toMatchObject({ 'uffd-mode': 'MISSING', 'uffd-delay': 50 });
  });
});
