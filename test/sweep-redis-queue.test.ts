/**
 * Distributed sweeps on BullMQ with a real Redis (Debian's redis-server on a free loopback port):
 * 8 cells over 2 worker processes, one SIGKILLed mid-cell — its run is retried on the other
 * worker (BullMQ's stalled-job check), its orphaned child exits, and every cell is in the merged
 * result exactly once; one-worker results through the queue equal a local sweep's; a run that
 * fails twice is a failed cell and the sweep finishes; an unreachable Redis is one line and exit 2
 * within seconds; a worker of another harness commit is refused by name.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { kBin, mmuh, oneLine } from './fixtures/mmuh.js';
import { startRedis, type RedisHandle } from './fixtures/redis-server.js';
import { figures, readSweep, writeSweep } from './fixtures/sweep.js';

let redis: RedisHandle | null = null;
let tmp: string;

beforeAll(async () => {
  redis = await startRedis();
  if (redis === null) console.warn('redis-server not installed (apt-get install redis-server): the queue tests skip');
  tmp = mkdtempSync(join(tmpdir(), 'mmuh-sweep-redis-'));
});

afterAll(async () => {
  await redis?.stop();
  rmSync(tmp, { recursive: true, force: true });
});

interface Proc {
  child: ChildProcess;
  out: string;
  err: string;
  exited: Promise<number | null>;
}

function start(args: string[], env: Record<string, string> = {}): Proc {
  const child = spawn(process.execPath, [kBin, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const p: Proc = { child, out: '', err: '', exited: new Promise((r) => child.on('exit', (code) => r(code))) };
  child.stdout!.setEncoding('utf8').on('data', (s: string) => { p.out += s; });
  child.stderr!.setEncoding('utf8').on('data', (s: string) => { p.err += s; });
  return p;
}

async function until(what: string, cond: () => boolean, ms = 60_000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** The children of `pid` (from /proc/<pid>/stat's ppid field). */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid) out.push(Number(d));
    } catch {
      // exited meanwhile
    }
  }
  return out;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return !readFileSync(`/proc/${pid}/stat`, 'utf8').includes(') Z ');
  } catch {
    return false;
  }
}

/**
 * A short job lock (`lockMs`) makes a SIGKILLed worker's run come back within seconds; only the
 * kill test needs it. Elsewhere the lock is long: on a loaded 2-CPU CI machine a worker process
 * can miss its lock renewal (every lockMs / 2) for over 1.5 s, and BullMQ then counts a live run
 * as stalled (twice: failed).
 */
const worker = (name: string, queue: string, extra: string[] = [], lockMs = 20_000) =>
  ['worker', '--queue', redis!.url, '--queue-name', queue, '--name', name, '--lock-duration', String(lockMs), '--stalled-interval', '500', '--idle-exit', '3', ...extra];

describe.skipIf(process.platform !== 'linux')('mmuh sweep --queue (BullMQ on Redis)', () => {
  it('runs 8 cells on 2 workers; a worker SIGKILLed mid-cell has its run retried elsewhere, each cell counted once', async (ctx) => {
    if (redis === null) return ctx.skip();
    // Cells that mostly sleep (every userfault resolution waits -d µs for real), the first ones
    // (which the workers take first) 2-2.6 s long: the kill lands mid-run however loaded the
    // machine is, and an orphan would run on for seconds.
    const f = writeSweep(tmp, 'kill.yaml', 'name: kill\nscenario: demand-paging\nseed: 3\nbase: { vcpus: 1, workers: 1, uffd-mode: MISSING, uffd-delay-wall: true }\naxes:\n  uffd-delay: [2000, 500]\n  bytes: [4M, 5M, 6M, 7M]\n');
    const w1 = start(worker('w1', 'q-kill', [], 1500));
    const w2 = start(worker('w2', 'q-kill', [], 1500));
    const coord = start(['sweep', f, '--queue', redis.url, '--queue-name', 'q-kill', '--out', join(tmp, 'kill')]);
    // w1 has started a run and its child mmuh run exists: kill w1 there, mid-cell.
    await until('w1 to take a run', () => /\(try \d+\)/.test(w1.out));
    const killedRun = /worker w1: (\S+) \(try \d+\)/.exec(w1.out)![1]!;
    let orphan: number[] = [];
    await until('w1 to start the run', () => (orphan = childrenOf(w1.child.pid!)).length > 0);
    w1.child.kill('SIGKILL');
    await w1.exited;
    // The child watches its stdin: with w1 gone it exits at once (its run has seconds to go), not
    // running on unseen beside the retry.
    await until('the orphaned run to exit', () => !alive(orphan[0]!), 1500);
    const code = await coord.exited;
    await w2.exited;
    expect(coord.err).not.toMatch(/mmuh: (?!note)/);
    expect(code).toBe(0);
    expect(coord.err).toContain('worker w1 on ');
    expect(coord.err).toContain('worker w2 on ');
    const s = readSweep(join(tmp, 'kill', 'sweep.json'));
    expect(s.executor.mode).toBe('queue');
    expect(s.summary).toEqual({ cells: 8, ok: 8, failed: 0, missing: 0, runs: 8 });
    const ids = s.cells.map((c) => c.id);
    expect(new Set(ids).size).toBe(8);
    for (const c of s.cells) {
      expect(c.runs).toHaveLength(1);
      expect(c.result!.repeats).toBeUndefined();
      expect(c.merged!.runs).toBe(1);
    }
    const retried = s.cells.flatMap((c) => c.runs).find((r) => r.runId === killedRun)!;
    expect(retried.worker).toBe('w2');
    expect(retried.attempts).toBeGreaterThanOrEqual(2);
    // The coordinator counted each run once.
    expect(coord.err.match(/\] \S+ ok/g)).toHaveLength(8);
  }, 240_000);

  it('a coordinator killed mid-sweep and started again enqueues nothing twice and runs every cell once', async (ctx) => {
    if (redis === null) return ctx.skip();
    const f = writeSweep(tmp, 'restart.yaml', 'name: restart\nscenario: dirty-log-perf\nseed: 4\nbase: { vcpus: 1, workers: 1, iterations: 2 }\naxes:\n  dirty: [pml, wrprot]\n  bytes: [128M, 192M, 256M]\n');
    const w = start(worker('wr', 'q-restart', ['--idle-exit', '4']));
    const args = ['sweep', f, '--queue', redis.url, '--queue-name', 'q-restart', '--out', join(tmp, 'restart')];
    const first = start(args);
    await until('two runs collected', () => (first.err.match(/\] \S+ ok/g) ?? []).length >= 2);
    first.child.kill('SIGKILL');
    await first.exited;
    const second = start(args);
    expect(await second.exited, second.err).toBe(0);
    await w.exited;
    const s = readSweep(join(tmp, 'restart', 'sweep.json'));
    expect(s.summary).toEqual({ cells: 6, ok: 6, failed: 0, missing: 0, runs: 6 });
    // The worker ran each run once: the restart re-added nothing that was queued or done.
    const taken = [...w.out.matchAll(/worker wr: (\S+) \(try \d+\)/g)].map((m) => m[1]!);
    expect(taken.sort()).toEqual(s.cells.map((c) => `${c.id}#1`).sort());
  }, 240_000);

  it('one-worker cells through the queue equal a local sweep of the same file', async (ctx) => {
    if (redis === null) return ctx.skip();
    const f = writeSweep(tmp, 'same.yaml', 'name: same\nscenario: dirty-log-perf\nseed: 9\nrepeat: 2\nbase: { vcpus: 1, workers: 1, iterations: 2 }\naxes:\n  dirty: [pml, wrprot]\n  bytes: [8M, 16M]\n');
    const local = mmuh(['sweep', f, '--out', join(tmp, 'same-local'), '-q']);
    expect(local.code).toBe(0);
    const w = start(worker('solo', 'q-same'));
    const coord = start(['sweep', f, '--queue', redis.url, '--queue-name', 'q-same', '--out', join(tmp, 'same-queue'), '-q']);
    expect(await coord.exited, coord.err).toBe(0);
    await w.exited;
    const q = readSweep(join(tmp, 'same-queue', 'sweep.json'));
    expect(q.executor.workers).toEqual(['solo']);
    expect(q.cells.flatMap((c) => c.runs.map((r) => r.worker))).toEqual(Array(8).fill('solo'));
    expect(figures(q)).toEqual(figures(readSweep(join(tmp, 'same-local', 'sweep.json'))));
  }, 240_000);

  it('reports a run that fails twice as a failed cell with its error, and finishes', async (ctx) => {
    if (redis === null) return ctx.skip();
    const f = writeSweep(tmp, 'fail.yaml', 'name: fail\nscenario: dirty-log-perf\nbase: { vcpus: 1, workers: 1, host-memory: 36M }\naxes:\n  bytes: [8M, 40M]\n');
    const w = start(worker('wf', 'q-fail'));
    const coord = start(['sweep', f, '--queue', redis.url, '--queue-name', 'q-fail', '--out', join(tmp, 'fail'), '-q']);
    expect(await coord.exited).toBe(1);
    await w.exited;
    expect(coord.err).toMatch(/mmuh: cell bytes=40M failed: bytes=40M#1: EFAULT: KVM_RUN: host out of memory/);
    expect(w.out.match(/bytes=40M#1 \(try \d\)/g)).toEqual(['bytes=40M#1 (try 1)', 'bytes=40M#1 (try 2)']);
    const s = readSweep(join(tmp, 'fail', 'sweep.json'));
    expect(s.summary).toMatchObject({ cells: 2, ok: 1, failed: 1 });
    expect(s.cells[1]!.runs[0]).toMatchObject({ status: 'failed', attempts: 2 });
  }, 120_000);

  it('refuses a worker of another harness commit by name; the admitted worker runs the sweep', async (ctx) => {
    if (redis === null) return ctx.skip();
    const f = writeSweep(tmp, 'ver.yaml', 'name: ver\nscenario: dirty-log-perf\nbase: { vcpus: 1, workers: 1, iterations: 2, bytes: 8M }\naxes:\n  dirty: [pml, wrprot]\n');
    const bad = start(worker('old-build', 'q-ver'), { MMUH_GIT_COMMIT: '0123456789abcdef0123456789abcdef01234567' });
    await until('the old worker to register', () => bad.out.includes('waiting for a coordinator'));
    const good = start(worker('good', 'q-ver'));
    const coord = start(['sweep', f, '--queue', redis.url, '--queue-name', 'q-ver', '--out', join(tmp, 'ver')]);
    expect(await bad.exited).toBe(2);
    expect(oneLine({ err: bad.err })).toMatch(/^mmuh: EPERM: worker old-build refused: it is kvm-mmu-harness \S+ \(commit 0123456789abcdef0123456789abcdef01234567\), sweep ver-[0-9a-f]{8} is /);
    expect(await coord.exited, coord.err).toBe(0);
    await good.exited;
    expect(coord.err).toMatch(/worker old-build on \S+ refused: it is kvm-mmu-harness \S+ \(commit 0123456789abcdef/);
    const s = readSweep(join(tmp, 'ver', 'sweep.json'));
    expect(s.executor.workers).toEqual(['good']);
    expect(s.cells.flatMap((c) => c.runs.map((r) => r.worker))).toEqual(['good', 'good']);
  }, 120_000);

  it('an unreachable Redis is one line and exit 2 within seconds, for the coordinator and a worker', async (ctx) => {
    if (redis === null) return ctx.skip();
    const f = writeSweep(tmp, 'nowhere.yaml', 'scenario: dirty-log-perf\nbase: { bytes: 8M }\naxes:\n  dirty: [pml]\n');
    // A port nothing listens on: Redis's own, now stopped, is the one certainly free.
    const dead = `redis://127.0.0.1:${redis.port + 1 === 65536 ? 1 : redis.port + 1}/0`;
    for (const args of [['sweep', f, '--queue', dead, '--out', join(tmp, 'nowhere')], ['worker', '--queue', dead]]) {
      const t0 = Date.now();
      const r = mmuh(args);
      expect(Date.now() - t0).toBeLessThan(10_000);
      expect(r.code).toBe(2);
      expect(oneLine(r)).toMatch(/^mmuh: ECONNREFUSED: --queue redis:\/\/127\.0\.0\.1:\d+\/0: cannot reach Redis \(connect ECONNREFUSED/);
    }
  }, 60_000);
});
