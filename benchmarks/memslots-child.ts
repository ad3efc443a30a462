/**
 * The memslots-32764 child (run by memslots.ts as `node dist/benchmarks/memslots-child.js N`):
 * one VM, one anonymous mapping of N x 2 MiB, N memslots of 2 MiB created one by one
 * (KVM_SET_USER_MEMORY_REGION2 per slot, as QEMU or a selftest does), then dirty logging turned
 * on for one slot (flags-only) and one slot deleted. Nothing is faulted in: the figure is the
 * cost of the memslot machinery. N = 0 measures the same process without slots (the RSS the
 * slots' figure is compared with). Prints one JSON line.
 */
import { Host } from '../src/host/host.js';
import { Vm } from '../src/kvm/vm.js';
import { KVM_MEM_LOG_DIRTY_PAGES } from '../src/kvm/memslot.js';
import { Metrics } from '../src/metrics/counters.js';
import { costVector, loadCostModel } from '../src/metrics/cost-model.js';
import { audit } from '../src/kvm/audit.js';

const kSlotBytes = 2 * 2 ** 20;
const kBaseGpa = 2 ** 32;

function main(): void {
  const n = Number(process.argv[2] ?? 32764);
  const cost = costVector(loadCostModel());
  const host = Host.create({ memory: 256 * 2 ** 20 });
  const vm = Vm.create(host, 0, { metrics: new Metrics(cost), hostThread: host.thread() });
  vm.createVcpu();
  const rssBefore = process.memoryUsage().rss;
  const hva = n > 0 ? vm.mmap({ size: n * kSlotBytes, backing: 'anonymous' }) : 0;
  const region = (i: number, flags: number, size = kSlotBytes) => ({ slot: i, flags, guestPhysAddr: kBaseGpa + i * kSlotBytes, memorySize: size, userspaceAddr: hva + i * kSlotBytes });
  const t0 = performance.now();
  for (let i = 0; i < n; i++) vm.setUserMemoryRegion2(region(i, 0));
  const t1 = performance.now();
  const k = n >> 1;
  if (n > 0) vm.setUserMemoryRegion2(region(k, KVM_MEM_LOG_DIRTY_PAGES));
  const t2 = performance.now();
  if (n > 1) vm.setUserMemoryRegion2(region(k + 1, 0, 0));
  const t3 = performance.now();
  const violations = audit(host, [vm]).violations.length;
  process.stdout.write(`${JSON.stringify({
    slots: n, createS: (t1 - t0) / 1000, flagsMs: t2 - t1, deleteMs: t3 - t2, totalS: (t3 - t0) / 1000,
    remaining: vm.memslots.length, poolPages: vm.pool.capacity, memslotBytes: vm.ms.bytes(), rssBefore, rssAfter: process.memoryUsage().rss, violations,
  })}\n`);
}

main();
