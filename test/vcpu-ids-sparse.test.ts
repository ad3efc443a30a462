// vCPU ids as kvm_vm_ioctl_create_vcpu() takes them: the id is userspace's (x86: the APIC id),
// sparse, below KVM_MAX_VCPU_IDS (4096), a taken id is EEXIST, more than kvm->max_vcpus
// (KVM_MAX_VCPUS = 1024 by default) vCPUs is EINVAL; KVM_CAP_MAX_VCPU_ID lowers the id limit
// (kvm_arch_vcpu_precreate). Internally vCPUs are indexed densely (vcpu->vcpu_idx), which is
// what rings, requests and the epoch domain use, so sparse ids run like dense ones.
import { describe, expect, it } from 'vitest';
import { Host, KVM_MEM_LOG_DIRTY_PAGES } from '../src/index.js';
import { errnoOf } from './fixtures/errno.js';


const newVm = (maxVcpus?: number) => Host.create({ memory: 32 * 2 ** 20, stamps: true }).createVm(maxVcpus ? { maxVcpus } : {});

describe('KVM_CREATE_VCPU ids', () => {
  it('sparse ids up to KVM_MAX_VCPU_IDS - 1; 4096 and up (or negative) are EINVAL', () => {
    const vm = newVm();
    const a = vm.createVcpu(4095);
    const b = vm.createVcpu(7);
    const c = vm.createVcpu(0);
    expect([a.id, b.id, c.id]).toEqual([4095, 7, 0]);
    // vcpu_idx is dense, in creation order.
    expect([a.idx, b.idx, c.idx]).toEqual([0, 1, 2]);
    expect(vm.nrVcpus).toBe(3);
    expect(vm.vcpuById(7)).toBe(b);
    expect(vm.vcpu(0)).toBe(a);
    expect(errnoOf(() => vm.vcpuById(8))).toBe('ENOENT');
    expect(errnoOf(() => vm.createVcpu(4096))).toBe('EINVAL');
    expect(errnoOf(() => vm.createVcpu(-1))).toBe('EINVAL');
    expect(errnoOf(() => vm.createVcpu(1.5))).toBe('EINVAL');
    expect(vm.nrVcpus).toBe(3);
  });

  it('a taken id is EEXIST and creates nothing', () => {
    const vm = newVm();
    vm.createVcpu(12);
    expect(errnoOf(() => vm.createVcpu(12))).toBe('EEXIST');
    expect(vm.nrVcpus).toBe(1);
    // The default id is the next index, which may be taken too.
    vm.createVcpu(1);
    expect(errnoOf(() => vm.createVcpu())).toBe(null); // id 2
    expect(errnoOf(() => vm.createVcpu(2))).toBe('EEXIST');
  });

  it('more than kvm->max_vcpus vCPUs is EINVAL (1024 by default), checked before the id', () => {
    const vm = newVm();
    for (let i = 0; i < 1024; i++) vm.createVcpu(4 * i + 3);
    expect(vm.nrVcpus).toBe(1024);
    expect(errnoOf(() => vm.createVcpu(0))).toBe('EINVAL');
    // Full beats duplicate: created_vcpus >= max_vcpus is checked first.
    expect(errnoOf(() => vm.createVcpu(3))).toBe('EINVAL');
    const small = newVm(2);
    small.createVcpu(100);
    small.createVcpu(200);
    expect(errnoOf(() => small.createVcpu(300))).toBe('EINVAL');
  });

  it('KVM_CAP_MAX_VCPU_ID: ids at or above it are EINVAL; it can be set once (again to the same value)', () => {
    const vm = newVm();
    const enable = (v: number, flags = 0) => errnoOf(() => vm.enableCap('KVM_CAP_MAX_VCPU_ID', v, flags));
    expect(enable(4097)).toBe('EINVAL');
    expect(enable(16, 1)).toBe('EINVAL');
    expect(enable(16)).toBe(null);
    expect(enable(16)).toBe(null);
    expect(enable(32)).toBe('EINVAL');
    expect(errnoOf(() => vm.createVcpu(15))).toBe(null);
    expect(errnoOf(() => vm.createVcpu(16))).toBe('EINVAL');
  });

  it('sparse ids run: faults, a remote TLB flush, per-vCPU dirty rings, stats ids and frame stamps', () => {
    const host = Host.create({ memory: 32 * 2 ** 20, stamps: true });
    const vm = host.createVm({ strategy: { tracking: 'wrprot' } });
    vm.enableCap('KVM_CAP_DIRTY_LOG_RING', 4096 * 16);
    const hva = vm.mmap({ size: 2 ** 21, backing: 'anonymous' });
    vm.setUserMemoryRegion2({ slot: 0, flags: KVM_MEM_LOG_DIRTY_PAGES, guestPhysAddr: 0, memorySize: 2 ** 21, userspaceAddr: hva });
    const ids = [4095, 9];
    const vcpus = ids.map((id) => vm.createVcpu(id));
    vcpus.forEach((v, k) => {
      let g = k * 100;
      const end = g + 10;
      expect(v.run({ iteration: 3, write: true, next: () => (g < end ? g++ : -1) }, 100)).toBe(10);
    });
    // Each vCPU pushed to its own ring (rings are per vcpu_idx).
    const seen: number[] = [];
    expect(vm.harvestDirtyRings((_, off) => seen.push(off))).toBe(20);
    expect(seen.sort((a, b) => a - b)).toEqual([...Array(10).keys(), ...Array.from({ length: 10 }, (_, i) => 100 + i)]);
    expect(vm.resetDirtyRings()).toBe(20);
    // The reset's remote flush reached both vCPUs (requests go by index).
    expect(vcpus.map((v) => v.getStats().tlb_flush)).toEqual([0, 0]);
    vcpus.forEach((v) => v.run({ iteration: 4, write: false, next: () => -1 }, 1));
    expect(vcpus.map((v) => v.getStats().tlb_flush)).toEqual([1, 1]);
    // Frame stamps name the writer by vm id << 12 | vcpu_id.
    const slot = vm.memslots[0]!;
    const writer = (gfn: number) => host.phys.frames.readStampWriter(slot.vma!.lookup(slot.vmaOffset + gfn));
    expect([writer(0), writer(100)]).toEqual([4095, 9]);
    expect(vcpus.map((v) => v.getStatsFd().toString('latin1', 24, 72).replace(/\0.*$/s, ''))).toEqual(ids.map((id) => `kvm-${process.pid}/vcpu-${id}`));
    expect(host.audit().violations).toEqual([]);
  });
});
