// Dirty logging toggled and read while a vCPU runs in guest mode on another thread (PML):
//  - enabling logging kicks running vCPUs: KVM_REQ_UPDATE_CPU_DIRTY_LOGGING turns PML on and the
//    enable's remote TLB flush drops the W|D translation the vCPU cached before — so its next
//    store walks, sets D and is logged (kvm_mmu_update_cpu_dirty_logging, kvm_flush_remote_tlbs);
//  - reading the log kicks vCPUs so their PML buffers are drained first
//    (kvm_arch_sync_dirty_log / KVM_REQ_FLUSH_CPU_DIRTY_LOG): the store is reported although the
//    vCPU never left guest mode on its own.
// The vCPU's stream waits on control words, so the order of events is forced (no luck involved).
import { describe, expect, it } from 'vitest';
import { Worker } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import { Host, Vm, until, KVM_MEM_LOG_DIRTY_PAGES } from './fixtures/dist.js';
import { Metrics } from '../dist/src/metrics/counters.js';
import { costVector, loadCostModel } from '../dist/src/metrics/cost-model.js';

const fixture = fileURLToPath(new URL('./fixtures/pml-running-vcpu.mjs', import.meta.url));
const kBase = 1 << 18;

describe('PML with a vCPU running on another thread', () => {
  it('enable turns PML on and flushes the running vCPU; GET drains its buffer', async () => {
    const host = Host.create({ memory: 64 * 2 ** 20 });
    const cost = costVector(loadCostModel());
    const ctx = { metrics: new Metrics(cost), hostThread: host.thread() };
    const vm = Vm.create(host, 0, ctx, { strategy: { tracking: 'pml' } });
    vm.enableCap('KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2', 1);
    const hva = vm.mmap({ size: 2 ** 20, backing: 'anonymous' });
    const region = { slot: 1, flags: 0, guestPhysAddr: kBase * 4096, memorySize: 2 ** 20, userspaceAddr: hva };
    vm.setUserMemoryRegion2(region);
    vm.createVcpu();
    const ctl = new Int32Array(new SharedArrayBuffer(16));
    const gfn = kBase + 5;
    const w = new Worker(fixture, { workerData: { hostHandle: host.handle, vmHandle: vm.handle(), ctl: ctl.buffer, cost, gfn, loadGfn: kBase + 6 } });
    const result = new Promise<{ retired: number; kicks: number }>((resolve, reject) => {
      w.once('message', resolve);
      w.once('error', reject);
    });
    try {
      await until(() => Atomics.load(ctl, 0) === 1, 30_000);
      vm.setUserMemoryRegion2({ ...region, flags: KVM_MEM_LOG_DIRTY_PAGES });
      Atomics.store(ctl, 1, 1);
      await until(() => Atomics.load(ctl, 0) === 2, 30_000);
      // The vCPU is in guest mode with the store's gfn in its PML buffer.
      const bm = vm.getDirtyLog(1);
      Atomics.store(ctl, 2, 1);
      const r = await result;
      expect(r.kicks).toBeGreaterThanOrEqual(1);
      expect((bm[0]! >>> 5) & 1).toBe(1);
    } finally {
      Atomics.store(ctl, 1, 1);
      Atomics.store(ctl, 2, 1);
      await w.terminate();
    }
  });
});
