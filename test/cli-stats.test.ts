// `mmuh stats FILE|-` on the harness's own KVM_GET_STATS_FD bytes (VM and vCPU): every stat
// printed as kvm_stat -1 prints it, with the values getStats() reports; stdin; --json; and the
// exit-2 one-line errors for a missing file and a buffer that is not a KVM stats layout.
import { afterAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Host } from '../src/host/host.js';
import { Vm } from '../src/kvm/vm.js';
import { parseBinaryStats } from '../src/kvm/stats-parse.js';
import { kBin, mmuh, oneLine } from './fixtures/mmuh.js';
import { kMiB, range, threadCtx } from './fixtures/vm-ctx.js';

const dir = mkdtempSync(join(tmpdir(), 'mmuh-stats-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function harnessStats() {
  const host = Host.create({ memory: 64 * kMiB, hugepages2m: 2 });
  const vm = Vm.create(host, 0, threadCtx(host));
  const hva = vm.mmap({ size: 4 * kMiB, backing: 'anonymous_hugetlb_2mb' });
  vm.setUserMemoryRegion2({ slot: 0, flags: 0, guestPhysAddr: 0, memorySize: 4 * kMiB, userspaceAddr: hva });
  const vcpu = vm.createVcpu(3);
  vcpu.run(range(0, 1024), 4096, null);
  vm.invalidateRange(0, 1);
  return { vm, vcpu };
}

const kvmStatLine = (name: string, v: number) => `${name.padEnd(42)}${String(v).padStart(10)}`;

describe('mmuh stats on the harness\'s getStatsFd() bytes', () => {
  const { vm, vcpu } = harnessStats();
  const vmFile = join(dir, 'vm.stats');
  const vcpuFile = join(dir, 'vcpu.stats');
  writeFileSync(vmFile, vm.getStatsFd());
  writeFileSync(vcpuFile, vcpu.getStatsFd());

  it('VM: every x86 VM stat, sorted by name, with the value getStats() reads', () => {
    const r = mmuh(['stats', vmFile]);
    expect(r.code).toBe(0);
    const s = vm.getStats() as Record<string, number>;
    expect(s.pages_2m).toBeGreaterThan(0);
    expect(r.out.trimEnd().split('\n')).toEqual(Object.keys(s).sort().map((n) => kvmStatLine(n, s[n]!)));
  });

  it('vCPU from stdin (-): scalars as getStats(), the three halt-poll log2 histograms with their sample counts', () => {
    const r = spawnSync(process.execPath, [kBin, 'stats', '-'], { input: vcpu.getStatsFd(), encoding: 'utf8' });
    expect(r.status).toBe(0);
    const lines = r.stdout.trimEnd().split('\n');
    const s = vcpu.getStats() as Record<string, number>;
    expect(s.pf_taken).toBe(2);
    for (const [n, v] of Object.entries(s)) expect(lines).toContain(kvmStatLine(n, v));
    for (const h of ['halt_poll_success_hist', 'halt_poll_fail_hist', 'halt_wait_hist']) expect(lines).toContain(`${kvmStatLine(h, 0)}  log2 histogram, 32 buckets`);
    expect(lines.length).toBe(Object.keys(s).length + 3);
  });

  it('--json round-trips the harness\'s descriptors and values', () => {
    const r = mmuh(['stats', '--json', vcpuFile]);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.out) as { id: string; stats: { name: string; value?: number; type: string; offset: number }[] };
    expect(j.id).toBe(`kvm-${process.pid}/vcpu-3`);
    const p = parseBinaryStats(vcpu.getStatsFd());
    expect(j.stats.map((s) => [s.name, s.type, s.offset])).toEqual(p.stats.map((s) => [s.name, s.type, s.offset]));
    expect(j.stats.find((s) => s.name === 'pf_taken')!.value).toBe(2);
  });

  it('a missing file: exit 2, one line with ENOENT', () => {
    const r = mmuh(['stats', join(dir, 'nope')]);
    expect(r.code).toBe(2);
    expect(oneLine(r)).toMatch(/^mmuh: stats: ENOENT: cannot read '.*nope': no such file or directory$/);
  });

  it('not a KVM stats buffer: exit 2, one line with EINVAL and the field', () => {
    const bad = join(dir, 'bad.stats');
    writeFileSync(bad, vm.getStatsFd().subarray(0, 100));
    const r = mmuh(['stats', bad]);
    expect(r.code).toBe(2);
    expect(oneLine(r)).toMatch(/^mmuh: stats: .*bad\.stats: EINVAL: binary stats: num_desc 15 descriptors .* the buffer has 100/);
  });

  it('no file, two files, an unknown flag: exit 2 with usage', () => {
    for (const args of [['stats'], ['stats', vmFile, vcpuFile], ['stats', '--bogus', vmFile]]) {
      const r = mmuh(args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(oneLine(r)).toMatch(/give one FILE|unknown flag/);
    }
  });
});
