/**
 * kvm_update_page_stats(): pages_4k / pages_2m / pages_1g, the leaf SPTEs mapped per level.
 *
 * KVM keeps them as VM-wide atomics. Here a VM-wide word every fault RMWs is a cache line the
 * vCPUs' workers fight over (92 ns per Atomics.add on a shared line against 8 ns on a private
 * one), so the counts are sharded as percpu counters are: each vCPU counts its own changes in
 * its own words, the VMM (and any thread outside a vCPU run) in the VM's words, and a read sums
 * the shards (readVmStats). A vCPU's shard is written by the vCPU's thread only, so a plain
 * read-modify-write suffices: no other thread writes the word, and a reader's Atomics.load of a
 * racing plain store of an aligned Int32 is tear-free in ECMAScript (it reads the old or the new
 * count, as a read of KVM's counter does). Quiescent readers (the audit after a phase) are
 * ordered after the writes by the phase barrier and mmu_lock's release/acquire (rwlock.ts). The
 * VMM's shard may see several threads: Atomics.add.
 */
import type { Vm } from '../vm.js';
import { pageStatWord } from '../vm-layout.js';
import { VcpuLayout } from '../vcpu-layout.js';

/** Add `delta` leaves at `level` to this thread's shard of the VM's page stats. */
export function kvmUpdatePageStats(vm: Vm, level: number, delta: number): void {
  const shard = vm.statShard;
  if (shard === null) Atomics.add(vm.w, pageStatWord(level), delta);
  else shard[VcpuLayout.kVcpuStatPages4k + level - 1]! += delta;
}
