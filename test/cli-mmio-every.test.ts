// --mmio-every N: the guest's stream adds one access to a device page (no memslot) after every N
// memory accesses; each is a KVM_EXIT_MMIO the worker completes as the VMM would, counted in the
// x86 vCPU stat mmio_exits. The first touch of each of the 16 device pages takes the fault path
// (pf_emulate, installing an MMIO SPTE); later ones take the cached MMIO SPTE.
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const bin = join(__dirname, '..', 'bin', 'mmuh.js');

describe('mmuh run --mmio-every', () => {
  it('demand-paging with one MMIO access per 100 memory accesses on 2 workers', () => {
    const json = join(mkdtempSync(join(tmpdir(), 'mmuh-mmio-')), 'r.json');
    const r = spawnSync(process.execPath, [bin, 'run', 'demand-paging', '-v', '2', '-b', '8M', '--mmio-every', '100', '--workers', '2', '-q', '--json', json], { encoding: 'utf8', timeout: 120_000 });
    expect(r.status, r.stderr).toBe(0);
    const res = JSON.parse(readFileSync(json, 'utf8'));
    const vcpus = res.stats['demand-paging'].vms[0].vcpus as Array<Record<string, number>>;
    // 2048 pages per vCPU, one MMIO access after every 100: 20 each.
    expect(vcpus.map((v) => v.mmio_exits)).toEqual([20, 20]);
    // MMIO SPTEs live in the VM's page table: each device page is emulated through the fault path
    // once per VM (twice at most, when both vCPUs fault it at the same time).
    const emulated = vcpus.reduce((a, v) => a + v.pf_emulate!, 0);
    expect(emulated).toBeGreaterThanOrEqual(16);
    expect(emulated).toBeLessThanOrEqual(32);
    expect(res.stats['demand-paging'].total.pages_4k).toBe(4096);
    expect(res.audit.ok).toBe(true);
  });
  it('refuses a negative count', () => {
    const r = spawnSync(process.execPath, [bin, 'run', 'demand-paging', '--mmio-every', '-1'], { encoding: 'utf8' });
    expect(r.status).toBe(2);
  });
});
