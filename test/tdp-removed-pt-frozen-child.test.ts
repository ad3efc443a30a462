// handle_removed_pt() under mmu_lock held for read: a child SPTE of the table being removed may
// be frozen by another thread mid-update (the frozen-SPTE protocol). The remover must wait for
// that thread to publish and then account what it published — otherwise the update lands in a
// table that is already retired and its leaf is never accounted (pages_4k drifts, a leaf maps
// memory from an unreachable table). The other thread is a real worker that unfreezes the child
// only after it has seen the table replaced, so the interleaving is forced, not left to luck.
import { describe, expect, it } from 'vitest';
import { Worker } from 'node:worker_threads';
import { Host, KVM_MEM_LOG_DIRTY_PAGES } from '../src/index.js';
import { PgLevel, Spte } from '../src/kvm/mmu/spte.js';
import { span, sptepAt } from './fixtures/mmu.js';

const kBase = 1 << 18;

// The racing thread: wait until the parent SPTE is a huge leaf (the table was replaced and is
// being removed), give the remover time to reach the frozen child, then publish the child.
const kUnfreezer = `
const { workerData, parentPort } = require('node:worker_threads');
const pt = new Int32Array(workerData.sab);
parentPort.postMessage('ready');
const want = ${Spte.SPTE_MMU_PRESENT_MASK | Spte.PT_PAGE_SIZE_MASK};
while ((Atomics.load(pt, workerData.parent) & want) !== want) {}
Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 50);
Atomics.store(pt, workerData.child, workerData.value);
parentPort.postMessage('published');
`;

describe('removing a table waits for a frozen child', () => {
  it('in-place huge-page recovery accounts a child published after it was frozen', async () => {
    const host = Host.create({ memory: 64 * 2 ** 20, hugepages2m: 4 });
    const vm = host.createVm({ strategy: { tracking: 'pml', split: 'eager', recover: 'in-place' } });
    const hva = vm.mmap({ size: 2 * 2 ** 20, backing: 'anonymous_hugetlb_2mb' });
    const region = { slot: 1, flags: 0, guestPhysAddr: kBase * 4096, memorySize: 2 * 2 ** 20, userspaceAddr: hva };
    vm.setUserMemoryRegion2(region);
    const vcpu = vm.createVcpu();
    expect(vcpu.run(span(kBase, kBase + 1), 10)).toBe(1);
    vm.setUserMemoryRegion2({ ...region, flags: KVM_MEM_LOG_DIRTY_PAGES }); // eager split: 512 4K leaves
    expect(vm.getStats()).toMatchObject({ pages_4k: 512, pages_2m: 0 });
    const pt = vm.pool.pt;
    expect(pt.byteOffset).toBe(0);
    const parent = sptepAt(vm, kBase, PgLevel.PG_LEVEL_2M);
    const child = sptepAt(vm, kBase, PgLevel.PG_LEVEL_4K);
    const value = pt[child]!;
    expect(value & Spte.SPTE_MMU_PRESENT_MASK).toBe(Spte.SPTE_MMU_PRESENT_MASK);
    pt[child] = Spte.FROZEN_SPTE; // another thread is mid-update on gfn kBase
    const w = new Worker(kUnfreezer, { eval: true, workerData: { sab: pt.buffer, parent, child, value } });
    const published = new Promise<void>((resolve, reject) => {
      w.on('message', (m) => m === 'published' && resolve());
      w.once('error', reject);
    });
    await new Promise<void>((resolve) => w.once('message', () => resolve()));
    try {
      vm.setUserMemoryRegion2({ ...region, flags: 0 }); // recover: the table becomes a 2M leaf
      await published;
    } finally {
      await w.terminate();
    }
    expect(vm.getStats()).toMatchObject({ pages_4k: 0, pages_2m: 1 });
    expect(host.audit().violations).toEqual([]);
  });
});
