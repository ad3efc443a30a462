/**
 * KVM's statistics with KVM's names: per VM (generic remote_tlb_flush*, x86 pages_4k/2m/1g) and
 * per vCPU (pf_taken, pf_fixed, pf_fast, pf_spurious, tlb_flush, exits, …), plus the binary
 * stats-fd layout (kvm_stats_header / kvm_stats_desc, KVM_GET_STATS_FD) so tools that parse
 * KVM's binary stats can read ours.
 */
export const kVmStatNames = ['remote_tlb_flush', 'remote_tlb_flush_requests', 'pages_4k', 'pages_2m', 'pages_1g'] as const;
export type VmStatName = (typeof kVmStatNames)[number];
export type VmStats = Record<VmStatName, number>;

/** vCPU stats live in a Float64 view of the vCPU's SAB, written only by the vCPU's thread. */
export const kVcpuStatNames = ['pf_taken', 'pf_fixed', 'pf_fast', 'pf_spurious', 'pf_emulate', 'tlb_flush', 'exits', 'dirty_ring_full_exits', 'pml_full_exits', 'mmio_exits'] as const;
export type VcpuStatName = (typeof kVcpuStatNames)[number];
export type VcpuStats = Record<VcpuStatName, number>;
/** Stat index in kVcpuStatNames order (a test checks they agree); a const enum so tsc inlines it. */
export const enum VcpuStat {
  pf_taken = 0,
  pf_fixed = 1,
  pf_fast = 2,
  pf_spurious = 3,
  pf_emulate = 4,
  tlb_flush = 5,
  exits = 6,
  dirty_ring_full_exits = 7,
  pml_full_exits = 8,
  mmio_exits = 9,
}

// KVM_STATS_TYPE_* / UNIT_* / BASE_* (include/uapi/linux/kvm.h)
export const KVM_STATS_TYPE_CUMULATIVE = 0x0;
export const KVM_STATS_TYPE_INSTANT = 0x1;
export const KVM_STATS_TYPE_PEAK = 0x2;
export const KVM_STATS_UNIT_NONE = 0x00;
export const KVM_STATS_BASE_POW10 = 0x000;
export const KVM_STATS_NAME_SIZE = 48;

const kVmStatTypes: Record<VmStatName, number> = {
  remote_tlb_flush: KVM_STATS_TYPE_CUMULATIVE, remote_tlb_flush_requests: KVM_STATS_TYPE_CUMULATIVE,
  pages_4k: KVM_STATS_TYPE_INSTANT, pages_2m: KVM_STATS_TYPE_INSTANT, pages_1g: KVM_STATS_TYPE_INSTANT,
};

/**
 * Encode stats in KVM's binary stats-fd layout: Header | id string | Descriptors | Data, with
 * x86's name_size 48 and one u64 per stat.
 */
export function encodeBinaryStats(id: string, values: Record<string, number>, types: Record<string, number> = kVmStatTypes): Buffer {
  const names = Object.keys(values);
  const descSize = 16 + KVM_STATS_NAME_SIZE;
  const headerSize = 24;
  const idOffset = headerSize;
  const descOffset = idOffset + KVM_STATS_NAME_SIZE;
  const dataOffset = descOffset + descSize * names.length;
  const buf = Buffer.alloc(dataOffset + 8 * names.length);
  buf.writeUInt32LE(0, 0);
  buf.writeUInt32LE(KVM_STATS_NAME_SIZE, 4);
  buf.writeUInt32LE(names.length, 8);
  buf.writeUInt32LE(idOffset, 12);
  buf.writeUInt32LE(descOffset, 16);
  buf.writeUInt32LE(dataOffset, 20);
  buf.write(id.slice(0, KVM_STATS_NAME_SIZE - 1), idOffset, 'latin1');
  names.forEach((name, i) => {
    const d = descOffset + i * descSize;
    buf.writeUInt32LE((types[name] ?? KVM_STATS_TYPE_CUMULATIVE) | KVM_STATS_UNIT_NONE | KVM_STATS_BASE_POW10, d);
    buf.writeInt16LE(0, d + 4); // exponent
    buf.writeUInt16LE(1, d + 6); // size (u64 count)
    buf.writeUInt32LE(i * 8, d + 8); // offset into data
    buf.writeUInt32LE(0, d + 12); // bucket_size
    buf.write(name.slice(0, KVM_STATS_NAME_SIZE - 1), d + 16, 'latin1');
    buf.writeBigUInt64LE(BigInt(Math.max(0, Math.round(values[name]!))), dataOffset + i * 8);
  });
  return buf;
}

/** Decode KVM's binary stats layout back to name → value. */
export function decodeBinaryStats(buf: Buffer): { id: string; stats: Record<string, number> } {
  const nameSize = buf.readUInt32LE(4);
  const n = buf.readUInt32LE(8);
  const idOff = buf.readUInt32LE(12);
  const descOff = buf.readUInt32LE(16);
  const dataOff = buf.readUInt32LE(20);
  const id = buf.toString('latin1', idOff, idOff + nameSize).replace(/\0.*$/s, '');
  const stats: Record<string, number> = {};
  for (let i = 0; i < n; i++) {
    const d = descOff + i * (16 + nameSize);
    const off = buf.readUInt32LE(d + 8);
    const name = buf.toString('latin1', d + 16, d + 16 + nameSize).replace(/\0.*$/s, '');
    stats[name] = Number(buf.readBigUInt64LE(dataOff + off));
  }
  return { id, stats };
}
