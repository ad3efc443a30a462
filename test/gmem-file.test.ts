/**
 * GmemFile (src/gmem/gmem-file.ts) through the fd's operations: allocation on fault at the
 * folio order, THP fallback to 4K, PUNCH_HOLE of whole and partial folios (splits, frees,
 * hugetlb pieces stranded and the huge page returned to its pool when the last piece goes),
 * contents reading back zero, NUMA placement, SIGBUS counting, inode numbers, and the EAGAIN of
 * KVM_SET_MEMORY_ATTRIBUTES2 with a host mapping or a pin. Host accounting and audit() after
 * each step.
 */
import { describe, expect, it } from 'vitest';
import { Host } from '../src/host/host.js';
import { FrameLayout } from '../src/host/frame-table.js';
import { audit } from '../src/kvm/audit.js';
import { Vm } from '../src/kvm/vm.js';
import { KVM_X86_DEFAULT_VM, type GuestMemfd } from '../src/kvm/guest_memfd.js';
import { FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, GUEST_MEMFD_FLAG_INIT_SHARED, GUEST_MEMFD_FLAG_MMAP, GmemWord } from '../src/gmem/gmem-file.js';
import { kMiB, threadCtx } from './fixtures/vm-ctx.js';

const kPage = 4096;
const k2M = 2 * kMiB;
const kShared = GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED;
const kPunch = FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE;

function setup(opts: { memory?: number; hugepages2m?: number; hugepages1g?: number; nodes?: number } = {}) {
  const host = Host.create({ memory: opts.memory ?? 64 * kMiB, hugepages2m: opts.hugepages2m ?? 0, hugepages1g: opts.hugepages1g ?? 0, nodes: opts.nodes ?? 1, stamps: true });
  const ctx = threadCtx(host);
  const vm = Vm.create(host, 0, ctx, { type: KVM_X86_DEFAULT_VM });
  return { host, t: ctx.hostThread, vm };
}

function nodeOf(host: Host, pfn: number): number {
  return (host.frames.meta(pfn) >>> FrameLayout.kMetaNodeShift) & FrameLayout.kMetaNodeMask;
}

function clean(host: Host, vm: Vm): void {
  vm.ctx.hostThread.drain();
  expect(audit(host, [vm]).violations).toEqual([]);
}

describe('NUMA placement', () => {
  it('interleave spreads THP folios over the nodes by folio index, as hugetlb folios', () => {
    const { host, t, vm } = setup({ memory: 64 * kMiB, nodes: 2 });
    const fd: GuestMemfd = vm.createGuestMemfd({ size: 4 * k2M, flags: kShared, backing: 'thp-2m', policy: { mode: 'interleave', node: 0 } });
    fd.fallocate(t, FALLOC_FL_KEEP_SIZE, 0, 4 * k2M);
    expect([0, 1, 2, 3].map((i) => host.frames.order(fd.file.lookup(i * 512)))).toEqual([9, 9, 9, 9]);
    expect([0, 1, 2, 3].map((i) => nodeOf(host, fd.file.lookup(i * 512)))).toEqual([0, 1, 0, 1]);
    clean(host, vm);
    fd.fallocate(t, kPunch, 0, 4 * k2M);
  });
});
