/**
 * What the machine was doing while a run was measured: Node, CPUs, load average, process CPU
 * time against wall time, and steal time from /proc/stat. A 2-vCPU guest shares its cores;
 * reports flag a run whose CPU/wall ratio or steal says it was not alone.
 */
import { cpus, loadavg } from 'node:os';
import { readFileSync } from 'node:fs';

export interface HostSnapshot {
  wall: number;
  cpu: NodeJS.CpuUsage;
  steal: number | null;
  loadavg: number[];
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
  noisy: boolean;
  notes: string[];
}

function readSteal(): number | null {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
    const f = line.trim().split(/\s+/).slice(1).map(Number);
    return f[7] ?? null;
  } catch {
    return null;
  }
}

function totalJiffies(): number | null {
  try {
    const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    return f.reduce((a, b) => a + b, 0);
  } catch {
    return null;
  }
}

let jiffies0: number | null = null;

export function snapshot(): HostSnapshot {
  jiffies0 = totalJiffies();
  return { wall: performance.now(), cpu: process.cpuUsage(), steal: readSteal(), loadavg: loadavg() };
}

/** Describe the run from `start` to now; `busyThreads` is how many threads were meant to be busy. */
export function hostInfo(start: HostSnapshot, busyThreads: number): HostInfo {
  const wallUs = (performance.now() - start.wall) * 1000;
  const cpu = process.cpuUsage(start.cpu);
  const steal1 = readSteal();
  const j1 = totalJiffies();
  const stealPercent = start.steal !== null && steal1 !== null && jiffies0 !== null && j1 !== null && j1 > jiffies0
    ? Math.round(((steal1 - start.steal) / (j1 - jiffies0)) * 1000) / 10 : null;
  const n = cpus().length;
  const cpuPerWall = wallUs > 0 ? (cpu.user + cpu.system) / wallUs : 0;
  const la = loadavg();
  const notes: string[] = [];
  const expected = Math.min(busyThreads, n);
  if (la[0]! > n + 0.5) notes.push(`load average ${la[0]!.toFixed(2)} exceeds the ${n} CPUs: another process competed for them`);
  if (stealPercent !== null && stealPercent > 5) notes.push(`${stealPercent}% steal: the hypervisor ran something else on these vCPUs`);
  if (wallUs > 200_000 && cpuPerWall < expected * 0.6) notes.push(`CPU/wall ${cpuPerWall.toFixed(2)} for ${expected} busy threads: threads waited (lock, sleep or a busy machine)`);
  return {
    node: process.version, v8: process.versions.v8, platform: `${process.platform}-${process.arch}`, cpus: n,
    cpuModel: cpus()[0]?.model ?? 'unknown', loadavg: { before: start.loadavg, after: la },
    cpuUsage: { userUs: cpu.user, systemUs: cpu.system, wallUs: Math.round(wallUs), cpuPerWall: Math.round(cpuPerWall * 100) / 100 },
    stealPercent, noisy: notes.length > 0, notes,
  };
}
