// Host sizing: the estimate checked before a run allocates must be conservative (at or above
// what the run really uses) and not wildly so: within 1.5x of the RSS a measured run reports.
import { describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { availableMemory, estimateRunBytes } from '../src/scenario/host-sizing.js';
import { memstressLayout, type MemstressConfig } from '../src/scenario/memstress-vm.js';
import { mmuh } from './fixtures/mmuh.js';

function cfg(over: Partial<MemstressConfig>): MemstressConfig {
  return { vms: 1, vcpus: 1, bytesPerVcpu: 2 ** 26, backing: 'anonymous', overlap: false, slots: 1, seed: 1, workers: 1, hostMemory: null, nodes: 1, costModel: 'default', stamps: false, ...over };
}

describe('host sizing estimate', () => {
  it('is within [1x, 1.5x] of measured RSS: a 512 MiB guest, a 16 GiB host under a 64 MiB guest, 64 small VMs on 2 workers', () => {
    const dir = mkdtempSync(join(tmpdir(), 'mmuh-size-'));
    for (const [args, c] of [
      [['-b', '512M'], cfg({ bytesPerVcpu: 2 ** 29 })],
      [['-b', '64M', '--host-memory', '16G'], cfg({ hostMemory: 2 ** 34 })],
      [['--vms', '64', '-v', '2', '-b', '4M', '--workers', '2'], cfg({ vms: 64, vcpus: 2, bytesPerVcpu: 2 ** 22, workers: 2 })],
    ] as const) {
      const file = join(dir, 'r.json');
      const r = mmuh(['run', 'demand-paging', '--workers', '1', ...args, '-q', '--json', file]);
      expect(r.code, r.err).toBe(0);
      const rss = (JSON.parse(readFileSync(file, 'utf8')) as { memory: { rssBytes: number } }).memory.rssBytes;
      const est = estimateRunBytes(c, memstressLayout(c)).bytes;
      expect(est, `${args.join(' ')}: estimate ${est} vs RSS ${rss}`).toBeGreaterThanOrEqual(rss);
      expect(est, `${args.join(' ')}: estimate ${est} vs RSS ${rss}`).toBeLessThanOrEqual(rss * 1.5);
    }
  });
  it('grows with the frame table (8 B per host frame) and the page-table pool per guest page', () => {
    const small = estimateRunBytes(cfg({}), memstressLayout(cfg({})));
    const big = cfg({ hostMemory: 2 ** 40 });
    const e = estimateRunBytes(big, memstressLayout(big));
    expect(e.breakdown.frameTable! / (2 ** 40 / 4096)).toBeGreaterThanOrEqual(8);
    expect(e.bytes - small.bytes).toBeGreaterThan(2 ** 31); // --host-memory 1T: > 2 GiB for a 64 MiB guest
  });
  it('available memory can be injected (MMUH_MEMORY_AVAILABLE) and otherwise comes from the machine', () => {
    expect(availableMemory({ MMUH_MEMORY_AVAILABLE: '3G' })).toEqual({ bytes: 3 * 2 ** 30, source: 'MMUH_MEMORY_AVAILABLE' });
    const a = availableMemory({});
    expect(a.bytes).toBeGreaterThan(0);
  });
  it('MemAvailable is capped by a cgroup v2 limit (memory.max - memory.current) and v1 (limit_in_bytes - usage)', () => {
    const fake = (files: Record<string, string>) => {
      const root = mkdtempSync(join(tmpdir(), 'mmuh-fs-'));
      for (const [p, text] of Object.entries(files)) {
        mkdirSync(join(root, p, '..'), { recursive: true });
        writeFileSync(join(root, p), text);
      }
      return root;
    };
    const meminfo = { 'proc/meminfo': 'MemTotal:       32000000 kB\nMemAvailable:   16777216 kB\n' };
    expect(availableMemory({}, fake(meminfo))).toEqual({ bytes: 16 * 2 ** 30, source: 'MemAvailable' });
    const v2 = fake({ ...meminfo, 'proc/self/cgroup': '0::/job\n', 'sys/fs/cgroup/job/memory.max': String(4 * 2 ** 30), 'sys/fs/cgroup/job/memory.current': String(2 ** 30) });
    expect(availableMemory({}, v2)).toMatchObject({ bytes: 3 * 2 ** 30 });
    const unlimited = fake({ ...meminfo, 'proc/self/cgroup': '0::/\n', 'sys/fs/cgroup/memory.max': 'max\n', 'sys/fs/cgroup/memory.current': '5' });
    expect(availableMemory({}, unlimited)).toMatchObject({ bytes: 16 * 2 ** 30, source: 'MemAvailable' });
    const v1 = fake({ ...meminfo, 'sys/fs/cgroup/memory/memory.limit_in_bytes': String(2 ** 31), 'sys/fs/cgroup/memory/memory.usage_in_bytes': String(2 ** 30) });
    expect(availableMemory({}, v1)).toMatchObject({ bytes: 2 ** 30 });
  });
});
