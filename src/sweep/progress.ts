/**
 * A sweep's progress on stderr: on a terminal one status line redrawn in place (done / running /
 * failed, elapsed, the runs in flight); elsewhere (a CI log, a Kubernetes pod) one line per
 * finished run, so logs stay readable.
 */
export interface SweepProgress {
  start(total: number, done: number): void;
  running(runId: string, delta: 1 | -1): void;
  retry(runId: string, attempt: number): void;
  finished(runId: string, status: string, ms: number, error: string | null): void;
  /** A free-form line (the coordinator's worker roll call). */
  say(line: string): void;
  close(): void;
}

export interface ProgressStream {
  isTTY?: boolean;
  write(s: string): unknown;
}

export function sweepProgress(stream: ProgressStream, quiet: boolean): SweepProgress {
  let total = 0;
  let done = 0;
  let failed = 0;
  const inFlight = new Set<string>();
  const t0 = performance.now();
  const tty = stream.isTTY === true;
  const elapsed = () => {
    const s = Math.floor((performance.now() - t0) / 1000);
    return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
  };
  const draw = () => {
    if (!tty || quiet) return;
    const runs = [...inFlight].slice(0, 3).join(' ');
    stream.write(`\r\x1b[2K[${done}/${total} done, ${inFlight.size} running${failed ? `, ${failed} failed` : ''}] ${elapsed()}  ${runs}`);
  };
  const line = (s: string) => {
    if (quiet) return;
    stream.write(tty ? `\r\x1b[2K${s}\n` : `${s}\n`);
    draw();
  };
  return {
    start(t, d) {
      total = t;
      done = d;
      if (d > 0) line(`sweep: ${d} of ${t} runs already complete (--resume)`);
      draw();
    },
    running(id, delta) {
      if (delta > 0) inFlight.add(id);
      else inFlight.delete(id);
      draw();
    },
    retry(id, attempt) {
      line(`sweep: ${id}: try ${attempt}`);
    },
    finished(id, status, ms, error) {
      done++;
      if (status === 'failed') failed++;
      line(`sweep: [${done}/${total}] ${id} ${status} ${(ms / 1000).toFixed(1)} s${error ? `: ${error}` : ''}`);
    },
    say(s) {
      line(`sweep: ${s}`);
    },
    close() {
      if (tty && !quiet) stream.write('\r\x1b[2K');
    },
  };
}
