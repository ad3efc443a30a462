// Default host sizing with NUMA nodes: Host.create() reserves each node's share of the hugetlb
// pool from that node's memory, so each node must hold ceil(pages / nodes) huge pages. Before
// the fix `--numa-nodes 2 -s anonymous_hugetlb_1gb -b 1G` failed with "cannot reserve 1 hugetlb
// pages of 1 GiB on node 0".
import { describe, expect, it } from 'vitest';
import { memstressLayout, sizeHost, type MemstressConfig } from '../src/scenario/memstress-vm.js';
import { mmuh } from './fixtures/mmuh.js';

function cfg(over: Partial<MemstressConfig>): MemstressConfig {
  return { vms: 1, vcpus: 1, bytesPerVcpu: 2 ** 30, backing: 'anonymous_hugetlb_1gb', overlap: false, slots: 1, seed: 1, workers: 1, hostMemory: null, nodes: 2, costModel: 'default', stamps: false, ...over };
}

describe('default host sizing with --numa-nodes', () => {
  it('each node holds its share of 1G pages', () => {
    const c = cfg({ vcpus: 3, nodes: 2 });
    const s = sizeHost(c, memstressLayout(c));
    expect(s.hugepages1g).toBe(3);
    expect(s.memory / c.nodes).toBeGreaterThanOrEqual(2 * 2 ** 30); // ceil(3 / 2) pages per node
  });
  it('runs demand-paging --numa-nodes 2 -s anonymous_hugetlb_1gb -b 1G', () => {
    const r = mmuh(['run', 'demand-paging', '--numa-nodes', '2', '-s', 'anonymous_hugetlb_1gb', '-b', '1G', '--workers', '1', '-q']);
    expect(r.code, r.err).toBe(0);
  });
});
