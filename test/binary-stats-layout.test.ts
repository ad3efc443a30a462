import { describe, expect, it } from 'vitest';
import { Host } from '../src/host/host.js';
import {
  KVM_STATS_NAME_SIZE, KVM_STATS_TYPE_CUMULATIVE, KVM_STATS_TYPE_INSTANT, decodeBinaryStats, encodeBinaryStats, kVmStatNames,
} from '../src/kvm/stats.js';
import { Vm } from '../src/kvm/vm.js';
import { accesses, kMiB, range, threadCtx } from './fixtures/vm-ctx.js';

// struct kvm_stats_header (6 x u32) and struct kvm_stats_desc (16 bytes + name[name_size]).
const kHeaderSize = 24;
const kDescSize = 16 + 48;

/** A VM with some of every stat: 4K leaves, 2M leaves and one remote TLB flush. */
function busyVm(id: number) {
  const host = Host.create({ memory: 64 * kMiB, hugepages2m: 2 });
  const ctx = threadCtx(host);
  const vm = Vm.create(host, id, ctx);
  const anon = vm.mmap({ size: 2 * kMiB, backing: 'anonymous' });
  const huge = vm.mmap({ size: 4 * kMiB, backing: 'anonymous_hugetlb_2mb' });
  vm.setUserMemoryRegion2({ slot: 0, flags: 0, guestPhysAddr: 0, memorySize: 2 * kMiB, userspaceAddr: anon });
  vm.setUserMemoryRegion2({ slot: 1, flags: 0, guestPhysAddr: 4 * kMiB, memorySize: 4 * kMiB, userspaceAddr: huge });
  const vcpu = vm.createVcpu();
  vcpu.run(range(0, 7), 100, null);
  vcpu.run(accesses([1024, 1536]), 100, null);
  vm.invalidateRange(0, 2);
  return vm;
}

describe('KVM_GET_STATS_FD binary layout', () => {
  it('writes the header KVM writes for x86 VM stats', () => {
    const buf = busyVm(0).getStatsFd();
    const n = kVmStatNames.length;
    expect(n).toBe(5);
    expect(buf.readUInt32LE(0)).toBe(0); // flags
    expect(buf.readUInt32LE(4)).toBe(48); // name_size = KVM_STATS_NAME_SIZE
    expect(buf.readUInt32LE(8)).toBe(n); // num_desc
    expect(buf.readUInt32LE(12)).toBe(kHeaderSize); // id_offset
    expect(buf.readUInt32LE(16)).toBe(72); // desc_offset = header + name_size
    expect(buf.readUInt32LE(20)).toBe(72 + n * kDescSize); // data_offset
    expect(buf.length).toBe(72 + n * kDescSize + n * 8);
    expect(KVM_STATS_NAME_SIZE).toBe(48);
  });

  it('writes the id string NUL-padded in name_size bytes', () => {
    const buf = busyVm(7).getStatsFd();
    expect(buf.toString('latin1', 24, 29)).toBe('kvm-7');
    expect([...buf.subarray(29, 72)].every((b) => b === 0)).toBe(true);
  });

  it('writes one 64-byte descriptor per stat: type, exponent, size, offset, bucket_size, name', () => {
    const buf = busyVm(0).getStatsFd();
    const descs = kVmStatNames.map((_, i) => {
      const d = 72 + i * kDescSize;
      return {
        flags: buf.readUInt32LE(d), exponent: buf.readInt16LE(d + 4), size: buf.readUInt16LE(d + 6),
        offset: buf.readUInt32LE(d + 8), bucket: buf.readUInt32LE(d + 12),
        name: buf.toString('latin1', d + 16, d + 64).replace(/\0+$/, ''),
      };
    });
    expect(descs).toEqual([
      { flags: KVM_STATS_TYPE_CUMULATIVE, exponent: 0, size: 1, offset: 0, bucket: 0, name: 'remote_tlb_flush' },
      { flags: KVM_STATS_TYPE_CUMULATIVE, exponent: 0, size: 1, offset: 8, bucket: 0, name: 'remote_tlb_flush_requests' },
      { flags: KVM_STATS_TYPE_INSTANT, exponent: 0, size: 1, offset: 16, bucket: 0, name: 'pages_4k' },
      { flags: KVM_STATS_TYPE_INSTANT, exponent: 0, size: 1, offset: 24, bucket: 0, name: 'pages_2m' },
      { flags: KVM_STATS_TYPE_INSTANT, exponent: 0, size: 1, offset: 32, bucket: 0, name: 'pages_1g' },
    ]);
  });

  it('writes each value as a little-endian u64 at data_offset + desc.offset', () => {
    const vm = busyVm(0);
    const buf = vm.getStatsFd();
    const data = buf.readUInt32LE(20);
    // 7 4K faults, 2 huge ones; invalidating [0, 2) zapped two 4K leaves and flushed once.
    expect(vm.getStats()).toEqual({ remote_tlb_flush: 1, remote_tlb_flush_requests: 1, pages_4k: 5, pages_2m: 2, pages_1g: 0 });
    expect([0, 8, 16, 24, 32].map((o) => buf.readBigUInt64LE(data + o))).toEqual([1n, 1n, 5n, 2n, 0n]);
  });

  it('round-trips through decodeBinaryStats', () => {
    const vm = busyVm(3);
    expect(decodeBinaryStats(vm.getStatsFd())).toEqual({ id: 'kvm-3', stats: vm.getStats() });
    const big = { pages_4k: 2 ** 40 + 3, remote_tlb_flush: 0 };
    expect(decodeBinaryStats(encodeBinaryStats('kvm-1234/vcpu-5', big))).toEqual({ id: 'kvm-1234/vcpu-5', stats: big });
  });
});
