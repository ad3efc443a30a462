// `mmuh stats` on bytes saved from the machine's real KVM: fixtures/kvm-stats-fd.c (built here
// with cc) creates a VM and a vCPU and saves both KVM_GET_STATS_FD files. Skipped, with the
// reason, where there is no /dev/kvm, no C compiler, or KVM refuses (exit 4 from the fixture).
import { describe, expect, it } from 'vitest';
import { accessSync, constants, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseBinaryStats } from '../src/kvm/stats-parse.js';
import { mmuh } from './fixtures/mmuh.js';

const kSource = join(__dirname, 'fixtures', 'kvm-stats-fd.c');

/** Build and run the fixture: the two files, or why it cannot run here. */
function saveRealStats(dir: string): { vm: string; vcpu: string } | { skip: string } {
  try {
    accessSync('/dev/kvm', constants.R_OK | constants.W_OK);
  } catch (e) {
    return { skip: `/dev/kvm is not usable here (${(e as NodeJS.ErrnoException).code})` };
  }
  const exe = join(dir, 'kvm-stats-fd');
  const cc = spawnSync('cc', ['-O2', '-Wall', '-o', exe, kSource], { encoding: 'utf8' });
  if (cc.error || cc.status !== 0) return { skip: `cannot build ${kSource} with cc: ${cc.error?.message ?? cc.stderr.trim()}` };
  const vm = join(dir, 'vm.stats');
  const vcpu = join(dir, 'vcpu.stats');
  const r = spawnSync(exe, [vm, vcpu], { encoding: 'utf8' });
  if (r.status === 4) return { skip: `KVM refused: ${r.stderr.trim()}` };
  if (r.status !== 0) throw new Error(`kvm-stats-fd exited ${r.status}: ${r.stderr}`);
  return { vm, vcpu };
}

describe('mmuh stats on a real KVM_GET_STATS_FD', () => {
  it('VM and vCPU files parse; the generic and x86 stat names are there', (ctx) => {
    const dir = mkdtempSync(join(tmpdir(), 'mmuh-real-stats-'));
    try {
      const saved = saveRealStats(dir);
      if ('skip' in saved) return ctx.skip(saved.skip);
      const vm = parseBinaryStats(readFileSync(saved.vm));
      expect(vm.id).toMatch(/^kvm-\d+$/);
      const vmNames = vm.stats.map((s) => s.name);
      // KVM_GENERIC_VM_STATS() and x86's kvm_vm_stats_desc[] (present since 5.14 / 5.15).
      for (const n of ['remote_tlb_flush', 'remote_tlb_flush_requests', 'mmu_shadow_zapped', 'pages_4k', 'pages_2m', 'pages_1g', 'nx_lpage_splits', 'max_mmu_page_hash_collisions']) {
        expect(vmNames).toContain(n);
      }
      const vcpu = parseBinaryStats(readFileSync(saved.vcpu));
      expect(vcpu.id).toMatch(/^kvm-\d+\/vcpu-0$/);
      const hist = vcpu.stats.find((s) => s.name === 'halt_wait_hist');
      // STATS_DESC_LOGHIST_TIME_NSEC: log2 buckets of nanoseconds (size HALT_POLL_HIST_COUNT, 32 on today's kernels).
      expect(hist).toMatchObject({ type: 'LOG_HIST', unit: 'SECONDS', exponent: -9, bucketSize: 0 });
      expect(hist!.size).toBeGreaterThan(1);
      for (const n of ['halt_successful_poll', 'halt_wait_ns', 'pf_taken', 'pf_fixed', 'exits', 'tlb_flush']) expect(vcpu.stats.map((s) => s.name)).toContain(n);

      const r = mmuh(['stats', saved.vm]);
      expect(r.code, r.err).toBe(0);
      const lines = r.out.trimEnd().split('\n');
      expect(lines.length).toBe(vm.stats.length);
      expect(lines.some((l) => /^pages_4k {34} {0,9}\d+$/.test(l))).toBe(true);
      const rv = mmuh(['stats', '--units', saved.vcpu]);
      expect(rv.code, rv.err).toBe(0);
      expect(rv.out).toMatch(/^halt_wait_hist +\d+ {2}log2 histogram, \d+ buckets$/m);
      expect(rv.out).toMatch(/^halt_wait_ns +\d+ {2}\d+\.\d{9} s$/m);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
