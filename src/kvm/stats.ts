/**
 * KVM's statistics with KVM's names, types, units and order, and the binary stats-fd layout
 * (KVM_GET_STATS_FD: kvm_stats_header, id string, kvm_stats_desc[], data) so a parser written for
 * real KVM (tools/testing/selftests/kvm/lib/kvm_util.c read_stats_header() /
 * read_stats_descriptors() / read_stat_data()) reads ours unchanged.
 *
 * The descriptor tables are x86's kvm_vm_stats_desc[] and kvm_vcpu_stats_desc[]
 * (arch/x86/kvm/x86.c), each starting with KVM_GENERIC_VM_STATS() / KVM_GENERIC_VCPU_STATS()
 * (include/linux/kvm_host.h). A descriptor's offset is the byte offset of the field in struct
 * kvm_vm_stat / kvm_vcpu_stat (arch/x86/include/asm/kvm_host.h), which is not always descriptor
 * order: struct kvm_vm_stat has max_mmu_page_hash_collisions before max_mmu_rmap_size, the
 * descriptors list them the other way round. Stats the model does not drive read 0.
 *
 * Harness-only per-vCPU counters (KVM_EXIT_DIRTY_RING_FULL exits, PML-full exits) are not KVM
 * stats; they live in the vCPU's harness block (VcpuLayout.kVcpuHarness*) and the Op counters.
 */
import { VmLayout } from './vm-layout.js';
import { VcpuLayout } from './vcpu-layout.js';

// KVM_STATS_TYPE_* / UNIT_* / BASE_* (include/uapi/linux/kvm.h)
export const KVM_STATS_TYPE_CUMULATIVE = 0x0;
export const KVM_STATS_TYPE_INSTANT = 0x1;
export const KVM_STATS_TYPE_PEAK = 0x2;
export const KVM_STATS_TYPE_LINEAR_HIST = 0x3;
export const KVM_STATS_TYPE_LOG_HIST = 0x4;
export const KVM_STATS_TYPE_MASK = 0xf;
export const KVM_STATS_UNIT_NONE = 0x00;
export const KVM_STATS_UNIT_BYTES = 0x10;
export const KVM_STATS_UNIT_SECONDS = 0x20;
export const KVM_STATS_UNIT_CYCLES = 0x30;
export const KVM_STATS_UNIT_BOOLEAN = 0x40;
export const KVM_STATS_UNIT_MASK = 0xf0;
export const KVM_STATS_BASE_POW10 = 0x000;
export const KVM_STATS_BASE_POW2 = 0x100;
export const KVM_STATS_BASE_MASK = 0xf00;
export const KVM_STATS_NAME_SIZE = 48;
/** HALT_POLL_HIST_COUNT (include/linux/kvm_host.h): buckets of the halt-polling histograms. */
export const HALT_POLL_HIST_COUNT = 32;
/** sizeof(struct kvm_stats_header): six u32. */
export const kStatsHeaderBytes = 24;
/** sizeof(struct kvm_stats_desc) without name[]: flags, exponent, size, offset, bucket_size. */
export const kStatsDescBytes = 16;

/** One struct kvm_stats_desc (name included). `offset` is in bytes into the data block. */
export interface KvmStatsDesc {
  readonly name: string;
  readonly flags: number;
  readonly exponent: number;
  readonly size: number;
  readonly offset: number;
  readonly bucketSize: number;
}

type Kind = 'COUNTER' | 'ICOUNTER' | 'PCOUNTER' | 'IBOOLEAN' | 'TIME_NSEC' | 'LOGHIST_TIME_NSEC';

/** The STATS_DESC_* macros of include/linux/kvm_host.h: flags, exponent, size, bucket_size. */
function descOf(kind: Kind): { flags: number; exponent: number; size: number; bucketSize: number } {
  switch (kind) {
    case 'COUNTER': return { flags: KVM_STATS_TYPE_CUMULATIVE | KVM_STATS_UNIT_NONE | KVM_STATS_BASE_POW10, exponent: 0, size: 1, bucketSize: 0 };
    case 'ICOUNTER': return { flags: KVM_STATS_TYPE_INSTANT | KVM_STATS_UNIT_NONE | KVM_STATS_BASE_POW10, exponent: 0, size: 1, bucketSize: 0 };
    case 'PCOUNTER': return { flags: KVM_STATS_TYPE_PEAK | KVM_STATS_UNIT_NONE | KVM_STATS_BASE_POW10, exponent: 0, size: 1, bucketSize: 0 };
    case 'IBOOLEAN': return { flags: KVM_STATS_TYPE_INSTANT | KVM_STATS_UNIT_BOOLEAN | KVM_STATS_BASE_POW10, exponent: 0, size: 1, bucketSize: 0 };
    case 'TIME_NSEC': return { flags: KVM_STATS_TYPE_CUMULATIVE | KVM_STATS_UNIT_SECONDS | KVM_STATS_BASE_POW10, exponent: -9, size: 1, bucketSize: 0 };
    case 'LOGHIST_TIME_NSEC': return { flags: KVM_STATS_TYPE_LOG_HIST | KVM_STATS_UNIT_SECONDS | KVM_STATS_BASE_POW10, exponent: -9, size: HALT_POLL_HIST_COUNT, bucketSize: 0 };
  }
}

/**
 * Descriptor table from (name, kind) in descriptor order and the struct's field order (names),
 * giving each descriptor the byte offset of its field.
 */
function table(descs: readonly (readonly [string, Kind])[], structOrder: readonly string[]): KvmStatsDesc[] {
  const sizes = new Map(descs.map(([n, k]) => [n, descOf(k).size]));
  const offsets = new Map<string, number>();
  let off = 0;
  for (const n of structOrder) {
    offsets.set(n, off);
    off += 8 * (sizes.get(n) ?? 1);
  }
  return descs.map(([name, kind]) => ({ name, ...descOf(kind), offset: offsets.get(name)! }));
}

// kvm_vm_stats_desc[] (x86.c) = KVM_GENERIC_VM_STATS() + x86's, in descriptor order.
const kVmDescs = [
  ['remote_tlb_flush', 'COUNTER'], ['remote_tlb_flush_requests', 'COUNTER'],
  ['mmu_shadow_zapped', 'COUNTER'], ['mmu_pte_write', 'COUNTER'], ['mmu_pde_zapped', 'COUNTER'],
  ['mmu_flooded', 'COUNTER'], ['mmu_recycled', 'COUNTER'], ['mmu_cache_miss', 'COUNTER'],
  ['mmu_unsync', 'ICOUNTER'], ['pages_4k', 'ICOUNTER'], ['pages_2m', 'ICOUNTER'], ['pages_1g', 'ICOUNTER'],
  ['nx_lpage_splits', 'ICOUNTER'], ['max_mmu_rmap_size', 'PCOUNTER'], ['max_mmu_page_hash_collisions', 'PCOUNTER'],
] as const satisfies readonly (readonly [string, Kind])[];
// struct kvm_vm_stat field order (kvm_vm_stat_generic first).
const kVmStructOrder = [
  'remote_tlb_flush', 'remote_tlb_flush_requests', 'mmu_shadow_zapped', 'mmu_pte_write', 'mmu_pde_zapped', 'mmu_flooded',
  'mmu_recycled', 'mmu_cache_miss', 'mmu_unsync', 'pages_4k', 'pages_2m', 'pages_1g', 'nx_lpage_splits',
  'max_mmu_page_hash_collisions', 'max_mmu_rmap_size',
];

export const kVmStatDescs: readonly KvmStatsDesc[] = table(kVmDescs, kVmStructOrder);
export type VmStatName = (typeof kVmDescs)[number][0];
export const kVmStatNames: readonly VmStatName[] = kVmDescs.map(([n]) => n);
export type VmStats = Record<VmStatName, number>;

/**
 * The VM's stats from its shared words: the ones the model drives; the rest read 0. pages_*
 * are the sum of the VMM's shard and every vCPU's (mmu/page-stats.ts): exactly what KVM's one
 * atomic counter would read at this moment. Like KVM's read of kvm->stat.pages[], it takes no
 * lock, so a fault between its SPTE change and its count is not in it yet; at quiescence (no
 * vCPU in mmu_lock) the sum equals a recount of the leaves (the audit checks it).
 */
export function readVmStats(w: Int32Array, vcpuWords: readonly Int32Array[]): VmStats {
  const out = Object.fromEntries(kVmStatNames.map((n) => [n, 0])) as VmStats;
  out.remote_tlb_flush = Atomics.load(w, VmLayout.kVmStatRemoteTlbFlush);
  out.remote_tlb_flush_requests = Atomics.load(w, VmLayout.kVmStatRemoteTlbFlushRequests);
  let p4k = Atomics.load(w, VmLayout.kVmStatPages4k);
  let p2m = Atomics.load(w, VmLayout.kVmStatPages2m);
  let p1g = Atomics.load(w, VmLayout.kVmStatPages1g);
  for (const v of vcpuWords) {
    p4k += Atomics.load(v, VcpuLayout.kVcpuStatPages4k);
    p2m += Atomics.load(v, VcpuLayout.kVcpuStatPages4k + 1);
    p1g += Atomics.load(v, VcpuLayout.kVcpuStatPages4k + 2);
  }
  out.pages_4k = p4k;
  out.pages_2m = p2m;
  out.pages_1g = p1g;
  return out;
}

/** KVM_GET_STATS_FD content of a VM with these stats; the id is "kvm-%d" of the VMM's pid. */
export function vmStatsFd(s: VmStats): Buffer {
  const byWord: number[] = [];
  for (const d of kVmStatDescs) byWord[d.offset / 8] = s[d.name as VmStatName];
  return encodeBinaryStats(`kvm-${process.pid}`, kVmStatDescs, (word) => byWord[word] ?? 0);
}

// kvm_vcpu_stats_desc[] (x86.c) = KVM_GENERIC_VCPU_STATS() + x86's. Descriptor order is the
// struct kvm_vcpu_stat order here.
const kVcpuDescs = [
  ['halt_successful_poll', 'COUNTER'], ['halt_attempted_poll', 'COUNTER'], ['halt_poll_invalid', 'COUNTER'],
  ['halt_wakeup', 'COUNTER'], ['halt_poll_success_ns', 'TIME_NSEC'], ['halt_poll_fail_ns', 'TIME_NSEC'],
  ['halt_wait_ns', 'TIME_NSEC'], ['halt_poll_success_hist', 'LOGHIST_TIME_NSEC'],
  ['halt_poll_fail_hist', 'LOGHIST_TIME_NSEC'], ['halt_wait_hist', 'LOGHIST_TIME_NSEC'], ['blocking', 'IBOOLEAN'],
  ['pf_taken', 'COUNTER'], ['pf_fixed', 'COUNTER'], ['pf_emulate', 'COUNTER'], ['pf_spurious', 'COUNTER'],
  ['pf_fast', 'COUNTER'], ['pf_mmio_spte_created', 'COUNTER'], ['pf_guest', 'COUNTER'], ['tlb_flush', 'COUNTER'],
  ['invlpg', 'COUNTER'], ['exits', 'COUNTER'], ['io_exits', 'COUNTER'], ['mmio_exits', 'COUNTER'],
  ['signal_exits', 'COUNTER'], ['irq_window_exits', 'COUNTER'], ['nmi_window_exits', 'COUNTER'],
  ['l1d_flush', 'COUNTER'], ['halt_exits', 'COUNTER'], ['request_irq_exits', 'COUNTER'], ['irq_exits', 'COUNTER'],
  ['host_state_reload', 'COUNTER'], ['fpu_reload', 'COUNTER'], ['insn_emulation', 'COUNTER'],
  ['insn_emulation_fail', 'COUNTER'], ['hypercalls', 'COUNTER'], ['irq_injections', 'COUNTER'],
  ['nmi_injections', 'COUNTER'], ['req_event', 'COUNTER'], ['nested_run', 'COUNTER'],
  ['directed_yield_attempted', 'COUNTER'], ['directed_yield_successful', 'COUNTER'],
  ['preemption_reported', 'COUNTER'], ['preemption_other', 'COUNTER'], ['guest_mode', 'IBOOLEAN'],
  ['notify_window_exits', 'COUNTER'],
] as const satisfies readonly (readonly [string, Kind])[];

export const kVcpuStatDescs: readonly KvmStatsDesc[] = table(kVcpuDescs, kVcpuDescs.map(([n]) => n));
/** u64 words of struct kvm_vcpu_stat (the vCPU's Float64 stats block, VcpuLayout.kVcpuStatWords). */
export const kVcpuStatWords = kVcpuStatDescs.reduce((s, d) => s + d.size, 0);

type VcpuDescName = (typeof kVcpuDescs)[number][0];
type HistName = Extract<(typeof kVcpuDescs)[number], readonly [string, 'LOGHIST_TIME_NSEC']>[0];
/** Every scalar vCPU stat (histograms excluded), in KVM's order: what getStats() returns. */
export type VcpuStatName = Exclude<VcpuDescName, HistName>;
export const kVcpuStatNames = kVcpuStatDescs.filter((d) => d.size === 1).map((d) => d.name) as VcpuStatName[];
export type VcpuStats = Record<VcpuStatName, number>;

/**
 * u64 word of each vCPU stat in struct kvm_vcpu_stat (Float64 index past VcpuLayout.kVcpuStats),
 * a const enum so tsc inlines it on the hot path; a test checks it against kVcpuStatDescs.
 */
export const enum VcpuStat {
  halt_successful_poll = 0,
  halt_attempted_poll = 1,
  halt_poll_invalid = 2,
  halt_wakeup = 3,
  halt_poll_success_ns = 4,
  halt_poll_fail_ns = 5,
  halt_wait_ns = 6,
  halt_poll_success_hist = 7,
  halt_poll_fail_hist = 39,
  halt_wait_hist = 71,
  blocking = 103,
  pf_taken = 104,
  pf_fixed = 105,
  pf_emulate = 106,
  pf_spurious = 107,
  pf_fast = 108,
  pf_mmio_spte_created = 109,
  pf_guest = 110,
  tlb_flush = 111,
  invlpg = 112,
  exits = 113,
  io_exits = 114,
  mmio_exits = 115,
  signal_exits = 116,
  irq_window_exits = 117,
  nmi_window_exits = 118,
  l1d_flush = 119,
  halt_exits = 120,
  request_irq_exits = 121,
  irq_exits = 122,
  host_state_reload = 123,
  fpu_reload = 124,
  insn_emulation = 125,
  insn_emulation_fail = 126,
  hypercalls = 127,
  irq_injections = 128,
  nmi_injections = 129,
  req_event = 130,
  nested_run = 131,
  directed_yield_attempted = 132,
  directed_yield_successful = 133,
  preemption_reported = 134,
  preemption_other = 135,
  guest_mode = 136,
  notify_window_exits = 137,
}

/** Per-vCPU counters of the harness itself, not KVM stats (VcpuLayout harness block order). */
export const kHarnessVcpuStatNames = ['dirty_ring_full_exits', 'pml_full_exits', 'memory_fault_exits'] as const;
export type HarnessVcpuStats = Record<(typeof kHarnessVcpuStatNames)[number], number>;

/**
 * KVM_GET_STATS_FD's content: Header | id string (name_size bytes, NUL padded) | descriptors |
 * data, as kvm_stats_read() lays it out: id_offset = sizeof(header), desc_offset = id_offset +
 * name_size, data_offset right after the descriptors. `data(word)` reads u64 word `word` of the
 * stats struct.
 */
export function encodeBinaryStats(id: string, descs: readonly KvmStatsDesc[], data: (word: number) => number): Buffer {
  const descSize = kStatsDescBytes + KVM_STATS_NAME_SIZE;
  const idOffset = kStatsHeaderBytes;
  const descOffset = idOffset + KVM_STATS_NAME_SIZE;
  const dataOffset = descOffset + descSize * descs.length;
  const dataBytes = descs.reduce((m, d) => Math.max(m, d.offset + 8 * d.size), 0);
  const buf = Buffer.alloc(dataOffset + dataBytes);
  buf.writeUInt32LE(0, 0); // flags
  buf.writeUInt32LE(KVM_STATS_NAME_SIZE, 4);
  buf.writeUInt32LE(descs.length, 8);
  buf.writeUInt32LE(idOffset, 12);
  buf.writeUInt32LE(descOffset, 16);
  buf.writeUInt32LE(dataOffset, 20);
  buf.write(id.slice(0, KVM_STATS_NAME_SIZE - 1), idOffset, 'latin1');
  descs.forEach((d, i) => {
    const p = descOffset + i * descSize;
    buf.writeUInt32LE(d.flags, p);
    buf.writeInt16LE(d.exponent, p + 4);
    buf.writeUInt16LE(d.size, p + 6);
    buf.writeUInt32LE(d.offset, p + 8);
    buf.writeUInt32LE(d.bucketSize, p + 12);
    buf.write(d.name.slice(0, KVM_STATS_NAME_SIZE - 1), p + kStatsDescBytes, 'latin1');
    for (let k = 0; k < d.size; k++) {
      buf.writeBigUInt64LE(BigInt(Math.max(0, Math.round(data(d.offset / 8 + k)))), dataOffset + d.offset + 8 * k);
    }
  });
  return buf;
}
