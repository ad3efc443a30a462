// Conversions racing faults of the same VM, for real (two workers, vCPUs of one VM on both, one
// 1G guest_memfd folio shared by all of them) and forced (a fault parked between resolving its
// pfn and taking mmu_lock while the VMM converts its gfn). The invariants — a private gfn never
// reachable through a shared translation nor the host's mapping, no store through a translation
// a conversion replaced (the store oracle, every store), EAGAIN changes nothing — are checked by
// the audit after every phase and by the oracle; see src/kvm/audit.ts and vcpu.ts storeChecked.
import { describe, expect, it } from 'vitest';
import {
  Host, Vm, Runner, audit, armHook, releaseHook, HookPoint, HookState, VmLayout, until, kOp, findScenario, parseFlags, quietIo,
  KVM_MEM_GUEST_MEMFD, KVM_X86_SW_PROTECTED_VM, KVM_MEMORY_ATTRIBUTE_PRIVATE, GUEST_MEMFD_FLAG_MMAP,
} from './fixtures/dist.js';
import { threadCtx } from './fixtures/vm-ctx.js';
import type { Vm as VmT } from '../src/kvm/vm.js';

async function storm(args: string[]) {
  const s = findScenario('conversion-storm')!;
  const f = parseFlags(s.flags, args);
  s.check!(f);
  return s.run(f, quietIo);
}

describe('conversion-storm on two workers: one VM, its vCPUs on both, one 1G folio', () => {
  for (const strategy of ['in-place', 'in-place-2m-first', 'split-and-double-allocate']) {
    for (const mode of ['bounce', 'random']) {
      it(`${strategy} --mode ${mode}: audit clean after every phase, no stale store, every hypercall answered`, async () => {
        const r = await storm(['-v', '4', '-b', '256M', '--backing', 'hugetlb-1g', '--conversion', strategy, '--mode', mode, '--conversions', '48', '--rounds', '2', '--workers', '2', '--between', '16', ...(mode === 'random' ? ['--max-range', '8'] : [])]);
        expect(r.audit.violations).toEqual([]);
        expect(r.metrics.conversions).toBe(4 * 48 * 2 * 2);
        expect(r.metrics.guestFailures).toBe(0);
        // Both workers ran vCPUs of the VM: the faults and conversions really raced.
        expect(r.counters.fault_retry + r.counters.tlb_flush_vcpu).toBeGreaterThan(0);
      }, 120_000);
    }
  }
});

function gmemVm(path: 'vm' | 'gmem') {
  const host = Host.create({ memory: 96 * 2 ** 20, hugepages2m: 8, stamps: true });
  const ctx = threadCtx(host as never);
  const vm = Vm.create(host, 0, ctx as never, { type: KVM_X86_SW_PROTECTED_VM, attributes: path }) as unknown as VmT;
  const size = 8 * 2 ** 20;
  const fd = vm.createGuestMemfd({ size, backing: 'hugetlb-2m', flags: path === 'gmem' ? GUEST_MEMFD_FLAG_MMAP : 0 });
  const hva = vm.mmap({ size, backing: 'anonymous' });
  vm.setUserMemoryRegion2({ slot: 0, flags: KVM_MEM_GUEST_MEMFD, guestPhysAddr: 0, memorySize: size, userspaceAddr: hva, guestMemfd: fd, guestMemfdOffset: 0 });
  if (path === 'vm') vm.setMemoryAttributes({ address: 0, size, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE });
  vm.createVcpu();
  return { host, vm, fd, ctx, pages: size / 4096 };
}

describe('a fault that resolved its pfn before a conversion of its gfn', () => {
  for (const path of ['vm', 'gmem'] as const) {
    it(`retries and maps through the new attribute (${path} path)`, async () => {
      const { host, vm, fd, ctx, pages } = gmemVm(path);
      const gfn = 512; // the first access to the second 2M folio (the one that faults)
      armHook(vm as never, gfn, HookPoint.kHookAfterFaultin);
      const runner = new Runner(host, [vm] as never, { workers: 1, cost: ctx.metrics.cost });
      try {
        let settled = false;
        const stream = { baseGfn: 0, pages, order: 'sequential', writePercent: 100, seed: 1, vm: 0, vcpu: 0, iteration: 1 } as const;
        const phase = runner.phase('race', () => stream).finally(() => (settled = true));
        await until(() => Atomics.load(vm.w, VmLayout.kVmHookState) === HookState.kHookParked || settled);
        expect(settled).toBe(false);
        // The parked fault holds a private pfn of gfn 512; the VMM makes the gfn shared.
        const seq0 = Atomics.load(vm.w, VmLayout.kVmInvSeq);
        if (path === 'vm') vm.setMemoryAttributes({ address: gfn * 4096, size: 4096, attributes: 0 });
        else expect(fd.setMemoryAttributes2(ctx.hostThread, { offset: gfn * 4096, size: 4096, attributes: 0 })).toBe(-1);
        expect(Atomics.load(vm.w, VmLayout.kVmInvSeq)).toBeGreaterThan(seq0);
        releaseHook(vm as never);
        const p = await phase;
        expect(p.counters[kOp.fault_retry]).toBeGreaterThanOrEqual(1);
        ctx.hostThread.drain();
        const a = audit(host as never, [vm] as never);
        expect(a.violations).toEqual([]);
        // gfn 512 is mapped, through the shared path now: the VMA's page (6.8) or the file's (in place).
        expect(path === 'vm' ? vm.memslots[0]!.vma!.lookup(gfn) : fd.file.lookup(gfn)).toBeGreaterThanOrEqual(0);
        expect(fd.file.isPrivate(gfn)).toBe(path === 'vm');
      } finally {
        await runner.close();
      }
    }, 60_000);
  }
});
