// KVM_CLEAR_DIRTY_LOG: alignment and range rules (api.rst after 76d58e0f07ec), ENOENT for a slot
// without a dirty log, the return value (pages really re-armed) and what the next GET sees.
import { describe, expect, it } from 'vitest';
import { Host, KVM_MEM_LOG_DIRTY_PAGES, KvmError, type Errno, type Vm } from '../src/index.js';

const kBase = 4096; // slot 1 starts at gfn 4096 (16 MiB)
const kPages = 1000; // deliberately not a multiple of 64, like dirty_log_test's 1 GiB + 3 pages

function writes(gfns: readonly number[]) {
  let i = 0;
  return { iteration: 1, write: true, next: () => (i < gfns.length ? gfns[i++]! : -1) };
}

/** Slot 1 = 1000 4K pages, logging, manual protect; slot 2 = 64 pages, not logging. */
function fixture() {
  const host = Host.create({ memory: 64 * 2 ** 20 });
  const vm = host.createVm({ strategy: { tracking: 'wrprot' } });
  vm.enableCap('KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2', 1);
  const hva = vm.mmap({ size: 8 * 2 ** 20, backing: 'anonymous' });
  vm.setUserMemoryRegion2({ slot: 1, flags: KVM_MEM_LOG_DIRTY_PAGES, guestPhysAddr: kBase * 4096, memorySize: kPages * 4096, userspaceAddr: hva });
  vm.setUserMemoryRegion2({ slot: 2, flags: 0, guestPhysAddr: 2 ** 26, memorySize: 64 * 4096, userspaceAddr: hva + 4 * 2 ** 20 });
  const vcpu = vm.createVcpu();
  return { host, vm, vcpu };
}

/** The set page offsets of a GET bitmap. */
function setBits(bm: Uint32Array): number[] {
  const out: number[] = [];
  for (let i = 0; i < bm.length * 32; i++) if ((bm[i >>> 5]! >>> (i & 31)) & 1) out.push(i);
  return out;
}

/** A caller bitmap (bit i = page firstPage + i) for `numPages` pages with `bits` set. */
function userBitmap(numPages: number, bits: readonly number[]): Uint32Array {
  const b = new Uint32Array(Math.ceil(numPages / 64) * 2);
  for (const i of bits) b[i >>> 5]! |= 1 << (i & 31);
  return b;
}

function clearErrno(vm: Vm, slot: number, firstPage: number, numPages: number): Errno | null {
  try {
    vm.clearDirtyLog({ slot, firstPage, numPages, bitmap: new Uint32Array(Math.ceil(numPages / 64) * 2 + 2).fill(0xffffffff) });
  } catch (e) {
    expect(e).toBeInstanceOf(KvmError);
    return (e as KvmError).errno;
  }
  return null;
}

describe('KVM_CLEAR_DIRTY_LOG alignment and range', () => {
  it('EINVAL when first_page is not a multiple of 64', () => {
    const { vm } = fixture();
    expect(clearErrno(vm, 1, 32, 64)).toBe('EINVAL');
    expect(clearErrno(vm, 1, 1, 64)).toBe('EINVAL');
    expect(clearErrno(vm, 1, 63, 1)).toBe('EINVAL');
    expect(clearErrno(vm, 1, 960 + 8, 32)).toBe('EINVAL'); // even reaching the slot's end
    expect(clearErrno(vm, 1, 64, 64)).toBe(null);
  });

  it('EINVAL when num_pages is not a multiple of 64 and does not reach the end of the slot', () => {
    const { vm } = fixture();
    expect(clearErrno(vm, 1, 0, 32)).toBe('EINVAL');
    expect(clearErrno(vm, 1, 0, 65)).toBe('EINVAL');
    expect(clearErrno(vm, 1, 896, 100)).toBe('EINVAL'); // 896 + 100 = 996 < 1000
    expect(clearErrno(vm, 1, 960, 39)).toBe('EINVAL'); // one short of the end
    expect(clearErrno(vm, 1, 0, 128)).toBe(null);
  });

  it('the unaligned tail of a 1000-page slot: first_page 960, num_pages 40 is accepted', () => {
    const { vm, vcpu } = fixture();
    expect(vcpu.run(writes([kBase + 965, kBase + 999, kBase + 970]), 10)).toBe(3);
    expect(setBits(vm.getDirtyLog(1))).toEqual([965, 970, 999]);
    // Clear 965 and 999 (bits 5 and 39 of the tail word) but not 970.
    const rearmed = vm.clearDirtyLog({ slot: 1, firstPage: 960, numPages: 40, bitmap: userBitmap(40, [5, 39]) });
    expect(rearmed).toBe(2);
    expect(setBits(vm.getDirtyLog(1))).toEqual([970]);
    // Also the whole slot in one call: 1000 pages from 0 reaches the end.
    expect(vm.clearDirtyLog({ slot: 1, firstPage: 0, numPages: kPages, bitmap: userBitmap(kPages, [970]) })).toBe(1);
    expect(setBits(vm.getDirtyLog(1))).toEqual([]);
  });

  it('EINVAL for a range past the end of the slot', () => {
    const { vm } = fixture();
    expect(clearErrno(vm, 1, 960, 64)).toBe('EINVAL'); // 960 + 64 = 1024 > 1000
    expect(clearErrno(vm, 1, 0, 1024)).toBe('EINVAL');
    expect(clearErrno(vm, 1, 0, 1001)).toBe('EINVAL');
    expect(clearErrno(vm, 1, 1024, 0)).toBe('EINVAL'); // first_page > npages
    expect(clearErrno(vm, 1, 1024, 64)).toBe('EINVAL');
  });

  it('ENOENT for a slot without dirty logging or a slot that does not exist', () => {
    const { vm } = fixture();
    expect(clearErrno(vm, 2, 0, 64)).toBe('ENOENT');
    expect(clearErrno(vm, 7, 0, 64)).toBe('ENOENT');
    expect(clearErrno(vm, (1 << 16) | 1, 0, 64)).toBe('ENOENT'); // slot 1 of address space 1
  });

  // BUG (src/kvm/dirty/clear.ts clearDirtyLog -> loggingSlot): KVM's kvm_clear_dirty_log_protect()
  // returns EINVAL when as_id >= 2 or id >= KVM_USER_MEM_SLOTS (32764), checked right after the
  // ring check and before first_page; the model answers ENOENT.
  it('EINVAL for a slot id past KVM_USER_MEM_SLOTS or an address space past 1', () => {
    const { vm } = fixture();
    expect(clearErrno(vm, 32764, 0, 64)).toBe('EINVAL');
    expect(clearErrno(vm, (2 << 16) | 1, 0, 64)).toBe('EINVAL');
  });

  it('returns the number of pages re-armed: only bits set in KVM\'s bitmap count', () => {
    const { vm, vcpu } = fixture();
    const dirty = [0, 3, 63, 64, 100, 127, 500];
    expect(vcpu.run(writes(dirty.map((o) => kBase + o)), 100)).toBe(dirty.length);
    // All ones over pages [0, 128): six of them were dirty (500 is outside).
    const ones = new Uint32Array(4).fill(0xffffffff);
    expect(vm.clearDirtyLog({ slot: 1, firstPage: 0, numPages: 128, bitmap: ones })).toBe(6);
    // Clearing the same pages again re-arms nothing.
    expect(vm.clearDirtyLog({ slot: 1, firstPage: 0, numPages: 128, bitmap: ones })).toBe(0);
    // An empty caller bitmap clears nothing.
    expect(vm.clearDirtyLog({ slot: 1, firstPage: 448, numPages: 128, bitmap: new Uint32Array(4) })).toBe(0);
    expect(setBits(vm.getDirtyLog(1))).toEqual([500]);
    // A mask that covers 500 and clean neighbours counts one.
    expect(vm.clearDirtyLog({ slot: 1, firstPage: 448, numPages: 64, bitmap: userBitmap(64, [51, 52, 53, 54]) })).toBe(1);
    expect(setBits(vm.getDirtyLog(1))).toEqual([]);
  });

  it('manual mode: cleared bits are gone from the next GET, others stay, and re-armed pages log again', () => {
    const { vm, vcpu } = fixture();
    const dirty = [1, 2, 65, 130, 700, 998];
    expect(vcpu.run(writes(dirty.map((o) => kBase + o)), 100)).toBe(dirty.length);
    expect(setBits(vm.getDirtyLog(1))).toEqual(dirty);
    expect(vm.clearDirtyLog({ slot: 1, firstPage: 0, numPages: 192, bitmap: userBitmap(192, [2, 65]) })).toBe(2);
    expect(setBits(vm.getDirtyLog(1))).toEqual([1, 130, 700, 998]);
    expect(setBits(vm.getDirtyLog(1))).toEqual([1, 130, 700, 998]);
    // Rewriting a re-armed page takes the fast page fault and logs it again; a page that was not
    // cleared is still writable and takes no fault.
    const before = vcpu.getStats();
    expect(vcpu.run(writes([kBase + 2, kBase + 1]), 10)).toBe(2);
    expect(vcpu.getStats().pf_fast - before.pf_fast).toBe(1);
    expect(vcpu.getStats().pf_taken - before.pf_taken).toBe(1);
    expect(setBits(vm.getDirtyLog(1))).toEqual([1, 2, 130, 700, 998]);
  });
});
