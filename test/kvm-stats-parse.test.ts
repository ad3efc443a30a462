// parseBinaryStats() and the kvm_stat view on KVM layouts built by hand (fixtures/stats-bytes.ts,
// not the harness's encoder): log2 and linear histograms filled as KVM fills them, name_size other
// than 48, a non-zero header flags word, blocks in another order, u64 past 2^53, units, and one
// EINVAL per malformed field.
import { describe, expect, it } from 'vitest';
import { bucketRange, parseBinaryStats, scaledValue } from '../src/kvm/stats-parse.js';
import { kvmStatJson, renderKvmStat } from '../src/report/kvm-stat.js';
import { B, T, U, fls64, linearHist, logHist, statsBytes } from './fixtures/stats-bytes.js';

const ns = U.SECONDS | B.POW10;

describe('log2 histograms (KVM_STATS_LOG_HIST_UPDATE: bucket fls64(v), the last one catching the rest)', () => {
  // 8 buckets: 0 | 1 | [2,4) | [4,8) | ... | [32,64) | >= 64
  const samples = [0n, 1n, 2n, 3n, 4n, 7n, 8n, 63n, 64n, 1n << 40n, (1n << 64n) - 1n];
  const buckets = logHist(8, samples);
  const buf = statsBytes({ id: 'kvm-42/vcpu-0', descs: [{ name: 'halt_wait_hist', flags: T.LOG_HIST | ns, exponent: -9, offset: 0, values: buckets }] });

  it('fls64 puts 0 in bucket 0, 1 in bucket 1, 2^k in bucket k+1, and everything from 2^(size-2) in the last', () => {
    expect([0n, 1n, 2n, 3n, 4n, 8n, 64n].map(fls64)).toEqual([0, 1, 2, 2, 3, 4, 7]);
    expect(buckets).toEqual([1n, 1n, 2n, 2n, 1n, 0n, 1n, 3n]);
  });

  it('parses the buckets and gives each the range KVM filled it from', () => {
    const [s] = parseBinaryStats(buf).stats;
    expect(s).toMatchObject({ name: 'halt_wait_hist', type: 'LOG_HIST', unit: 'SECONDS', base: 'POW10', exponent: -9, size: 8, values: buckets });
    for (const v of samples) {
      const i = Math.min(fls64(v), 7);
      const r = bucketRange(s!, i);
      expect(v >= r.lo && (r.hi === null || v < r.hi), `${v} in bucket ${i}`).toBe(true);
    }
    expect([0, 1, 2, 7].map((i) => bucketRange(s!, i))).toEqual([{ lo: 0n, hi: 1n }, { lo: 1n, hi: 2n }, { lo: 2n, hi: 4n }, { lo: 64n, hi: null }]);
  });

  it('kvm_stat view: the sample count, then each non-empty bucket with its range in ns', () => {
    expect(renderKvmStat(parseBinaryStats(buf)).split('\n')).toEqual([
      `${'halt_wait_hist'.padEnd(42)}${'11'.padStart(10)}  log2 histogram, 8 buckets`,
      `${'halt_wait_hist[0]'.padEnd(42)}${'1'.padStart(10)}  0 ns`,
      `${'halt_wait_hist[1]'.padEnd(42)}${'1'.padStart(10)}  1 ns`,
      `${'halt_wait_hist[2]'.padEnd(42)}${'2'.padStart(10)}  [2, 4) ns`,
      `${'halt_wait_hist[3]'.padEnd(42)}${'2'.padStart(10)}  [4, 8) ns`,
      `${'halt_wait_hist[4]'.padEnd(42)}${'1'.padStart(10)}  [8, 16) ns`,
      `${'halt_wait_hist[6]'.padEnd(42)}${'1'.padStart(10)}  [32, 64) ns`,
      `${'halt_wait_hist[7]'.padEnd(42)}${'3'.padStart(10)}  >= 64 ns`,
    ]);
  });

  it('JSON: every bucket with lo/hi/count, hi null on the overflow bucket', () => {
    const j = kvmStatJson(parseBinaryStats(buf)) as { id: string; stats: { count: number; buckets: { lo: number; hi: number | null; count: number }[] }[] };
    expect(j.id).toBe('kvm-42/vcpu-0');
    expect(j.stats[0]!.count).toBe(11);
    expect(j.stats[0]!.buckets.map((b) => b.count)).toEqual([1, 1, 2, 2, 1, 0, 1, 3]);
    expect(j.stats[0]!.buckets[7]).toEqual({ lo: 64, hi: null, count: 3 });
  });
});

describe('linear histograms (KVM_STATS_LINEAR_HIST_UPDATE: bucket v / bucket_size)', () => {
  const buckets = linearHist(5, 10, [0n, 9n, 10n, 39n, 40n, 1000n]);
  const buf = statsBytes({ descs: [{ name: 'lat', flags: T.LINEAR_HIST | U.CYCLES, offset: 0, bucketSize: 10, values: buckets }] });

  it('bucket i holds [i*bucket_size, (i+1)*bucket_size), the last everything above', () => {
    expect(buckets).toEqual([2n, 1n, 0n, 1n, 2n]);
    const [s] = parseBinaryStats(buf).stats;
    expect(s!.bucketSize).toBe(10);
    expect([0, 3, 4].map((i) => bucketRange(s!, i))).toEqual([{ lo: 0n, hi: 10n }, { lo: 30n, hi: 40n }, { lo: 40n, hi: null }]);
    expect(renderKvmStat(parseBinaryStats(buf)).split('\n').slice(1)).toEqual([
      `${'lat[0]'.padEnd(42)}${'2'.padStart(10)}  [0, 10) cycles`,
      `${'lat[1]'.padEnd(42)}${'1'.padStart(10)}  [10, 20) cycles`,
      `${'lat[3]'.padEnd(42)}${'1'.padStart(10)}  [30, 40) cycles`,
      `${'lat[4]'.padEnd(42)}${'2'.padStart(10)}  >= 40 cycles`,
    ]);
  });
});

describe('layouts other than the harness\'s', () => {
  const descs = [
    { name: 'pages_4k', flags: T.INSTANT, offset: 8, values: [5n] },
    { name: 'remote_tlb_flush', flags: T.CUMULATIVE, offset: 0, values: [3n] },
  ];

  it('name_size from the header (32 and 64, not 48), a name longer than 48 bytes', () => {
    const long = `a_stat_name_that_is_longer_than_fourty_eight_bytes_x`;
    for (const nameSize of [32, 64]) {
      const d = nameSize === 64 ? [...descs, { name: long, flags: T.PEAK, offset: 16, values: [9n] }] : descs;
      const p = parseBinaryStats(statsBytes({ nameSize, id: 'kvm-7', descs: d }));
      expect(p.header.nameSize).toBe(nameSize);
      expect(p.id).toBe('kvm-7');
      expect(Object.fromEntries(p.stats.map((s) => [s.name, s.values[0]]))).toEqual(nameSize === 64 ? { pages_4k: 5n, remote_tlb_flush: 3n, [long]: 9n } : { pages_4k: 5n, remote_tlb_flush: 3n });
    }
  });

  it('a non-zero header flags word is kept and does not change the reading', () => {
    const p = parseBinaryStats(statsBytes({ flags: 0x80000001, descs }));
    expect(p.header.flags).toBe(0x80000001);
    expect(p.stats.map((s) => s.values[0])).toEqual([5n, 3n]);
  });

  it('data block before the descriptors, a hole in the data, id after everything', () => {
    // header | data (48 bytes, words 0, 1 used, 2..5 a hole) | descriptors | id
    const buf = statsBytes({ dataOffset: 24, descOffset: 72, idOffset: 72 + 2 * 64, descs });
    const p = parseBinaryStats(buf);
    expect(p.header).toMatchObject({ dataOffset: 24, descOffset: 72, idOffset: 200 });
    expect(renderKvmStat(p).split('\n')).toEqual([`${'pages_4k'.padEnd(42)}${'5'.padStart(10)}`, `${'remote_tlb_flush'.padEnd(42)}${'3'.padStart(10)}`]);
  });

  it('u64 values past 2^53 stay exact: text digits, JSON string', () => {
    const big = (1n << 63n) + 1n;
    const p = parseBinaryStats(statsBytes({ descs: [{ name: 'bytes', flags: T.CUMULATIVE | U.BYTES, offset: 0, values: [big] }] }));
    expect(renderKvmStat(p)).toBe(`${'bytes'.padEnd(42)}${big.toString().padStart(10)}`);
    expect((kvmStatJson(p) as { stats: { value: unknown }[] }).stats[0]!.value).toBe('9223372036854775809');
  });

  it('--units scales by base^exponent: ns to s, POW2 KiB to bytes, booleans', () => {
    const p = parseBinaryStats(statsBytes({
      descs: [
        { name: 'halt_wait_ns', flags: T.CUMULATIVE | ns, exponent: -9, offset: 0, values: [1234n] },
        { name: 'mem', flags: T.INSTANT | U.BYTES | B.POW2, exponent: 10, offset: 8, values: [3n] },
        { name: 'blocking', flags: T.INSTANT | U.BOOLEAN, offset: 16, values: [1n] },
        { name: 'exits', flags: T.CUMULATIVE, offset: 24, values: [7n] },
      ],
    }));
    expect(renderKvmStat(p, { units: true }).split('\n')).toEqual([
      `${'blocking'.padEnd(42)}${'1'.padStart(10)}  true`,
      `${'exits'.padEnd(42)}${'7'.padStart(10)}`,
      `${'halt_wait_ns'.padEnd(42)}${'1234'.padStart(10)}  0.000001234 s`,
      `${'mem'.padEnd(42)}${'3'.padStart(10)}  3072 B`,
    ]);
    expect(scaledValue({ unit: 'SECONDS', base: 'POW2', exponent: -2 }, 3n)).toBe('0.75');
  });
});

describe('malformed buffers: EINVAL naming the field', () => {
  const good = { descs: [{ name: 'exits', flags: T.CUMULATIVE, offset: 0, values: [1n] }] };
  const cases: [string, Buffer, RegExp][] = [
    ['truncated header', statsBytes(good).subarray(0, 20), /truncated: 20 bytes/],
    ['truncated descriptors', statsBytes(good).subarray(0, 100), /num_desc 1 descriptors of 64 bytes at desc_offset 72 need 136 bytes, the buffer has 100/],
    ['absurd num_desc', statsBytes({ ...good, numDesc: 0xffffffff }), /num_desc 4294967295/],
    ['name_size 0', statsBytes({ ...good, nameSize: 0 }), /name_size 0/],
    ['data past the end', statsBytes({ ...good, length: 140 }), /data at data_offset 136 \+ offset 0 \(1 u64\) ends at 144, past the end of the 140-byte buffer/],
    ['data_offset past the end', statsBytes({ ...good, dataOffset: 4096, length: 200 }), /data_offset 4096 is past the end/],
    ['id past the end', statsBytes({ ...good, idOffset: 1 << 20, descOffset: 24, length: 200 }), /id_offset 1048576 \+ name_size 48 is outside the 200-byte buffer/],
    ['unknown type', statsBytes({ descs: [{ name: 'x', flags: 0x5, offset: 0, values: [1n] }] }), /descriptor 0 \(x\): unknown type 0x5/],
    ['unknown unit', statsBytes({ descs: [{ name: 'x', flags: 0x50, offset: 0, values: [1n] }] }), /unknown unit 0x50/],
    ['size 0', statsBytes({ descs: [{ name: 'x', flags: T.CUMULATIVE, size: 0, offset: 0, values: [] }], length: 200 }), /size 0/],
    ['bucket_size on a log histogram', statsBytes({ descs: [{ name: 'h', flags: T.LOG_HIST, bucketSize: 4, offset: 0, values: [0n, 0n] }] }), /bucket_size 4/],
    ['linear histogram without bucket_size', statsBytes({ descs: [{ name: 'h', flags: T.LINEAR_HIST, offset: 0, values: [0n, 0n] }] }), /bucket_size 0/],
    ['seconds with a positive exponent', statsBytes({ descs: [{ name: 't', flags: ns, exponent: 3, offset: 0, values: [1n] }] }), /exponent 3 has the wrong sign for unit SECONDS/],
    ['name not NUL-terminated', statsBytes({ nameSize: 4, descs: [{ name: 'exits', flags: 0, offset: 0, values: [1n] }], id: 'kvm' }), /name is not NUL-terminated within name_size 4/],
    ['descriptors overlap data', statsBytes({ ...good, dataOffset: 80 }), /overlaps the data block/],
  ];
  for (const [what, buf, re] of cases) {
    it(what, () => {
      expect(() => parseBinaryStats(buf)).toThrow(re);
      expect(() => parseBinaryStats(buf)).toThrow(/^EINVAL: binary stats: /);
    });
  }
});
