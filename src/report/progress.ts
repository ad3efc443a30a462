/**
 * The live view of a run on a terminal: a progress line for the running vCPU phase (bar, rate
 * in guest pages/s and faults/s, ETA) and, with --watch, kvm_stat's table of the main KVM stats
 * (tools/kvm/kvm_stat/kvm_stat: Event / Total / %Total / CurAvg/s, sorted by the change in the
 * last interval, then the total; a Total row; refreshed 0.25 s after the start and then every
 * --watch-delay seconds, 3 by default, as kvm_stat's DELAY_INITIAL / DELAY_DEFAULT).
 *
 * It is drawn from the main thread at most 10 times a second, in place: the block is erased
 * (`\r`, ESC[2K erase line, ESC[1A up a line) and written again, and every ordinary output
 * line goes through print(), which erases the block, writes the line and redraws, so the
 * selftest lines scroll above it. When the run ends the block is erased: what stays on the
 * screen is what a pipe gets. Nothing of it exists off a terminal (createLiveView() gives null
 * when the stream is not a TTY, or with --quiet). Colour (bold phase name, green bar) is off
 * with NO_COLOR set to anything but "" (no-color.org) or TERM=dumb; a dumb terminal also has no
 * cursor motion, so it gets the progress line alone, rewritten after `\r`, and no --watch table.
 * Each line is cut to the terminal's width so it never wraps, which would break the erase.
 */
import type { PhaseObserver, PhaseProbe } from '../scenario/phase-observer.js';

/** What the view needs of a stream: process.stdout, or a fake in tests. */
export interface LiveStream {
  readonly isTTY?: boolean;
  readonly columns?: number;
  readonly rows?: number;
  write(s: string): unknown;
}

export interface LiveOptions {
  quiet?: boolean;
  watch?: boolean;
  /** Seconds between --watch refreshes (kvm_stat -s). */
  watchDelay?: number;
  env?: Readonly<Record<string, string | undefined>>;
  /** Milliseconds, monotonic. */
  now?: () => number;
  /** Redraw on a timer (off in tests, which call tick()). */
  timer?: boolean;
}

const kRefreshMs = 100;
/** kvm_stat's DELAY_INITIAL: the first table comes quickly. */
const kWatchInitialMs = 250;
/** The rate is taken over the last second of samples. */
const kRateWindowMs = 1000;
/** Room kept for " 100%  999.99k pages/s  999.99k faults/s  59:59 ETA 59:59". */
const kTailWidth = 56;

const ESC = '\x1b[';
const kEraseLine = `\r${ESC}2K`;
const kUp = `${ESC}1A`;

/** Colour unless NO_COLOR is set and not empty, or TERM is dumb. */
export function colorEnabled(env: Readonly<Record<string, string | undefined>>): boolean {
  return !((env.NO_COLOR !== undefined && env.NO_COLOR !== '') || env.TERM === 'dumb');
}

/** The live view, or null where there must be none (not a terminal, --quiet). */
export function createLiveView(stream: LiveStream, o: LiveOptions = {}): LiveView | null {
  if (stream.isTTY !== true || o.quiet === true) return null;
  return new LiveView(stream, o);
}

interface Running {
  probe: PhaseProbe;
  t0: number;
  /** Recent samples (time, accesses, faults) for the rate. */
  hist: { t: number; a: number; f: number }[];
}

interface WatchState {
  stats: () => Record<string, number>;
  prev: Record<string, number>;
  prevT: number;
  nextT: number;
  lines: string[];
}

export class LiveView implements PhaseObserver {
  private readonly color: boolean;
  private readonly cursor: boolean;
  private readonly now: () => number;
  private readonly watchDelayMs: number;
  private phase: Running | null = null;
  private watch: WatchState | null = null;
  /** Lines of the block now on screen. */
  private drawn = 0;
  private timer: ReturnType<typeof setInterval> | null = null;
  private closed = false;

  constructor(private readonly stream: LiveStream, private readonly o: LiveOptions) {
    const env = o.env ?? process.env;
    this.color = colorEnabled(env);
    this.cursor = env.TERM !== 'dumb';
    this.now = o.now ?? (() => performance.now());
    this.watchDelayMs = (o.watchDelay ?? 3) * 1000;
  }

  /** An ordinary output line (a selftest line): above the live block. */
  print(line: string): void {
    this.erase();
    this.stream.write(line + '\n');
    this.draw();
  }

  runStart(stats: () => Record<string, number>): void {
    if (this.closed || this.o.watch !== true || !this.cursor) return;
    const t = this.now();
    this.watch = { stats, prev: stats(), prevT: t, nextT: t + kWatchInitialMs, lines: [] };
    this.ensureTimer();
  }

  phaseStart(p: PhaseProbe): void {
    if (this.closed) return;
    const t = this.now();
    this.phase = { probe: p, t0: t, hist: [{ t, a: 0, f: 0 }] };
    this.ensureTimer();
    this.tick();
  }

  phaseEnd(name: string): void {
    if (this.phase?.probe.name !== name) return;
    this.phase = null;
    this.tick();
  }

  runEnd(): void {
    // The next pass (another Runner) may start a new one; the table goes with this one.
    this.watch = null;
    this.tick();
  }

  /** Sample and redraw (the timer calls it every 100 ms). */
  tick(): void {
    if (this.closed) return;
    const t = this.now();
    if (this.phase) {
      const s = this.phase.probe.sample();
      const h = this.phase.hist;
      h.push({ t, a: s.accesses, f: s.faults });
      while (h.length > 2 && h[1]!.t <= t - kRateWindowMs) h.shift();
    }
    const w = this.watch;
    if (w && t >= w.nextT) {
      const cur = w.stats();
      w.lines = watchTable(cur, w.prev, (t - w.prevT) / 1000, this.watchRows());
      w.prev = cur;
      w.prevT = t;
      w.nextT = t + this.watchDelayMs;
    }
    this.erase();
    this.draw();
    if (!this.phase && !this.watch) this.stopTimer();
  }

  /** Erase the block and stop; the screen keeps only what print() wrote. */
  close(): void {
    if (this.closed) return;
    this.erase();
    this.stopTimer();
    this.closed = true;
  }

  /** The block as it would be drawn now, without escapes (tests, and the width cut). */
  frame(): string[] {
    const lines: string[] = [];
    if (this.phase) lines.push(this.progressLine(this.phase));
    if (this.watch && this.watch.lines.length > 0) lines.push(...this.watch.lines);
    return lines;
  }

  private watchRows(): number {
    // kvm_stat stops at the bottom of the screen; leave room for the progress line and a prompt.
    return Math.max(3, (this.stream.rows || 24) - 4);
  }

  private progressLine(r: Running): string {
    const p = r.probe;
    const h = r.hist;
    const last = h[h.length - 1]!;
    const first = h[0]!;
    const dt = (last.t - first.t) / 1000;
    const rateA = dt > 0 ? (last.a - first.a) / dt : 0;
    const rateF = dt > 0 ? (last.f - first.f) / dt : 0;
    const frac = p.totalAccesses > 0 ? Math.min(1, last.a / p.totalAccesses) : 0;
    const left = Math.max(0, p.totalAccesses - last.a);
    const eta = rateA > 0 ? fmtDuration(left / rateA) : '--:--';
    const elapsed = fmtDuration((last.t - r.t0) / 1000);
    const tail = ` ${(frac * 100).toFixed(0).padStart(3)}%  ${si(rateA)} pages/s  ${si(rateF)} faults/s  ${elapsed} ETA ${eta}`;
    // The bar's width is set by the terminal, not by the tail, so it does not jump as rates grow.
    const barWidth = Math.max(10, Math.min(40, this.width() - p.name.length - kTailWidth - 3));
    const filled = Math.round(frac * barWidth);
    const bar = '#'.repeat(filled) + '-'.repeat(barWidth - filled);
    return `${p.name} [${bar}]${tail}`;
  }

  private width(): number {
    return Math.max(20, (this.stream.columns || 80) - 1);
  }

  /** Colour and cut one line to the width (colour only where the line was not cut). */
  private styled(line: string, isProgress: boolean): string {
    const w = this.width();
    if (line.length > w) return line.slice(0, w);
    if (!this.color) return line;
    const bold = (t: string) => `${ESC}1m${t}${ESC}0m`;
    if (isProgress && this.phase) {
      // "<name> [###---]…": the name bold, the filled part of the bar green.
      const n = this.phase.probe.name.length;
      return bold(line.slice(0, n)) + line.slice(n).replace(/\[(#*)/, `[${ESC}32m$1${ESC}0m`);
    }
    // kvm_stat's title, column header and Total row are bold (A_BOLD / A_STANDOUT there).
    return /^(kvm statistics| Event | Total )/.test(line) ? bold(line) : line;
  }

  private draw(): void {
    if (this.closed) return;
    const lines = this.frame();
    if (!this.cursor) lines.splice(1);
    if (lines.length === 0) return;
    const out = lines.map((l, i) => this.styled(l, i === 0 && this.phase !== null));
    // A dumb terminal only has \r: the one line is rewritten over itself, padded over the old.
    this.stream.write(this.cursor ? out.join('\n') : `\r${out[0]!.padEnd(this.width())}`);
    this.drawn = out.length;
  }

  private erase(): void {
    if (this.drawn === 0) return;
    this.stream.write(this.cursor ? kEraseLine + (kUp + `${ESC}2K`).repeat(this.drawn - 1) : `\r${' '.repeat(this.width())}\r`);
    this.drawn = 0;
  }

  private ensureTimer(): void {
    if (this.timer || this.o.timer === false) return;
    this.timer = setInterval(() => this.tick(), kRefreshMs);
    // Never what keeps the process alive.
    this.timer.unref();
  }

  private stopTimer(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }
}

/**
 * kvm_stat's table: header '%-40s %10s%7s %8s', rows '%-40s %10d%7.1f %8s' sorted by (delta,
 * total) descending and ending at the first stat with neither, then the Total row; CurAvg/s is
 * the change over the interval divided by its length, blank when nothing changed.
 */
export function watchTable(cur: Record<string, number>, prev: Record<string, number>, intervalS: number, maxRows: number): string[] {
  const rows = Object.entries(cur).map(([k, v]) => ({ k, v, d: v - (prev[k] ?? 0) }));
  rows.sort((a, b) => b.d - a.d || b.v - a.v || (a.k < b.k ? -1 : 1));
  const total = rows.reduce((s, r) => s + r.v, 0);
  const out = ['kvm statistics - summary', ` ${'Event'.padEnd(40)} ${'Total'.padStart(10)}${'%Total'.padStart(7)} ${'CurAvg/s'.padStart(8)}`];
  let tavg = 0;
  for (const r of rows) {
    if (out.length - 2 >= maxRows - 3) break;
    if (r.v === 0 && r.d === 0) break;
    const cur = r.d !== 0 && intervalS > 0 ? Math.round(r.d / intervalS) : null;
    if (cur !== null) tavg += cur;
    const pct = total !== 0 ? ((r.v * 100) / total).toFixed(1) : '0.0';
    out.push(` ${r.k.padEnd(40)} ${String(Math.round(r.v)).padStart(10)}${pct.padStart(7)} ${(cur === null ? '' : String(cur)).padStart(8)}`);
  }
  if (out.length === 2) out.push(' No matching events reported yet');
  else out.push(` ${'Total'.padEnd(40)} ${String(Math.round(total)).padStart(10)}${''.padStart(7)} ${(tavg ? String(tavg) : '').padStart(8)}`);
  return out;
}

/** 1234 -> "1.23k", 1.5e6 -> "1.50M": rates at a glance. */
export function si(x: number): string {
  if (!Number.isFinite(x) || x < 0) return '-';
  for (const [u, s] of [[1e9, 'G'], [1e6, 'M'], [1e3, 'k']] as const) if (x >= u) return `${(x / u).toFixed(2)}${s}`;
  return x.toFixed(0);
}

/** Seconds as m:ss (h:mm:ss past an hour). */
export function fmtDuration(s: number): string {
  if (!Number.isFinite(s)) return '--:--';
  const t = Math.round(s);
  const h = Math.floor(t / 3600);
  const m = Math.floor((t % 3600) / 60);
  const ss = String(t % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}
