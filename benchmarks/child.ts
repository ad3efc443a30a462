/**
 * Running a scenario in a child process, so its memory is its own: peak RSS from GNU time
 * (`/usr/bin/time -f`, the kernel's ru_maxrss of the child) when it is installed, and from
 * polling /proc/<pid>/status VmHWM in any case (the poll can miss the last few hundred ms of
 * growth; time cannot). CPU time of the child comes from the same two sources.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const kGnuTime = '/usr/bin/time';

/** CPU ms of every child run so far (for windows that span several children). */
export let childCpuMsTotal = 0;

export interface ChildRun {
  argv: string[];
  exitCode: number | null;
  signal: string | null;
  timedOut: boolean;
  wallS: number;
  /** Peak RSS in bytes: GNU time's when available, else the VmHWM poll. */
  peakRssBytes: number | null;
  peakRssSource: 'gnu-time' | 'proc-vmhwm' | 'none';
  /** VmHWM as last polled (bytes), for comparison. */
  polledHwmBytes: number | null;
  /** Child CPU in ms (user + system), GNU time's when available, else the last /proc poll. */
  cpuMs: number | null;
  stdoutTail: string;
  stderrTail: string;
}

function tail(s: string, n = 2000): string {
  return s.length > n ? s.slice(s.length - n) : s;
}

function readHwm(pid: number): number | null {
  try {
    const m = /VmHWM:\s+(\d+)\s+kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

function readCpuMs(pid: number, clkTck: number): number | null {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    // Fields after the comm: state is f[0]; utime is field 14 overall, f[11]; stime f[12].
    return ((Number(f[11]) + Number(f[12])) * 1000) / clkTck;
  } catch {
    return null;
  }
}

/** The node process: the child itself, or GNU time's child. */
function nodePid(pid: number, wrapped: boolean): number | null {
  if (!wrapped) return pid;
  try {
    for (const t of readdirSync(`/proc/${pid}/task`)) {
      const kids = readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8').trim();
      if (kids) return Number(kids.split(/\s+/)[0]);
    }
  } catch {
    /* gone */
  }
  return null;
}

export async function runChild(cmd: string, args: string[], opts: { cwd: string; timeoutMs: number; pollMs?: number; clkTck?: number }): Promise<ChildRun> {
  const wrapped = existsSync(kGnuTime);
  const dir = mkdtempSync(join(tmpdir(), 'mmuh-bench-'));
  const timeOut = join(dir, 'time.txt');
  const argv = wrapped ? [kGnuTime, '-o', timeOut, '-f', '%M %e %U %S %x', cmd, ...args] : [cmd, ...args];
  const clk = opts.clkTck ?? 100;
  const t0 = performance.now();
  const child = spawn(argv[0]!, argv.slice(1), { cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout = tail(stdout + d, 20000)));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr = tail(stderr + d, 20000)));
  let hwm: number | null = null;
  let cpuMs: number | null = null;
  let target: number | null = null;
  const poll = setInterval(() => {
    if (child.pid === undefined) return;
    target ??= nodePid(child.pid, wrapped);
    if (target === null) return;
    const h = readHwm(target);
    if (h !== null) hwm = Math.max(hwm ?? 0, h);
    const c = readCpuMs(target, clk);
    if (c !== null) cpuMs = c;
  }, opts.pollMs ?? 200);
  let timedOut = false;
  const killer = setTimeout(() => {
    timedOut = true;
    if (child.pid !== undefined) {
      const n = nodePid(child.pid, wrapped);
      if (n !== null && n !== child.pid) {
        try {
          process.kill(n, 'SIGKILL');
        } catch {
          /* already gone */
        }
      }
    }
    child.kill('SIGKILL');
  }, opts.timeoutMs);
  const [exitCode, signal] = await new Promise<[number | null, string | null]>((resolve) => {
    child.on('close', (code, sig) => resolve([code, sig]));
  });
  clearInterval(poll);
  clearTimeout(killer);
  const wallS = (performance.now() - t0) / 1000;
  let peak: number | null = hwm;
  let source: ChildRun['peakRssSource'] = hwm !== null ? 'proc-vmhwm' : 'none';
  let code = exitCode;
  if (wrapped) {
    try {
      const text = readFileSync(timeOut, 'utf8').trim().split('\n');
      // "Command exited with non-zero status N" or "Command terminated by signal N" come first.
      const m = /^(\d+) ([\d.]+) ([\d.]+) ([\d.]+) (\d+)$/.exec(text[text.length - 1]!.trim());
      if (m) {
        peak = Number(m[1]) * 1024;
        source = 'gnu-time';
        cpuMs = (Number(m[3]) + Number(m[4])) * 1000;
        code = Number(m[5]);
      }
      const sig = text.map((l) => /terminated by signal (\d+)/.exec(l)).find((x) => x);
      if (sig) return finish(null, `signal ${sig[1]}`);
    } catch {
      /* time did not write (killed): keep the poll */
    }
  }
  return finish(code, signal);

  function finish(c: number | null, s: string | null): ChildRun {
    rmSync(dir, { recursive: true, force: true });
    childCpuMsTotal += cpuMs ?? 0;
    return {
      argv, exitCode: c, signal: s, timedOut, wallS, peakRssBytes: peak, peakRssSource: source, polledHwmBytes: hwm, cpuMs,
      stdoutTail: tail(stdout), stderrTail: tail(stderr),
    };
  }
}
