/**
 * The shared state every fault touches is backed when the VMM creates it (populateSab): the host
 * page table of a VMA at mmap, the page-table pool's new pages when a memslot grows it. Left to
 * the first touch, each new SAB page is a host page fault inside some vCPU's fault, which two
 * workers of one process take under the same mm: that cost one VM's two vCPUs 1.65-1.75x scaling
 * against 1.86-1.99x backed (benchmarks/README.md). Resident memory is what shows it: a 16 GiB
 * mapping's 16 MiB host page table, and the 32 MiB of page-table pages a 16 GiB slot reserves,
 * are resident before any fault.
 */
import { describe, expect, it } from 'vitest';
import { Host, Vm } from './fixtures/dist.js';
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
});
