/**
 * A reader for any KVM binary stats buffer (the bytes of a KVM_GET_STATS_FD file, VM or vCPU, of
 * any architecture or kernel), as userspace reads one: tools/testing/selftests/kvm/lib/kvm_util.c
 * read_stats_header() / read_stats_descriptors() / read_stat_data(), which take every size and
 * offset from the header and descriptors rather than assuming kvm_stats_read()'s current layout:
 *
 *   struct kvm_stats_header { u32 flags, name_size, num_desc, id_offset, desc_offset, data_offset }
 *   id string             name_size bytes at id_offset, NUL-terminated
 *   struct kvm_stats_desc { u32 flags; s16 exponent; u16 size; u32 offset; u32 bucket_size;
 *                           char name[name_size] }  x num_desc at desc_offset
 *   data                  u64 values; a descriptor's `size` of them at data_offset + offset
 *
 * The buffer is checked with kvm_binary_stats_test.c's rules (type / unit / base within their
 * KVM_STATS_*_MAX, the exponent's sign per unit, NUL-terminated names, size != 0, bucket_size
 * only on linear histograms, descriptor and data blocks apart) plus what a file adds: every
 * block inside the bytes read. A violation is a KvmError EINVAL naming the field. Values stay
 * u64 (bigint): KVM's counters are u64 and a byte counter can pass 2^53.
 */
import { KvmError } from '../host/errno.js';
import {
  KVM_STATS_BASE_MASK, KVM_STATS_BASE_POW2, KVM_STATS_TYPE_LINEAR_HIST, KVM_STATS_TYPE_LOG_HIST, KVM_STATS_TYPE_MASK,
  KVM_STATS_UNIT_BOOLEAN, KVM_STATS_UNIT_MASK, KVM_STATS_UNIT_SECONDS, kStatsDescBytes, kStatsHeaderBytes,
} from './stats.js';

export const kStatsTypeNames = ['CUMULATIVE', 'INSTANT', 'PEAK', 'LINEAR_HIST', 'LOG_HIST'] as const;
export const kStatsUnitNames = ['NONE', 'BYTES', 'SECONDS', 'CYCLES', 'BOOLEAN'] as const;
export const kStatsBaseNames = ['POW10', 'POW2'] as const;
export type StatsType = (typeof kStatsTypeNames)[number];
export type StatsUnit = (typeof kStatsUnitNames)[number];
export type StatsBase = (typeof kStatsBaseNames)[number];

/** A name_size beyond this is not a KVM layout (KVM_STATS_NAME_SIZE is 48). */
const kMaxNameSize = 4096;

export interface KvmStatsHeader {
  flags: number;
  nameSize: number;
  numDesc: number;
  idOffset: number;
  descOffset: number;
  dataOffset: number;
}

/** One descriptor with its data: `values` has `size` u64s (one for a scalar, the buckets of a histogram). */
export interface ParsedStat {
  name: string;
  flags: number;
  type: StatsType;
  unit: StatsUnit;
  base: StatsBase;
  exponent: number;
  size: number;
  /** Byte offset of the data inside the data block. */
  offset: number;
  bucketSize: number;
  values: bigint[];
}

export interface ParsedStats {
  header: KvmStatsHeader;
  id: string;
  stats: ParsedStat[];
}

function einval(msg: string): never {
  throw new KvmError('EINVAL', `binary stats: ${msg}`);
}

/** A NUL-terminated string of `size` bytes at `at`; `what` names it in the error. */
function cString(buf: Buffer, at: number, size: number, what: string): string {
  const end = buf.indexOf(0, at);
  if (end < 0 || end >= at + size) einval(`${what} is not NUL-terminated within name_size ${size}`);
  return buf.toString('latin1', at, end);
}

function readHeader(buf: Buffer): KvmStatsHeader {
  if (buf.length < kStatsHeaderBytes) einval(`truncated: ${buf.length} bytes, a struct kvm_stats_header needs ${kStatsHeaderBytes}`);
  const h: KvmStatsHeader = {
    flags: buf.readUInt32LE(0), nameSize: buf.readUInt32LE(4), numDesc: buf.readUInt32LE(8),
    idOffset: buf.readUInt32LE(12), descOffset: buf.readUInt32LE(16), dataOffset: buf.readUInt32LE(20),
  };
  if (h.nameSize === 0 || h.nameSize > kMaxNameSize) einval(`name_size ${h.nameSize} is not a KVM layout (1..${kMaxNameSize}; KVM's is 48)`);
  if (h.idOffset < kStatsHeaderBytes || h.idOffset + h.nameSize > buf.length) {
    einval(`id_offset ${h.idOffset} + name_size ${h.nameSize} is outside the ${buf.length}-byte buffer (or inside the header)`);
  }
  if (h.descOffset < kStatsHeaderBytes || h.dataOffset < kStatsHeaderBytes) einval(`desc_offset ${h.descOffset} / data_offset ${h.dataOffset} point into the header`);
  // num_desc is only plausible if its descriptors fit in the bytes read; this also bounds an
  // absurd count (0xffffffff) before anything is allocated for it.
  const descBytes = h.numDesc * (kStatsDescBytes + h.nameSize);
  if (h.descOffset + descBytes > buf.length) {
    einval(`num_desc ${h.numDesc} descriptors of ${kStatsDescBytes + h.nameSize} bytes at desc_offset ${h.descOffset} need ${h.descOffset + descBytes} bytes, the buffer has ${buf.length} (truncated, or num_desc is wrong)`);
  }
  if (h.dataOffset > buf.length) einval(`data_offset ${h.dataOffset} is past the end of the ${buf.length}-byte buffer`);
  // kvm_binary_stats_test: "Descriptor block is overlapped with data block".
  if (!(h.descOffset > h.dataOffset || h.descOffset + descBytes <= h.dataOffset)) {
    einval(`descriptor block [${h.descOffset}, ${h.descOffset + descBytes}) overlaps the data block at ${h.dataOffset}`);
  }
  return h;
}

function readDesc(buf: Buffer, h: KvmStatsHeader, i: number): ParsedStat {
  const p = h.descOffset + i * (kStatsDescBytes + h.nameSize);
  const flags = buf.readUInt32LE(p);
  const exponent = buf.readInt16LE(p + 4);
  const size = buf.readUInt16LE(p + 6);
  const offset = buf.readUInt32LE(p + 8);
  const bucketSize = buf.readUInt32LE(p + 12);
  const name = cString(buf, p + kStatsDescBytes, h.nameSize, `descriptor ${i}'s name`);
  const type = flags & KVM_STATS_TYPE_MASK;
  const unit = flags & KVM_STATS_UNIT_MASK;
  const base = flags & KVM_STATS_BASE_MASK;
  const at = `descriptor ${i} (${name})`;
  if (type > KVM_STATS_TYPE_LOG_HIST) einval(`${at}: unknown type 0x${type.toString(16)}`);
  if (unit > KVM_STATS_UNIT_BOOLEAN) einval(`${at}: unknown unit 0x${unit.toString(16)}`);
  if (base > KVM_STATS_BASE_POW2) einval(`${at}: unknown base 0x${base.toString(16)}`);
  if ((flags & ~(KVM_STATS_TYPE_MASK | KVM_STATS_UNIT_MASK | KVM_STATS_BASE_MASK)) !== 0) einval(`${at}: flags 0x${flags.toString(16)} has bits outside type/unit/base`);
  // Counters, bytes and cycles scale up (exponent >= 0), seconds down (<= 0).
  if (unit === KVM_STATS_UNIT_SECONDS ? exponent > 0 : unit !== KVM_STATS_UNIT_BOOLEAN && exponent < 0) {
    einval(`${at}: exponent ${exponent} has the wrong sign for unit ${kStatsUnitNames[unit >> 4]}`);
  }
  if (size === 0) einval(`${at}: size 0`);
  if (type === KVM_STATS_TYPE_LINEAR_HIST ? bucketSize === 0 : bucketSize !== 0) {
    einval(`${at}: bucket_size ${bucketSize} (only a linear histogram has one, and it is not 0)`);
  }
  const end = h.dataOffset + offset + 8 * size;
  if (end > buf.length) einval(`${at}: data at data_offset ${h.dataOffset} + offset ${offset} (${size} u64) ends at ${end}, past the end of the ${buf.length}-byte buffer`);
  const values: bigint[] = [];
  for (let k = 0; k < size; k++) values.push(buf.readBigUInt64LE(h.dataOffset + offset + 8 * k));
  return {
    name, flags, type: kStatsTypeNames[type]!, unit: kStatsUnitNames[unit >> 4]!, base: kStatsBaseNames[base >> 8]!,
    exponent, size, offset, bucketSize, values,
  };
}

/** Parse and check a KVM binary stats buffer; EINVAL (KvmError) names the first bad field. */
export function parseBinaryStats(buf: Buffer): ParsedStats {
  const header = readHeader(buf);
  const id = cString(buf, header.idOffset, header.nameSize, 'the id string');
  const stats: ParsedStat[] = [];
  let dataBytes = 0;
  for (let i = 0; i < header.numDesc; i++) {
    const s = readDesc(buf, header, i);
    dataBytes = Math.max(dataBytes, s.offset + 8 * s.size);
    stats.push(s);
  }
  // kvm_binary_stats_test: "Data block is overlapped with Descriptor block".
  if (!(header.dataOffset >= header.descOffset || header.dataOffset + dataBytes <= header.descOffset)) {
    einval(`data block [${header.dataOffset}, ${header.dataOffset + dataBytes}) overlaps the descriptors at ${header.descOffset}`);
  }
  return { header, id, stats };
}

/** Whether a stat is a histogram (its values are buckets). */
export function isHistogram(s: Pick<ParsedStat, 'type'>): boolean {
  return s.type === 'LINEAR_HIST' || s.type === 'LOG_HIST';
}

/**
 * Bucket `i`'s range of raw values [lo, hi) (hi null: no upper bound), as KVM fills them:
 * kvm_stats_linear_hist_update() puts v in min(v / bucket_size, size - 1);
 * kvm_stats_log_hist_update() in min(fls64(v), size - 1), so bucket 0 holds 0, bucket 1 holds 1,
 * bucket k holds [2^(k-1), 2^k), and the last bucket everything from its lower bound up.
 */
export function bucketRange(s: Pick<ParsedStat, 'type' | 'size' | 'bucketSize'>, i: number): { lo: bigint; hi: bigint | null } {
  const last = i === s.size - 1;
  if (s.type === 'LINEAR_HIST') {
    const w = BigInt(s.bucketSize);
    return { lo: BigInt(i) * w, hi: last ? null : BigInt(i + 1) * w };
  }
  if (i === 0) return { lo: 0n, hi: last ? null : 1n };
  return { lo: 1n << BigInt(i - 1), hi: last ? null : 1n << BigInt(i) };
}

/** The unit of a stat's raw values: "ns" for SECONDS with exponent -9, "KiB" for BYTES POW2 10, ... */
export function rawUnit(s: Pick<ParsedStat, 'unit' | 'base' | 'exponent'>): string {
  const e = s.exponent;
  const scale = (u: string) => (e === 0 ? u : `${s.base === 'POW2' ? '2' : '10'}^${e} ${u}`.trim());
  switch (s.unit) {
    case 'SECONDS':
      if (s.base === 'POW10') return ({ 0: 's', [-3]: 'ms', [-6]: 'us', [-9]: 'ns' } as Record<number, string>)[e] ?? scale('s');
      return scale('s');
    case 'BYTES':
      if (s.base === 'POW2') return ({ 0: 'B', 10: 'KiB', 20: 'MiB', 30: 'GiB', 40: 'TiB' } as Record<number, string>)[e] ?? scale('B');
      return ({ 0: 'B', 3: 'kB', 6: 'MB', 9: 'GB' } as Record<number, string>)[e] ?? scale('B');
    case 'CYCLES':
      return scale('cycles');
    case 'NONE':
      return e === 0 ? '' : scale('');
    case 'BOOLEAN':
      return '';
  }
}

/**
 * A raw value in the unit's base (seconds, bytes, cycles): value x base^exponent, as a decimal
 * string exact for the powers KVM uses (10^-9 .. 2^40). BOOLEAN reads "true"/"false".
 */
export function scaledValue(s: Pick<ParsedStat, 'unit' | 'base' | 'exponent'>, v: bigint): string {
  if (s.unit === 'BOOLEAN') return v !== 0n ? 'true' : 'false';
  const e = s.exponent;
  if (e === 0) return v.toString();
  if (s.base === 'POW2') {
    if (e > 0) return (v << BigInt(e)).toString();
    // 2^-k = 5^k / 10^k: exact in k decimal places.
    return decimalShift(v * 5n ** BigInt(-e), -e);
  }
  return e > 0 ? (v * 10n ** BigInt(e)).toString() : decimalShift(v, -e);
}

/** v / 10^places as an exact decimal string. */
function decimalShift(v: bigint, places: number): string {
  const s = v.toString().padStart(places + 1, '0');
  return `${s.slice(0, s.length - places)}.${s.slice(s.length - places)}`;
}

/**
 * name -> value (an array of buckets for a histogram), numbers rather than u64: the short form
 * tests and the library use for the harness's own stats fd.
 */
export function decodeBinaryStats(buf: Buffer): { id: string; stats: Record<string, number | number[]> } {
  const p = parseBinaryStats(buf);
  const stats: Record<string, number | number[]> = {};
  for (const s of p.stats) stats[s.name] = s.size === 1 && !isHistogram(s) ? Number(s.values[0]) : s.values.map(Number);
  return { id: p.id, stats };
}
