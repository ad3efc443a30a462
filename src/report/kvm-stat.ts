/**
 * Views of a parsed KVM binary stats buffer (kvm/stats-parse.ts).
 *
 * Text is kvm_stat's batch mode (tools/kvm/kvm_stat/kvm_stat, `-1`/`--once`/`--batch`): one
 * `'%-42s%10d'` line per stat, sorted by name, with the raw integer KVM stores — kvm_stat reads
 * debugfs, whose files hold the raw u64 in the stat's own unit (halt_wait_ns in ns), and applies
 * no exponent. kvm_stat's third column is the change over its one-second sampling window; a
 * saved buffer is one read, so there is none. Two additions kvm_stat does not have: `--units`
 * appends the value scaled to its base unit (value x base^exponent: seconds, bytes, cycles), and
 * a histogram (which debugfs cannot show) prints its sample count on its own line, then one
 * `name[i]` line per non-empty bucket with the bucket's range in the raw unit.
 */
import { bucketRange, isHistogram, rawUnit, scaledValue, type ParsedStat, type ParsedStats } from '../kvm/stats-parse.js';

export interface KvmStatTextOptions {
  /** Append each scalar's value scaled by its exponent, with its unit. */
  units?: boolean;
}

/** Python's '%-42s%10d' (a longer name is not cut, as %s does not cut). */
function line(name: string, v: bigint, tail = ''): string {
  return `${name.padEnd(42)}${v.toString().padStart(10)}${tail ? `  ${tail}` : ''}`;
}

function rangeText(s: ParsedStat, i: number): string {
  const { lo, hi } = bucketRange(s, i);
  const u = rawUnit(s);
  const r = hi === null ? `>= ${lo}` : hi === lo + 1n ? `${lo}` : `[${lo}, ${hi})`;
  return u ? `${r} ${u}` : r;
}

export function renderKvmStat(p: ParsedStats, o: KvmStatTextOptions = {}): string {
  const out: string[] = [];
  const sorted = [...p.stats].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const s of sorted) {
    if (isHistogram(s)) {
      out.push(line(s.name, s.values.reduce((a, b) => a + b, 0n), `${s.type === 'LOG_HIST' ? 'log2' : `linear (bucket ${s.bucketSize})`} histogram, ${s.size} buckets`));
      s.values.forEach((v, i) => {
        if (v !== 0n) out.push(line(`${s.name}[${i}]`, v, rangeText(s, i)));
      });
      continue;
    }
    // A scalar is size 1; a size > 1 non-histogram (an array stat) prints each element.
    s.values.forEach((v, i) => {
      const name = s.size === 1 ? s.name : `${s.name}[${i}]`;
      const tail = o.units && (s.exponent !== 0 || s.unit !== 'NONE') ? `${scaledValue(s, v)}${kBaseUnit[s.unit]}` : '';
      out.push(line(name, v, tail));
    });
  }
  return out.join('\n');
}

/** What scaledValue() is in. */
const kBaseUnit: Record<ParsedStat['unit'], string> = { NONE: '', BYTES: ' B', SECONDS: ' s', CYCLES: ' cycles', BOOLEAN: '' };

/** A u64 as a JSON number when exact, else its decimal string. */
function u64(v: bigint): number | string {
  return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v.toString();
}

/** `mmuh stats --json`: the header, the id and every descriptor with its data (histograms with bucket ranges). */
export function kvmStatJson(p: ParsedStats): unknown {
  return {
    id: p.id,
    header: p.header,
    stats: p.stats.map((s) => {
      const { values, ...desc } = s;
      if (!isHistogram(s)) return { ...desc, rawUnit: rawUnit(s), value: s.size === 1 ? u64(values[0]!) : values.map(u64) };
      return {
        ...desc, rawUnit: rawUnit(s), count: u64(values.reduce((a, b) => a + b, 0n)),
        buckets: values.map((v, i) => {
          const r = bucketRange(s, i);
          return { lo: u64(r.lo), hi: r.hi === null ? null : u64(r.hi), count: u64(v) };
        }),
      };
    }),
  };
}
