/**
 * What the machine was doing while a run was measured: Node, CPUs, load average, process CPU
 * time against wall time, and from /proc/stat the steal time and the CPU other processes took.
 * A 2-vCPU guest shares its cores; reports flag a run whose CPU/wall ratio, steal or other
 * processes' CPU says it was not alone.
 */
import { cpus, loadavg } from 'node:os';
import { readFileSync } from 'node:fs';

export interface HostSnapshot {
  wall: number;
  cpu: NodeJS.CpuUsage;
  steal: number | null;
  loadavg: number[];
  /** /proc/stat at the start (busy, steal and total jiffies). */
  stat: ProcStat | null;
}

export interface HostInfo {
  node: string;
  v8: string;
  platform: string;
  cpus: number;
  cpuModel: string;
  loadavg: { before: number[]; after: number[] };
  cpuUsage: { userUs: number; systemUs: number; wallUs: number; cpuPerWall: number };
  stealPercent: number | null;
  /** Cores' worth of CPU other processes took during the run (from /proc/stat); null where unknown. */
  otherCores?: number | null;
  noisy: boolean;
  notes: string[];
}

export interface ProcStat {
  /** Busy jiffies (user + nice + system + irq + softirq) summed over CPUs. */
  busy: number;
  steal: number;
  total: number;
}

/** The first line of /proc/stat (all CPUs), or null where there is none (also the benchmarks' windows). */
export function readProcStat(): ProcStat | null {
  try {
    const f = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!.trim().split(/\s+/).slice(1).map(Number);
    const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = f;
    return { busy: user + nice + system + irq + softirq, steal, total: user + nice + system + idle + iowait + irq + softirq + steal };
  } catch {
    return null;
  }
}

/** USER_HZ: /proc/stat counts in 1/100 s on every Linux architecture Node runs on. */
const kClockTicks = 100;

export function snapshot(): HostSnapshot {
  const stat = readProcStat();
  return { wall: performance.now(), cpu: process.cpuUsage(), steal: stat?.steal ?? null, loadavg: loadavg(), stat };
}

/** Describe the run from `start` to now; `busyThreads` is how many threads were meant to be busy. */
export function hostInfo(start: HostSnapshot, busyThreads: number): HostInfo {
  const wallUs = (performance.now() - start.wall) * 1000;
  const cpu = process.cpuUsage(start.cpu);
  const stat0 = start.stat;
  const stat1 = readProcStat();
  const stealPercent = stat0 !== null && stat1 !== null && stat1.total > stat0.total
    ? Math.round(((stat1.steal - stat0.steal) / (stat1.total - stat0.total)) * 1000) / 10 : null;
  // CPU that anything but this process used, in cores (the machine's busy time less our own).
  const otherCores = stat0 !== null && stat1 !== null && wallUs > 0
    ? Math.round((Math.max(0, ((stat1.busy - stat0.busy) * 1e6) / kClockTicks - (cpu.user + cpu.system)) / wallUs) * 100) / 100 : null;
  const n = cpus().length;
  const cpuPerWall = wallUs > 0 ? (cpu.user + cpu.system) / wallUs : 0;
  const la = loadavg();
  const notes: string[] = [];
  const expected = Math.min(busyThreads, n);
  if (la[0]! > n + 0.5) notes.push(`load average ${la[0]!.toFixed(2)} exceeds the ${n} CPUs: another process competed for them`);
  if (stealPercent !== null && stealPercent > 5) notes.push(`${stealPercent}% steal: the hypervisor ran something else on these vCPUs`);
  // /proc/stat ticks every 10 ms: shorter runs are not judged by it.
  if (wallUs > 200_000 && otherCores !== null && otherCores > 0.25) notes.push(`other processes used ${otherCores} cores: they competed for the CPUs`);
  if (wallUs > 200_000 && cpuPerWall < expected * 0.6) notes.push(`CPU/wall ${cpuPerWall.toFixed(2)} for ${expected} busy threads: threads waited (lock, sleep or a busy machine)`);
  return {
    node: process.version, v8: process.versions.v8, platform: `${process.platform}-${process.arch}`, cpus: n,
    cpuModel: cpus()[0]?.model ?? 'unknown', loadavg: { before: start.loadavg, after: la },
    cpuUsage: { userUs: cpu.user, systemUs: cpu.system, wallUs: Math.round(wallUs), cpuPerWall: Math.round(cpuPerWall * 100) / 100 },
    stealPercent, otherCores, noisy: notes.length > 0, notes,
  };
}
