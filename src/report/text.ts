/**
 * The terminal view of a RunResult: phases in both clocks, KVM stats, one percentile row per
 * histogram, the audit, memory per guest page, the top self-time functions per thread
 * (--profile cpu), and the machine's noise.
 */
import { relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { RunResult, SampleStats } from '../scenario/result.js';

export function fmtNs(ns: number): string {
  if (ns >= 1e9) return `${(ns / 1e9).toFixed(3)} s`;
  if (ns >= 1e6) return `${(ns / 1e6).toFixed(3)} ms`;
  if (ns >= 1e3) return `${(ns / 1e3).toFixed(2)} µs`;
  return `${Math.round(ns)} ns`;
}

/** Columns padded to their widest cell: the first left-aligned, the rest right, unless `left` says otherwise. */
export function table(header: string[], rows: (string | number)[][], left: readonly number[] = [0]): string {
  const cells = [header, ...rows.map((r) => r.map(String))];
  const widths = header.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) => r.map((c, i) => (left.includes(i) ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ').trimEnd();
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...cells.slice(1).map(line)].join('\n');
}

/** Half the 95 % CI as a percentage of the mean: "±3.1%" (empty for one run or no spread). */
export function fmtCiPct(s: SampleStats): string {
  if (s.ci95 === null || s.deterministic || s.mean === 0) return '';
  return `±${(((s.ci95[1] - s.ci95[0]) / 2 / Math.abs(s.mean)) * 100).toFixed(1)}%`;
}

/** A figure over repeats: the median, then "exact" or [min..max] and the CI. */
export function fmtSample(s: SampleStats): string {
  if (s.n === 1) return fmtNs(s.median);
  if (s.deterministic) return `${fmtNs(s.median)} (exact)`;
  return `${fmtNs(s.median)} [${fmtNs(s.min)}..${fmtNs(s.max)}] ${fmtCiPct(s)}`;
}

/** Shorter, for wide tables: the median and "(exact)" or the CI. */
export function fmtSampleShort(s: SampleStats): string {
  if (s.n === 1) return fmtNs(s.median);
  return `${fmtNs(s.median)} ${s.deterministic ? '(exact)' : fmtCiPct(s)}`;
}

/** The cost model and what modeled time assumes: printed wherever modeled figures are. */
export function modelLine(r: RunResult): string {
  if (!r.model) return 'modeled: cost model unknown (a result from before the model was recorded)';
  return `modeled: cost model ${r.model.costModel.name}@${r.model.costModel.version}; ${r.model.assumption}`;
}

function phaseTable(r: RunResult): string {
  const agg = r.repeats?.aggregate;
  if (!agg) return table(['phase', 'wall', 'modeled'], r.phases.map((p) => [p.name, fmtNs(p.wallNs), fmtNs(p.modeledNs)]));
  return table([`phase (median of ${r.repeats!.n})`, 'wall', 'wall [min..max]', '95% CI', 'modeled'],
    agg.phases.map((p) => [p.name, fmtNs(p.wall.median), `[${fmtNs(p.wall.min)}..${fmtNs(p.wall.max)}]`, fmtCiPct(p.wall), fmtSample(p.modeled)]));
}

export function renderText(r: RunResult): string {
  const out: string[] = [];
  out.push('');
  out.push(phaseTable(r));
  out.push(modelLine(r));
  out.push('');
  const statNames = ['pages_4k', 'pages_2m', 'pages_1g', 'remote_tlb_flush', 'remote_tlb_flush_requests', 'pf_taken', 'pf_fixed', 'pf_fast', 'pf_spurious', 'tlb_flush'];
  // Runs with MMIO accesses (the workload's MMIO knob) also show how the vCPUs exited for them.
  if (Object.values(r.stats).some((s) => ((s.total as Record<string, number>).mmio_exits ?? 0) > 0)) statNames.push('pf_emulate', 'mmio_exits');
  // guest-dirty keeps its stats as per-step deltas (its own lines), not per phase: no empty table.
  const statRows = Object.entries(r.stats);
  if (statRows.length > 0) {
    out.push(table(['stats after', ...statNames], statRows.map(([phase, s]) => [phase, ...statNames.map((n) => String((s.total as Record<string, number>)[n] ?? 0))])));
    out.push('');
  }
  const hist = Object.entries(r.histograms);
  const aggH = r.repeats?.aggregate.histograms;
  if (aggH && Object.keys(aggH).length > 0) {
    out.push(table([`histogram (median of runs)`, 'runs', 'p50', 'p90', 'p99', 'p99.9', 'max'],
      Object.entries(aggH).map(([k, h]) => [k, h.p50.n, fmtSampleShort(h.p50), fmtSampleShort(h.p90), fmtSampleShort(h.p99), fmtSampleShort(h.p999), fmtSampleShort(h.max)])));
    out.push('');
  } else if (hist.length > 0) {
    out.push(table(['histogram', 'count', 'min', 'p50', 'p90', 'p99', 'p99.9', 'max', 'mean'],
      hist.map(([k, h]) => [k, h.count, fmtNs(h.min), fmtNs(h.p50), fmtNs(h.p90), fmtNs(h.p99), fmtNs(h.p999), fmtNs(h.max), fmtNs(h.mean)])));
    out.push('');
  }
  out.push(`audit: ${r.audit.ok ? 'ok' : `${r.audit.violations.length} violation(s)`}`);
  for (const v of r.audit.violations.slice(0, 10)) out.push(`  ${v.vm === null ? 'host' : `vm ${v.vm}`}: ${v.kind}: ${v.detail}`);
  const memLine = (label: string, m: RunResult['memory']) =>
    `${label}: ${(m.sabBytes / 2 ** 20).toFixed(1)} MiB of shared state for ${m.guestPagesMapped} mapped guest pages = ${m.bytesPerGuestPage} B/page (RSS ${(m.rssBytes / 2 ** 20).toFixed(0)} MiB)`;
  if (r.passes) {
    for (const [mode, p] of Object.entries(r.passes)) {
      out.push(`${mode}: audit ${p.audit.ok ? 'ok' : `${p.audit.violations.length} violation(s)`}`);
      out.push(`  ${memLine('memory', p.memory)}`);
    }
  } else {
    out.push(memLine('memory', r.memory));
  }
  if (r.profiles) out.push(...profileTables(r.profiles));
  const h = r.host;
  out.push(`host: node ${h.node}, ${h.cpus} CPUs (${h.cpuModel}), load ${h.loadavg.before.map((x) => x.toFixed(2)).join('/')} -> ${h.loadavg.after.map((x) => x.toFixed(2)).join('/')}, CPU/wall ${h.cpuUsage.cpuPerWall}${h.stealPercent !== null ? `, steal ${h.stealPercent}%` : ''}${h.otherCores != null ? `, other processes ${h.otherCores} cores` : ''}, seed ${r.seed}`);
  // Notes about flags (e.g. a capped --workers) start with the flag; the rest are noise.
  for (const n of h.notes) out.push(`  ${n.startsWith('--') ? 'note' : 'noisy'}: ${n}`);
  if (r.repeats) {
    out.push(`repeats: ${r.repeats.n} runs (figures above: run 1's stats and audit, the median of all runs' times); CI: ${r.repeats.aggregate.ci}`);
    for (const n of r.repeats.aggregate.notes) out.push(`  ${n}`);
  }
  if (r.harness) out.push(`harness: ${r.harness.name} ${r.harness.version}, commit ${r.harness.commit ?? 'unknown'}${r.harness.dirty ? ' (with uncommitted changes)' : ''}`);
  if (r.status === 'failed' && r.error) out.push(`status: failed: ${r.error.message}`);
  return out.join('\n');
}

/** A script URL as a short location: a path relative to the working directory where it is a file. */
function location(url: string, line: number): string {
  if (url === '') return '';
  let path = url;
  if (url.startsWith('file://')) {
    path = fileURLToPath(url);
    const rel = relative(process.cwd(), path);
    if (!rel.startsWith('..')) path = rel;
  }
  return line > 0 ? `${path}:${line}` : path;
}

/** One self-time table per thread: what the thread's CPU went to (V8 states included). */
function profileTables(profiles: NonNullable<RunResult['profiles']>): string[] {
  const out: string[] = [];
  for (const p of profiles) {
    out.push(`profile ${p.thread}: ${p.file}`);
    out.push(table(['self', '%', 'function', 'location'], p.top.map((t) => [fmtNs(t.selfMs * 1e6), t.pct.toFixed(1), t.fn, location(t.url, t.line)]), [2, 3]));
    out.push('');
  }
  return out;
}
