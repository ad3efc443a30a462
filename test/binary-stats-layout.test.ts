// KVM_GET_STATS_FD, VM and vCPU: read with a decoder written the way
// tools/testing/selftests/kvm/lib/kvm_util.c reads real KVM (read_stats_header(),
// read_stats_descriptors() with a descriptor size of sizeof(struct kvm_stats_desc) + name_size,
// read_stat_data() at data_offset + desc->offset) and checked with kvm_binary_stats_test's
// sanity rules, against x86's kvm_vm_stats_desc[] / kvm_vcpu_stats_desc[] written out here.
import { describe, expect, it } from 'vitest';
import { Host } from '../src/host/host.js';
import { decodeBinaryStats } from '../src/kvm/stats-parse.js';
import { Vm } from '../src/kvm/vm.js';
import { accesses, kMiB, range, threadCtx } from './fixtures/vm-ctx.js';

// include/uapi/linux/kvm.h
const TYPE = { CUMULATIVE: 0x0, INSTANT: 0x1, PEAK: 0x2, LINEAR_HIST: 0x3, LOG_HIST: 0x4 } as const;
const UNIT = { NONE: 0x00, BYTES: 0x10, SECONDS: 0x20, CYCLES: 0x30, BOOLEAN: 0x40 } as const;
const KVM_STATS_TYPE_MAX = TYPE.LOG_HIST;
const KVM_STATS_UNIT_MAX = UNIT.BOOLEAN;
const KVM_STATS_BASE_MAX = 0x100;

interface Header { flags: number; name_size: number; num_desc: number; id_offset: number; desc_offset: number; data_offset: number }
interface Desc { flags: number; exponent: number; size: number; offset: number; bucket_size: number; name: string }

/** read_stats_header(): struct kvm_stats_header at offset 0. */
function readStatsHeader(fd: Buffer): Header {
  return {
    flags: fd.readUInt32LE(0), name_size: fd.readUInt32LE(4), num_desc: fd.readUInt32LE(8),
    id_offset: fd.readUInt32LE(12), desc_offset: fd.readUInt32LE(16), data_offset: fd.readUInt32LE(20),
  };
}
/** read_stats_descriptors(): num_desc descriptors of sizeof(struct kvm_stats_desc) + name_size. */
function readStatsDescriptors(fd: Buffer, h: Header): Desc[] {
  const descSize = 16 + h.name_size;
  const out: Desc[] = [];
  for (let i = 0; i < h.num_desc; i++) {
    const p = h.desc_offset + i * descSize;
    out.push({
      flags: fd.readUInt32LE(p), exponent: fd.readInt16LE(p + 4), size: fd.readUInt16LE(p + 6), offset: fd.readUInt32LE(p + 8),
      bucket_size: fd.readUInt32LE(p + 12), name: fd.toString('latin1', p + 16, p + descSize).replace(/\0.*$/s, ''),
    });
  }
  return out;
}
/** read_stat_data(): desc->size u64 values at data_offset + desc->offset. */
function readStatData(fd: Buffer, h: Header, d: Desc): number[] {
  return Array.from({ length: d.size }, (_, k) => Number(fd.readBigUInt64LE(h.data_offset + d.offset + 8 * k)));
}
function readId(fd: Buffer, h: Header): string {
  return fd.toString('latin1', h.id_offset, h.id_offset + h.name_size).replace(/\0.*$/s, '');
}

/** kvm_binary_stats_test.c's stats_test() checks; returns the data size. */
function statsTest(fd: Buffer): number {
  const h = readStatsHeader(fd);
  const descSize = 16 + h.name_size;
  const id = readId(fd, h);
  expect(id.startsWith('kvm') && id.length < h.name_size).toBe(true);
  expect(h.desc_offset >= 24 && h.data_offset >= 24).toBe(true);
  expect(h.desc_offset > h.data_offset || h.desc_offset + descSize * h.num_desc <= h.data_offset).toBe(true);
  let sizeData = 0;
  const descs = readStatsDescriptors(fd, h);
  for (const d of descs) {
    expect(d.flags & 0xf).toBeLessThanOrEqual(KVM_STATS_TYPE_MAX);
    expect(d.flags & 0xf0).toBeLessThanOrEqual(KVM_STATS_UNIT_MAX);
    expect(d.flags & 0xf00).toBeLessThanOrEqual(KVM_STATS_BASE_MAX);
    const unit = d.flags & 0xf0;
    if (unit === UNIT.SECONDS) expect(d.exponent).toBeLessThanOrEqual(0);
    else expect(d.exponent).toBeGreaterThanOrEqual(0);
    // Booleans are instant 0/1 values.
    if (unit === UNIT.BOOLEAN) expect([d.flags & 0xf, d.exponent]).toEqual([TYPE.INSTANT, 0]);
    expect(d.name.length).toBeLessThan(h.name_size);
    expect(d.size).toBeGreaterThan(0);
    if ((d.flags & 0xf) === TYPE.LINEAR_HIST) expect(d.bucket_size).toBeGreaterThan(0);
    else expect(d.bucket_size).toBe(0);
    sizeData += d.size * 8;
  }
  expect(h.data_offset >= h.desc_offset || h.data_offset + sizeData <= h.desc_offset).toBe(true);
  for (const d of descs) expect(d.offset + 8 * d.size).toBeLessThanOrEqual(sizeData);
  // The data block is exactly the stats struct, and nothing follows it.
  expect(fd.length).toBe(h.data_offset + sizeData);
  return sizeData;
}

/** A VM with some of every stat: 4K leaves, 2M leaves and one remote TLB flush; vCPU id 5. */
function busyVm(id: number) {
  const host = Host.create({ memory: 64 * kMiB, hugepages2m: 2 });
  const ctx = threadCtx(host);
  const vm = Vm.create(host, id, ctx);
  const anon = vm.mmap({ size: 2 * kMiB, backing: 'anonymous' });
  const huge = vm.mmap({ size: 4 * kMiB, backing: 'anonymous_hugetlb_2mb' });
  vm.setUserMemoryRegion2({ slot: 0, flags: 0, guestPhysAddr: 0, memorySize: 2 * kMiB, userspaceAddr: anon });
  vm.setUserMemoryRegion2({ slot: 1, flags: 0, guestPhysAddr: 4 * kMiB, memorySize: 4 * kMiB, userspaceAddr: huge });
  const vcpu = vm.createVcpu(5);
  vcpu.run(range(0, 7), 100, null);
  vcpu.run(accesses([1024, 1536]), 100, null);
  vm.invalidateRange(0, 2);
  return { vm, vcpu };
}

const C = TYPE.CUMULATIVE;
const I = TYPE.INSTANT;
const P = TYPE.PEAK;
const ns = (type: number) => ({ flags: type | UNIT.SECONDS, exponent: -9 });

// arch/x86/kvm/x86.c kvm_vm_stats_desc[] with offsets into struct kvm_vm_stat, where
// max_mmu_page_hash_collisions (104) comes before max_mmu_rmap_size (112).
const kX86VmDescs: Desc[] = [
  ['remote_tlb_flush', C, 0], ['remote_tlb_flush_requests', C, 8], ['mmu_shadow_zapped', C, 16], ['mmu_pte_write', C, 24],
  ['mmu_pde_zapped', C, 32], ['mmu_flooded', C, 40], ['mmu_recycled', C, 48], ['mmu_cache_miss', C, 56], ['mmu_unsync', I, 64],
  ['pages_4k', I, 72], ['pages_2m', I, 80], ['pages_1g', I, 88], ['nx_lpage_splits', I, 96], ['max_mmu_rmap_size', P, 112],
  ['max_mmu_page_hash_collisions', P, 104],
].map(([name, flags, offset]) => ({ name: name as string, flags: flags as number, exponent: 0, size: 1, offset: offset as number, bucket_size: 0 }));

// KVM_GENERIC_VCPU_STATS() then x86's kvm_vcpu_stats_desc[].
const kX86VcpuCounters = [
  'pf_taken', 'pf_fixed', 'pf_emulate', 'pf_spurious', 'pf_fast', 'pf_mmio_spte_created', 'pf_guest', 'tlb_flush', 'invlpg',
  'exits', 'io_exits', 'mmio_exits', 'signal_exits', 'irq_window_exits', 'nmi_window_exits', 'l1d_flush', 'halt_exits',
  'request_irq_exits', 'irq_exits', 'host_state_reload', 'fpu_reload', 'insn_emulation', 'insn_emulation_fail', 'hypercalls',
  'irq_injections', 'nmi_injections', 'req_event', 'nested_run', 'directed_yield_attempted', 'directed_yield_successful',
  'preemption_reported', 'preemption_other', 'guest_mode', 'notify_window_exits',
];
const kX86VcpuDescs: Desc[] = [
  { name: 'halt_successful_poll', flags: C, exponent: 0, size: 1, offset: 0, bucket_size: 0 },
  { name: 'halt_attempted_poll', flags: C, exponent: 0, size: 1, offset: 8, bucket_size: 0 },
  { name: 'halt_poll_invalid', flags: C, exponent: 0, size: 1, offset: 16, bucket_size: 0 },
  { name: 'halt_wakeup', flags: C, exponent: 0, size: 1, offset: 24, bucket_size: 0 },
  { name: 'halt_poll_success_ns', ...ns(C), size: 1, offset: 32, bucket_size: 0 },
  { name: 'halt_poll_fail_ns', ...ns(C), size: 1, offset: 40, bucket_size: 0 },
  { name: 'halt_wait_ns', ...ns(C), size: 1, offset: 48, bucket_size: 0 },
  // STATS_DESC_LOGHIST_TIME_NSEC(..., HALT_POLL_HIST_COUNT = 32): log2 buckets, bucket_size 0.
  { name: 'halt_poll_success_hist', ...ns(TYPE.LOG_HIST), size: 32, offset: 56, bucket_size: 0 },
  { name: 'halt_poll_fail_hist', ...ns(TYPE.LOG_HIST), size: 32, offset: 56 + 256, bucket_size: 0 },
  { name: 'halt_wait_hist', ...ns(TYPE.LOG_HIST), size: 32, offset: 56 + 512, bucket_size: 0 },
  { name: 'blocking', flags: I | UNIT.BOOLEAN, exponent: 0, size: 1, offset: 824, bucket_size: 0 },
  ...kX86VcpuCounters.map((name, i) => ({
    name, flags: name === 'guest_mode' ? I | UNIT.BOOLEAN : C, exponent: 0, size: 1, offset: 832 + 8 * i, bucket_size: 0,
  })),
];

describe('KVM_GET_STATS_FD on the VM (x86 kvm_vm_stats_desc)', () => {
  it('header: name_size 48, 15 descriptors, id right after the header, descriptors after the id', () => {
    const fd = busyVm(0).vm.getStatsFd();
    const h = readStatsHeader(fd);
    expect(h).toEqual({ flags: 0, name_size: 48, num_desc: 15, id_offset: 24, desc_offset: 72, data_offset: 72 + 15 * 64 });
    expect(statsTest(fd)).toBe(15 * 8);
  });

  it('id is "kvm-<pid>" (kvm_create_vm: "kvm-%d", task_pid_nr), NUL-padded to name_size', () => {
    const fd = busyVm(7).vm.getStatsFd();
    const h = readStatsHeader(fd);
    expect(readId(fd, h)).toBe(`kvm-${process.pid}`);
    const end = h.id_offset + `kvm-${process.pid}`.length;
    expect([...fd.subarray(end, h.id_offset + h.name_size)].every((b) => b === 0)).toBe(true);
  });

  it('descriptors in KVM order with KVM types (cumulative / instant / peak) and struct offsets', () => {
    const fd = busyVm(0).vm.getStatsFd();
    expect(readStatsDescriptors(fd, readStatsHeader(fd))).toEqual(kX86VmDescs);
  });

  it('values: the driven stats as counted, the rest (shadow MMU, NX, rmap stats) read 0', () => {
    const { vm } = busyVm(0);
    const fd = vm.getStatsFd();
    const h = readStatsHeader(fd);
    const byName = Object.fromEntries(readStatsDescriptors(fd, h).map((d) => [d.name, readStatData(fd, h, d)[0]]));
    // 7 4K faults, 2 huge ones; invalidating [0, 2) zapped two 4K leaves and flushed once.
    expect(byName).toEqual({
      remote_tlb_flush: 1, remote_tlb_flush_requests: 1, mmu_shadow_zapped: 0, mmu_pte_write: 0, mmu_pde_zapped: 0,
      mmu_flooded: 0, mmu_recycled: 0, mmu_cache_miss: 0, mmu_unsync: 0, pages_4k: 5, pages_2m: 2, pages_1g: 0,
      nx_lpage_splits: 0, max_mmu_rmap_size: 0, max_mmu_page_hash_collisions: 0,
    });
    expect(vm.getStats()).toEqual(byName);
    expect(decodeBinaryStats(fd)).toEqual({ id: `kvm-${process.pid}`, stats: vm.getStats() });
  });
});

describe('KVM_GET_STATS_FD on the vCPU (x86 kvm_vcpu_stats_desc)', () => {
  it('header: 45 descriptors (11 generic, 34 x86) over the 138 u64 words of struct kvm_vcpu_stat', () => {
    const fd = busyVm(0).vcpu.getStatsFd();
    const h = readStatsHeader(fd);
    expect(h).toEqual({ flags: 0, name_size: 48, num_desc: 45, id_offset: 24, desc_offset: 72, data_offset: 72 + 45 * 64 });
    expect(statsTest(fd)).toBe(138 * 8);
  });

  it('id is "kvm-<pid>/vcpu-<vcpu_id>" with the id given at KVM_CREATE_VCPU', () => {
    const fd = busyVm(0).vcpu.getStatsFd();
    expect(readId(fd, readStatsHeader(fd))).toBe(`kvm-${process.pid}/vcpu-5`);
  });

  it('descriptors in KVM order: generic halt stats and their log2 histograms, then pf_taken … notify_window_exits', () => {
    const fd = busyVm(0).vcpu.getStatsFd();
    expect(readStatsDescriptors(fd, readStatsHeader(fd))).toEqual(kX86VcpuDescs);
  });

  it('values: fault and exit counters as counted, histograms and undriven stats 0', () => {
    const { vcpu } = busyVm(0);
    const fd = vcpu.getStatsFd();
    const h = readStatsHeader(fd);
    const data = Object.fromEntries(readStatsDescriptors(fd, h).map((d) => [d.name, readStatData(fd, h, d)]));
    // 9 EPT-violation exits, each a fixed fault.
    expect(data.pf_taken).toEqual([9]);
    expect(data.pf_fixed).toEqual([9]);
    expect(data.exits).toEqual([9]);
    expect(data.halt_wait_hist).toEqual(new Array(32).fill(0));
    expect(data.mmio_exits).toEqual([0]);
    const s = vcpu.getStats() as Record<string, number>;
    for (const [name, v] of Object.entries(data)) if (v.length === 1) expect([name, v[0]]).toEqual([name, s[name]]);
    // Harness counters are not KVM stats.
    expect(Object.keys(data)).not.toContain('dirty_ring_full_exits');
    expect(Object.keys(data)).not.toContain('pml_full_exits');
    expect(Object.keys(s)).not.toContain('dirty_ring_full_exits');
    expect(decodeBinaryStats(fd).stats.halt_poll_fail_hist).toEqual(new Array(32).fill(0));
  });
});
