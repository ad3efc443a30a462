/**
 * mmu-compare: the same workloads under the TDP MMU (lazy or eager rmaps) and the legacy shadow
 * MMU, at one or more vCPU and worker counts — demand paging (demand_paging_test, -u for
 * userfaultfd) and optionally dirty logging (dirty_log_perf_test) — with mmu_lock placed on the
 * modeled-time timeline (mmu-lock.ts) in every run, so the shadow MMU's write-side faults
 * serialise in modeled time as they do on hardware.
 *
 * What it reports per run: modeled and wall time, the share of vCPU time spent waiting for
 * mmu_lock (Σ modeled waits / (vCPUs × the phase's modeled time): the cover letter's "98 % of
 * the time waiting for the MMU lock" is a profile share of the same kind), fault latency and
 * lock-wait percentiles, MMU memory per GiB of guest memory, and rmap bytes (lazy rmaps' saving);
 * then the headline: the TDP MMU's run time as a share of the shadow MMU's, beside the TDP MMU
 * cover letter's figures (§2.1 of the KVM reference: 416 vCPUs x 4 GiB, 98 % and -89 %).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { demandPaging } from './demand-paging.js';
import { dirtyLogPerf } from './dirty-log-perf.js';
import { parseFlags, formatSize, UsageError, givenFlags, type FlagSpec } from './flags.js';
import { kResultSchema, type RunResult } from './result.js';
import type { ScenarioDef, ScenarioIo } from './scenario.js';
import type { HistogramSummary } from '../metrics/histogram.js';

const kVariants = ['tdp', 'tdp-eager', 'shadow'] as const;
type Variant = (typeof kVariants)[number];

interface CompareRow {
  workload: 'demand-paging' | 'dirty-log-perf';
  variant: Variant;
  vcpus: number;
  workers: number;
  modeledNs: number;
  wallNs: number;
  lockWaitShare: number;
  faultP50: number;
  faultP99: number;
  lockWaitP99: number;
  mmuBytesPerGiB: number;
  rmapBytes: number;
  rmapPct: number;
  status: string;
}

function intList(s: string, what: string): number[] {
  const out = s.split(',').map((x) => Number(x.trim()));
  if (out.some((n) => !Number.isInteger(n) || n < 1)) throw new UsageError(`--${what} ${s}: give a comma-separated list of positive integers`);
  return out;
}

function variantList(s: string): Variant[] {
  const out = s.split(',').map((x) => x.trim());
  for (const v of out) if (!(kVariants as readonly string[]).includes(v)) throw new UsageError(`--variants ${s}: '${v}' is not one of ${kVariants.join(', ')}`);
  return out as Variant[];
}


/** Flags that say how a run shows itself, not what it runs: not compared by --resume. */
const kPresentationFlags = new Set(['json', 'quiet', 'watch', 'watch-delay', 'profile', 'profile-dir', 'profile-top']);

/** The package's bin/mmuh.js, from src/ (tests) or dist/src/ (the CLI). */
function mmuhBin(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json')) && dirname(dir) !== dir) dir = dirname(dir);
  return join(dir, 'bin', 'mmuh.js');
}

/** argv for `mmuh run <scenario>` that reproduces `f` (every flag that differs from its default). */
function toArgv(specs: readonly FlagSpec[], f: Record<string, unknown>): string[] {
  const out: string[] = [];
  for (const spec of specs) {
    if (spec.refuse !== undefined || kPresentationFlags.has(spec.name)) continue;
    const v = f[spec.name];
    if (v === undefined || v === null || v === spec.default) continue;
    if (spec.type === 'bool') out.push(v === true ? `--${spec.name}` : `--no-${spec.name}`);
    else out.push(`--${spec.name}`, String(v));
  }
  return out;
}

/** Every flag of `want` has the same value in `prev` (a result's config also holds derived keys). */
function sameConfig(prev: Record<string, unknown>, want: Record<string, unknown>): boolean {
  for (const k of Object.keys(want)) {
    if (kPresentationFlags.has(k)) continue;
    if (JSON.stringify(prev[k]) !== JSON.stringify(want[k])) return false;
  }
  return true;
}

/**
 * One variant's run in its own process (`mmuh run <scenario> ... --json`): each gets a fresh heap,
 * so a 1.6 TiB run's shared memory is gone before the next starts, and its RSS is its own. With
 * --resume, a result already in the runs directory for exactly this configuration is reused.
 */
function runChild(def: ScenarioDef, f: Record<string, unknown>, file: string, resume: boolean, io: ScenarioIo): RunResult {
  const argv = toArgv(def.flags, f);
  if (resume && existsSync(file)) {
    try {
      const prev = JSON.parse(readFileSync(file, 'utf8')) as RunResult;
      const want = parseFlags(def.flags, argv);
      if (prev.status === 'ok' && sameConfig(prev.config, want)) {
        io.print(`  (reusing ${file}: the same configuration, status ok)`);
        return prev;
      }
    } catch {
      // An unreadable or partial file: run again.
    }
  }
  const r = spawnSync(process.execPath, [mmuhBin(), 'run', def.name, ...argv, '--json', file, '-q'], { stdio: ['ignore', 'ignore', 'inherit'], maxBuffer: 1 << 20 });
  if (!existsSync(file)) throw new Error(`mmu-compare: \`mmuh run ${def.name} ${argv.join(' ')}\` exited ${r.status ?? r.signal} without a result`);
  return JSON.parse(readFileSync(file, 'utf8')) as RunResult;
}

export const mmuCompare: ScenarioDef = {
  name: 'mmu-compare',
  summary: 'the same demand-paging (and dirty-log) workload under the TDP MMU (lazy/eager rmaps) and the shadow MMU: run time, mmu_lock waits in modeled time, fault latency, MMU memory',
  after: "the TDP MMU cover letter's demand_paging_test comparison (416 vCPUs x 4 GiB); demand_paging_test.c, dirty_log_perf_test.c",
  flags: [
    ...demandPaging.flags.filter((f) => f.name !== 'mmu' && f.name !== 'rmaps' && f.name !== 'lock-model' && f.name !== 'json' && f.name !== 'repeat'),
    { name: 'json', type: 'string', default: null, help: 'write the result JSON to this file' },
    { name: 'variants', type: 'string', default: 'tdp,tdp-eager,shadow', help: 'MMU variants to run: tdp (lazy rmaps), tdp-eager (rmaps with every memslot), shadow (ept=0)' },
    { name: 'vcpu-counts', type: 'string', default: null, help: 'comma-separated vCPU counts to scale over (default: -v)' },
    { name: 'worker-counts', type: 'string', default: null, help: 'comma-separated worker counts to scale over (default: --workers)' },
    { name: 'dirty-iterations', type: 'int', default: 0, min: 0, max: 1 << 20, help: 'also run dirty_log_perf_test with this many iterations per variant (0: demand paging only; else at least 2)' },
    { name: 'runs-dir', type: 'string', default: null, help: 'keep each run\'s result JSON here (default: a temporary directory, removed after)' },
    { name: 'resume', type: 'bool', default: false, help: 'reuse a result in --runs-dir whose configuration is exactly the run\'s (long comparisons survive an interruption)' },
  ],
  check(f) {
    variantList(f.variants as string);
    if (f['vcpu-counts'] !== null) intList(f['vcpu-counts'] as string, 'vcpu-counts');
    if (f['worker-counts'] !== null) intList(f['worker-counts'] as string, 'worker-counts');
    const di = f['dirty-iterations'] as number;
    if (di === 1) throw new UsageError('--dirty-iterations 1: dirty_log_perf_test needs at least 2 iterations (or 0 for none)');
    if (givenFlags(f).has('uffd-mode') && di > 0) throw new UsageError('--dirty-iterations with -u: the dirty-log workload has no userfaultfd; run them separately');
    return [];
  },
  async run(f, io) {
    const variants = variantList(f.variants as string);
    const vcpuCounts = f['vcpu-counts'] === null ? [f.vcpus as number] : intList(f['vcpu-counts'] as string, 'vcpu-counts');
    const workerCounts = f['worker-counts'] === null ? [f.workers as number] : intList(f['worker-counts'] as string, 'worker-counts');
    const rows: CompareRow[] = [];
    const histograms: Record<string, HistogramSummary> = {};
    const runs: RunResult[] = [];
    const own = f['runs-dir'] as string | null;
    if (own !== null) mkdirSync(own, { recursive: true });
    const dir = own ?? mkdtempSync(join(tmpdir(), 'mmuh-compare-'));
    const resume = f.resume as boolean;
    const metrics: Record<string, number | string | boolean> = {};
    const uffd = f['uffd-mode'] !== null ? ` -u ${String(f['uffd-mode'])}` : '';
    io.print(`mmu-compare: ${formatSize(f.bytes as number)} per vCPU, ${String(f.backing)}${uffd}; variants ${variants.join(', ')}; vCPUs ${vcpuCounts.join(',')}; workers ${workerCounts.join(',')}`);
    io.print(kHeader);
    for (const vcpus of vcpuCounts) {
      for (const workers of workerCounts) {
        for (const variant of variants) {
          // The lock timeline matters where vCPUs take mmu_lock for write: the shadow MMU, or a TDP
          // VM whose nested guest runs (--l2-at). Plain TDP faults only share it for read, so their
          // modeled waits are 0 by construction and the timeline would only cost wall time.
          const l2 = (f['l2-at'] as number) >= 0 && variant !== 'shadow';
          const common = {
            vcpus, workers: Math.min(workers, vcpus), mmu: variant === 'shadow' ? 'shadow' : 'tdp', rmaps: variant === 'tdp-eager' ? 'eager' : 'lazy',
            'lock-model': variant === 'shadow' || l2 ? 'on' : null,
          };
          const df = parseFlags(demandPaging.flags, []);
          for (const spec of demandPaging.flags) if (spec.name in f && !kPresentationFlags.has(spec.name)) df[spec.name] = f[spec.name];
          Object.assign(df, common);
          if (variant === 'shadow') df['l2-at'] = -1;
          const key = `${variant}.v${vcpus}.w${common.workers}`;
          const r = runChild(demandPaging, df, join(dir, `demand-paging.${key}.json`), resume, io);
          runs.push(r);
          rows.push(row('demand-paging', variant, vcpus, common.workers, r));
          collect(histograms, `${variant}.v${vcpus}.w${common.workers}`, r);
          io.print(fmtRow(rows[rows.length - 1]!));
          for (const a of r.memory.lazyRmapAlloc ?? []) {
            io.print(`  lazy rmaps: the first shadow root (L2 launched) allocated ${a.kib} KiB of rmaps in ${a.modeledUs} µs modeled / ${a.wallUs} µs wall, holding slots_arch_lock (memslot updates and this vCPU's L2 entry waited)`);
            metrics[`demand-paging.${key}.lazyRmapAllocKiB`] = a.kib;
            metrics[`demand-paging.${key}.lazyRmapAllocModeledUs`] = a.modeledUs;
          }
          const di = f['dirty-iterations'] as number;
          if (di > 0) {
            const lf = parseFlags(dirtyLogPerf.flags, []);
            for (const k of ['bytes', 'backing', 'seed', 'cost-model', 'slice', 'wall-sample', 'guest-pt']) lf[k] = f[k];
            Object.assign(lf, common, { iterations: di });
            const d = runChild(dirtyLogPerf, lf, join(dir, `dirty-log-perf.${key}.json`), resume, io);
            runs.push(d);
            rows.push(row('dirty-log-perf', variant, vcpus, common.workers, d));
            collect(histograms, `dirty.${variant}.v${vcpus}.w${common.workers}`, d);
            io.print(fmtRow(rows[rows.length - 1]!));
          }
        }
      }
    }
    for (const r of rows) {
      const k = `${r.workload}.${r.variant}.v${r.vcpus}.w${r.workers}`;
      metrics[`${k}.modeledNs`] = r.modeledNs;
      metrics[`${k}.wallNs`] = r.wallNs;
      metrics[`${k}.lockWaitShare`] = r.lockWaitShare;
      metrics[`${k}.mmuBytesPerGiB`] = r.mmuBytesPerGiB;
      metrics[`${k}.rmapBytes`] = r.rmapBytes;
    }
    for (const line of headline(rows, metrics)) io.print(line);
    if (own === null) rmSync(dir, { recursive: true, force: true });
    const first = runs[0]!;
    const failed = runs.find((r) => r.status !== 'ok');
    return {
      schema: kResultSchema, status: failed ? 'failed' : 'ok', ...(failed?.error ? { error: failed.error } : {}),
      scenario: 'mmu-compare', config: { ...f }, seed: first.seed, host: first.host,
      phases: runs.flatMap((r, i) => r.phases.map((p) => ({ ...p, name: `${rows[i]!.variant}.v${rows[i]!.vcpus}.w${rows[i]!.workers}.${p.name}` }))),
      histograms, stats: {}, counters: sumCounters(runs),
      audit: { ok: runs.every((r) => r.audit.ok), violations: runs.flatMap((r) => r.audit.violations) },
      memory: first.memory, metrics, output: [],
      ...(first.harness ? { harness: first.harness } : {}), ...(first.model ? { model: first.model } : {}),
    };
  },
};

const kHeader = 'workload        variant    vcpus workers   modeled_ms    wall_ms  lock_wait%  fault_p50_us  fault_p99_us  lockwait_p99_us  mmu_KiB/GiB  rmap_KiB(%guest)';

function fmtRow(r: CompareRow): string {
  const us = (ns: number) => (ns / 1e3).toFixed(2);
  return [
    r.workload.padEnd(15), r.variant.padEnd(10), String(r.vcpus).padStart(5), String(r.workers).padStart(7),
    (r.modeledNs / 1e6).toFixed(3).padStart(12), (r.wallNs / 1e6).toFixed(1).padStart(10), (r.lockWaitShare * 100).toFixed(2).padStart(11),
    us(r.faultP50).padStart(13), us(r.faultP99).padStart(13), us(r.lockWaitP99).padStart(16), (r.mmuBytesPerGiB / 1024).toFixed(1).padStart(12),
    `${(r.rmapBytes / 1024).toFixed(1)}(${r.rmapPct.toFixed(3)}%)`.padStart(17), r.status === 'ok' ? '' : ` ${r.status}`,
  ].join(' ');
}

function row(workload: CompareRow['workload'], variant: Variant, vcpus: number, workers: number, r: RunResult): CompareRow {
  const modeled = r.phases.reduce((s, p) => s + p.modeledNs, 0);
  const wall = r.phases.reduce((s, p) => s + p.wallNs, 0);
  const wait = r.counters.lock_wait_modeled_ns ?? 0;
  const fault = Object.entries(r.histograms).find(([k]) => k.endsWith('page_fault/modeled'))?.[1];
  const lockw = Object.entries(r.histograms).find(([k]) => k.endsWith('mmu_lock_wait_write/modeled'))?.[1];
  const b = r.memory.breakdown;
  const mmu = (b.ptPool ?? 0) + (b.rmaps ?? 0) + (b.gfnWriteTrack ?? 0) + (b.shadowPages ?? 0) + (b.guestPageTables ?? 0);
  const guestGiB = (r.memory.guestPagesMapped * 4096) / 2 ** 30;
  return {
    workload, variant, vcpus, workers, modeledNs: modeled, wallNs: wall,
    lockWaitShare: modeled > 0 ? wait / (vcpus * modeled) : 0,
    faultP50: fault?.p50 ?? 0, faultP99: fault?.p99 ?? 0, lockWaitP99: lockw?.p99 ?? 0,
    mmuBytesPerGiB: guestGiB > 0 ? mmu / guestGiB : 0, rmapBytes: r.memory.rmapBytes, rmapPct: r.memory.rmapPctOfGuest, status: r.status,
  };
}

function collect(into: Record<string, HistogramSummary>, prefix: string, r: RunResult): void {
  for (const [k, h] of Object.entries(r.histograms)) into[`${prefix}/${k}`] = h;
}

function sumCounters(runs: RunResult[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of runs) for (const [k, v] of Object.entries(r.counters)) out[k] = (out[k] ?? 0) + v;
  return out;
}

/** The cover letter's comparison for each (vCPUs, workers) with both a tdp and a shadow demand-paging run. */
function headline(rows: CompareRow[], metrics: Record<string, number | string | boolean>): string[] {
  const out: string[] = [];
  for (const s of rows) {
    if (s.variant !== 'shadow' || s.workload !== 'demand-paging') continue;
    const t = rows.find((r) => r.variant === 'tdp' && r.workload === 'demand-paging' && r.vcpus === s.vcpus && r.workers === s.workers);
    if (t === undefined || s.modeledNs === 0) continue;
    const share = t.modeledNs / s.modeledNs;
    metrics[`headline.v${s.vcpus}.w${s.workers}.tdpShareOfShadow`] = share;
    metrics[`headline.v${s.vcpus}.w${s.workers}.shadowLockWaitShare`] = s.lockWaitShare;
    out.push(`headline (${s.vcpus} vCPUs, ${s.workers} worker(s), modeled): the TDP MMU finished in ${(share * 100).toFixed(1)} % of the shadow MMU's time (${((share - 1) * 100).toFixed(1)} %; the TDP MMU cover letter: -89 %); the shadow MMU's vCPUs spent ${(s.lockWaitShare * 100).toFixed(1)} % of their time waiting for mmu_lock (cover letter: 98 % of a profile), the TDP MMU's ${(t.lockWaitShare * 100).toFixed(1)} %`);
  }
  return out;
}
