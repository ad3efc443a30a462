import { it } from 'vitest';
import { Host } from '../src/host/host.js';
import { audit } from '../src/kvm/audit.js';
import { vmWithMapping, accesses, range } from './fixtures/vm-ctx.js';

it('thp partial', () => {
  const host = Host.create({ memory: 64 << 20 });
  const { vm, ctx, hva } = vmWithMapping(host, 4 << 20, 'anonymous_thp');
  vm.setUserMemoryRegion2({ slot: 0, flags: 0, guestPhysAddr: 0, memorySize: 4 << 20, userspaceAddr: hva });
  const v = vm.createVcpu();
  v.run(accesses([0]), 10, null);
  console.log(vm.getStats());
  vm.invalidateRange(10, 11);
  console.log(vm.getStats(), vm.slots.get(0)!.vma!.lookup(10), vm.slots.get(0)!.vma!.lookup(0));
  v.run(accesses([0]), 10, null);
  console.log(vm.getStats(), v.getStats().pf_fixed);
  v.run(accesses([10]), 10, null);
  console.log(vm.getStats(), v.getStats().pf_fixed, vm.slots.get(0)!.vma!.lookup(10));
  ctx.hostThread.drain();
  console.log(JSON.stringify(audit(host, [vm]).violations));
});
it('anon inv', () => {
  const host = Host.create({ memory: 64 << 20 });
  const { vm, ctx, hva } = vmWithMapping(host, 4 << 20, 'anonymous');
  vm.setUserMemoryRegion2({ slot: 0, flags: 0, guestPhysAddr: 0, memorySize: 4 << 20, userspaceAddr: hva });
  const v = vm.createVcpu();
  v.run(range(0, 1024), 2000, null);
  console.log(vm.getStats(), v.getStats());
  vm.invalidateRange(100, 200);
  console.log(vm.getStats());
  v.run(range(0, 1024), 2000, null);
  console.log(vm.getStats(), v.getStats());
  ctx.hostThread.drain();
  console.log(JSON.stringify(audit(host, [vm])), host.ownedPages(vm.owner), host.accounting());
});
