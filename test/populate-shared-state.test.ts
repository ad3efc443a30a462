/**
 * The shared state every fault touches is backed when the VMM creates it (populateSab): the host
 * page table of a VMA at mmap, the page-table pool's new pages when a memslot grows it. Left to
 * the first touch, each new SAB page is a host page fault inside some vCPU's fault, which two
 * workers of one process take under the same mm: that cost one VM's two vCPUs 1.65-1.75x scaling
 * against 1.86-1.99x backed (benchmarks/README.md). Resident memory is what shows it: a 16 GiB
 * mapping's 16 MiB host page table, and the 32 MiB of page-table pages a 16 GiB slot reserves,
 * are resident before any fault. Of the pool, only the share a 4K mapping uses is backed (its
 * sizing reserves two tables per level per slot: many small slots would otherwise cost several
 * times what they can use), and offsets past 2 GiB of the 4 GiB pool work.
 */
import { describe, expect, it } from 'vitest';
import { Host, Vm } from './fixtures/dist.js';
import { allocGrowableSab, populateSab } from '../dist/src/shm/arena.js';
import { Metrics } from '../dist/src/metrics/counters.js';
import { costVector, loadCostModel } from '../dist/src/metrics/cost-model.js';
import { kDefaultCostModelPath } from './fixtures/vm-ctx.js';

const MiB = 2 ** 20;
const GiB = 2 ** 30;

describe.skipIf(process.platform !== 'linux')('shared state backed at creation', () => {
  it('a VMA\'s host page table at mmap, the page-table pool at memslot creation', () => {
    const host = Host.create({ memory: 64 * MiB });
    const vm = Vm.create(host, 0, { metrics: new Metrics(costVector(loadCostModel(kDefaultCostModelPath))), hostThread: host.thread() }, { maxVcpus: 1 });
    const rss0 = process.memoryUsage().rss;
    const hva = vm.mmap({ size: 16 * GiB, backing: 'anonymous' });
    const rss1 = process.memoryUsage().rss;
    // 4 bytes per 4K page: 16 MiB, all of it resident (a little slack for the allocator).
    expect(rss1 - rss0).toBeGreaterThan(15 * MiB);
    const cap0 = vm.pool.capacity;
    vm.setUserMemoryRegion2({ slot: 0, flags: 0, guestPhysAddr: 0, memorySize: 16 * GiB, userspaceAddr: hva });
    const rss2 = process.memoryUsage().rss;
    const grown = vm.pool.capacity - cap0;
    // One 4K table per 512 guest pages: 8192 pages of 4 KiB (plus their info words) resident.
    expect(grown).toBeGreaterThanOrEqual(8192);
    expect(rss2 - rss1).toBeGreaterThan(grown * 4096 * 0.95);
    // Nothing was faulted: the guest owns no frame yet.
    expect(host.ownedPages(vm.id)).toBe(0);
  });

  it('backs only the leaf-table share of the pool for many small slots (the sizing reserves 6 pages per 2 MiB slot)', () => {
    const host = Host.create({ memory: 64 * MiB });
    const vm = Vm.create(host, 0, { metrics: new Metrics(costVector(loadCostModel(kDefaultCostModelPath))), hostThread: host.thread() }, { maxVcpus: 1 });
    const slots = 2048;
    const hva = vm.mmap({ size: slots * 2 * MiB, backing: 'anonymous' });
    const cap0 = vm.pool.capacity;
    const rss0 = process.memoryUsage().rss;
    for (let i = 0; i < slots; i++) vm.setUserMemoryRegion2({ slot: i, flags: 0, guestPhysAddr: i * 2 * MiB, memorySize: 2 * MiB, userspaceAddr: hva + i * 2 * MiB });
    const grown = (vm.pool.capacity - cap0) * 4096;
    const rss = process.memoryUsage().rss - rss0;
    // Reserved: ~6 pages per slot (48 MiB); used by a 4K mapping of all of it: 1 per slot (8 MiB).
    expect(grown).toBeGreaterThan(slots * 5 * 4096);
    expect(rss).toBeGreaterThan(slots * 4096 * 0.9);
    expect(rss).toBeLessThan(grown / 2);
  });

  it('hands out a growth\'s new pages lowest first, the ones it backed', () => {
    const host = Host.create({ memory: 64 * MiB });
    const vm = Vm.create(host, 0, { metrics: new Metrics(costVector(loadCostModel(kDefaultCostModelPath))), hostThread: host.thread() }, { maxVcpus: 1 });
    const hva = vm.mmap({ size: 1 * GiB, backing: 'anonymous' });
    const cap0 = vm.pool.capacity;
    vm.setUserMemoryRegion2({ slot: 0, flags: 0, guestPhysAddr: 0, memorySize: 1 * GiB, userspaceAddr: hva });
    expect(vm.pool.capacity).toBeGreaterThan(cap0 + 4);
    const out = new Int32Array(4);
    expect(vm.pool.allocBatch(out, 0, 4)).toBe(4);
    expect([...out]).toEqual([cap0, cap0 + 1, cap0 + 2, cap0 + 3]);
  });

  it('populates past 2 GiB of a growable SAB (byte offsets are not 32-bit)', () => {
    const at = 2 ** 31 + 4096;
    const sab = allocGrowableSab(at + 8192, at + 8192);
    expect(() => populateSab(sab, at, at + 8192)).not.toThrow();
    expect(new Int32Array(sab, at, 2048).every((x) => x === 0)).toBe(true);
  });
});
