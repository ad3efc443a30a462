// KVM_X86_QUIRK_SLOT_ZAP_ALL (arch/x86/kvm/mmu/mmu.c kvm_arch_flush_shadow_memslot()): by default a
// KVM_X86_DEFAULT_VM zaps every SPTE in every memslot and address space when a memslot is deleted
// or moved (kvm_mmu_zap_all_fast()); with the quirk disabled through KVM_CAP_DISABLE_QUIRKS2 only
// the deleted or moved slot's SPTEs go. memslot_perf_test -q and memslot_modification_stress_test
// -q measure the difference. The cap reports the quirks KVM supports and refuses others (EINVAL).
import { describe, expect, it } from 'vitest';
import { Host, KVM_X86_QUIRK_SLOT_ZAP_ALL } from '../src/index.js';
import { errnoOf } from './fixtures/errno.js';

const kPages = 128;
const kA = 4096;
const kB = 8192;
const kMoved = 16384;

function twoSlots(disableQuirk: boolean) {
  const host = Host.create({ memory: 32 * 2 ** 20 });
  const vm = host.createVm();
  if (disableQuirk) vm.enableCap('KVM_CAP_DISABLE_QUIRKS2', KVM_X86_QUIRK_SLOT_ZAP_ALL);
  const hva = vm.mmap({ size: 2 * kPages * 4096, backing: 'anonymous' });
  const a = { slot: 1, flags: 0, guestPhysAddr: kA * 4096, memorySize: kPages * 4096, userspaceAddr: hva };
  const b = { slot: 2, flags: 0, guestPhysAddr: kB * 4096, memorySize: kPages * 4096, userspaceAddr: hva + kPages * 4096 };
  vm.setUserMemoryRegion2(a);
  vm.setUserMemoryRegion2(b);
  const vcpu = vm.createVcpu();
  const touch = (base: number) => {
    let i = 0;
    return vcpu.run({ iteration: 1, write: true, next: () => (i < kPages ? base + i++ : -1) }, 4 * kPages);
  };
  expect(touch(kA)).toBe(kPages);
  expect(touch(kB)).toBe(kPages);
  expect(vm.getStats().pages_4k).toBe(2 * kPages);
  return { host, vm, vcpu, a, b, touch };
}

describe('KVM_X86_QUIRK_SLOT_ZAP_ALL', () => {
  it('on (the default): deleting slot B zaps slot A\'s SPTEs too; A faults in again', () => {
    const { host, vm, vcpu, b, touch } = twoSlots(false);
    vm.setUserMemoryRegion2({ ...b, memorySize: 0 });
    expect(vm.getStats().pages_4k).toBe(0);
    const taken = vcpu.getStats().pf_taken;
    expect(touch(kA)).toBe(kPages);
    expect(vcpu.getStats().pf_taken - taken).toBe(kPages);
    expect(host.audit().violations).toEqual([]);
  });

  it('on: moving slot B zaps everything, off: only B\'s old range', () => {
    for (const off of [false, true]) {
      const { host, vm, b } = twoSlots(off);
      vm.setUserMemoryRegion2({ ...b, guestPhysAddr: kMoved * 4096 });
      expect(vm.getStats().pages_4k).toBe(off ? kPages : 0);
      expect(host.audit().violations).toEqual([]);
    }
  });

  it('off (KVM_CAP_DISABLE_QUIRKS2): deleting slot B leaves slot A mapped; no fault on A', () => {
    const { host, vm, vcpu, b, touch } = twoSlots(true);
    vm.setUserMemoryRegion2({ ...b, memorySize: 0 });
    expect(vm.getStats().pages_4k).toBe(kPages);
    const taken = vcpu.getStats().pf_taken;
    expect(touch(kA)).toBe(kPages);
    expect(vcpu.getStats().pf_taken).toBe(taken);
    expect(host.audit().violations).toEqual([]);
  });

  it('KVM_CHECK_EXTENSION reports the supported quirks; others, and cap flags, are EINVAL', () => {
    const host = Host.create({ memory: 16 * 2 ** 20 });
    const vm = host.createVm();
    expect(vm.checkExtension('KVM_CAP_DISABLE_QUIRKS2')).toBe(KVM_X86_QUIRK_SLOT_ZAP_ALL);
    expect(errnoOf(() => vm.enableCap('KVM_CAP_DISABLE_QUIRKS2', 1))).toBe('EINVAL');
    expect(errnoOf(() => vm.enableCap('KVM_CAP_DISABLE_QUIRKS2', KVM_X86_QUIRK_SLOT_ZAP_ALL, 1))).toBe('EINVAL');
    vm.enableCap('KVM_CAP_DISABLE_QUIRKS2', KVM_X86_QUIRK_SLOT_ZAP_ALL);
    // Disabling again is fine (disabled_quirks |= args[0]).
    vm.enableCap('KVM_CAP_DISABLE_QUIRKS2', KVM_X86_QUIRK_SLOT_ZAP_ALL);
    expect(vm.disabledQuirks).toBe(KVM_X86_QUIRK_SLOT_ZAP_ALL);
  });
});
