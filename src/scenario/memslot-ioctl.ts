/**
 * KVM_SET_USER_MEMORY_REGION2 from a scenario's VMM thread, timed per call in both clocks into a
 * histogram of its kind: `set_memory_region.create | delete | move | flags` (KVM's
 * KVM_MR_CREATE, KVM_MR_DELETE, KVM_MR_MOVE, KVM_MR_FLAGS_ONLY, as __kvm_set_memory_region()
 * classifies the call), with an optional prefix (memslot-perf names the test).
 */
import type { UserspaceMemoryRegion2, Vm } from '../kvm/vm.js';
import type { VmmTimer } from './vmm-timer.js';

export type MemslotChange = 'create' | 'delete' | 'move' | 'flags' | 'unchanged';

/** What __kvm_set_memory_region() makes of `r` (before it checks the request further). */
export function memslotChange(vm: Vm, r: UserspaceMemoryRegion2): MemslotChange {
  const old = vm.slots.get(r.slot) ?? null;
  if (r.memorySize === 0) return 'delete';
  if (old === null) return 'create';
  if (r.guestPhysAddr / 4096 !== old.baseGfn) return 'move';
  return r.flags !== old.flags ? 'flags' : 'unchanged';
}

/** Issue the ioctl, timed into `${prefix}set_memory_region.<change>`; returns the change. */
export function setMemoryRegionTimed(timer: VmmTimer, vm: Vm, r: UserspaceMemoryRegion2, prefix = ''): MemslotChange {
  const change = memslotChange(vm, r);
  timer.call(`${prefix}set_memory_region.${change}`, () => vm.setUserMemoryRegion2(r));
  return change;
}
