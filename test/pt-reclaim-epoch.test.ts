// Epoch-based reclaim of page-table pages (the TDP MMU's RCU-deferred free of unlinked tables,
// tdp_mmu_free_sp_rcu_callback() after call_rcu()). Two rules:
//  - the boundary: a page retired in epoch e is not freed while any participant is still in e,
//    and is freed once every participant moved past e or went idle;
//  - the grace period vouches only for retirements made before it: reclaim() reads the retire
//    list's tail before it scans the participants, so a page retired (and reached by a walker
//    that entered) after the scan is never judged against that scan.
import { describe, expect, it } from 'vitest';
import { Host } from '../src/index.js';

function fixture() {
  const host = Host.create({ memory: 16 * 2 ** 20 });
  const vm = host.createVm({ maxVcpus: 2 });
  const pages = new Int32Array(4);
  expect(vm.pool.allocBatch(pages, 0, 4)).toBe(4);
  // A page full of non-zero words, so "freed" (zeroed) is visible.
  const fillPage = (p: number) => vm.pool.pt.fill(7, p * 1024, (p + 1) * 1024);
  for (const p of pages) fillPage(p);
  const inFreeStack = (p: number) => Array.from(vm.pool.freeStack.subarray(0, vm.pool.freeCount())).includes(p);
  return { vm, pool: vm.pool, epoch: vm.epoch, pages: Array.from(pages), inFreeStack };
}

describe('page-table reclaim honours the epoch boundary', () => {
  it('a page retired in epoch e stays while a participant is in e; freed once it moves past e', () => {
    const { pool, epoch, pages: [p], inFreeStack } = fixture();
    epoch.enter(0); // a vCPU walking in the current epoch e
    const e = epoch.current();
    pool.retire(p!); // unlinked and retired in e (the global epoch is now e + 1)
    expect(pool.reclaim()).toBe(0);
    expect(pool.retiredCount()).toBe(1);
    expect(inFreeStack(p!)).toBe(false);
    expect(pool.pt[p! * 1024]).toBe(7);
    epoch.enter(0); // the vCPU re-enters: now in e + 1, past the retirement
    expect(epoch.current()).toBe(e + 1);
    expect(pool.reclaim()).toBe(1);
    expect(inFreeStack(p!)).toBe(true);
    expect(pool.pt[p! * 1024]).toBe(0);
  });

  it('freed once the participant in e goes idle; a participant that entered after the retirement does not hold it', () => {
    const { pool, epoch, pages: [p, q], inFreeStack } = fixture();
    epoch.enter(0);
    pool.retire(p!);
    epoch.enter(1); // entered after the retirement (epoch e + 1): cannot reach p
    expect(pool.reclaim()).toBe(0);
    epoch.exit(0);
    expect(pool.reclaim()).toBe(1);
    expect(inFreeStack(p!)).toBe(true);
    // q retired while participant 1 sits in e + 1: held until it leaves.
    pool.retire(q!);
    expect(pool.reclaim()).toBe(0);
    epoch.exit(1);
    expect(pool.reclaim()).toBe(1);
    expect(inFreeStack(q!)).toBe(true);
  });
});

describe('page-table reclaim judges only retirements made before its participant scan', () => {
  it('a page retired, with a walker entering, between the tail read and the scan is not freed', () => {
    const { pool, epoch, pages: [early, late], inFreeStack } = fixture();
    pool.retire(early!); // retired with everyone idle: free to go in any order
    let ran = 0;
    pool.reclaimHook = () => {
      // Parked inside reclaim(): a vCPU enters the current epoch and walks into `late` while it
      // is still linked; then another thread unlinks and retires it.
      ran++;
      epoch.enter(0);
      pool.retire(late!);
    };
    pool.reclaim();
    pool.reclaimHook = null;
    expect(ran).toBe(1);
    expect(inFreeStack(early!)).toBe(true);
    // The walker is still in the epoch `late` was retired in: it must not have been freed.
    expect(inFreeStack(late!)).toBe(false);
    expect(pool.pt[late! * 1024]).toBe(7);
    expect(pool.retiredCount()).toBe(1);
    // Once the walker leaves, the next reclaim frees it.
    epoch.exit(0);
    expect(pool.reclaim()).toBe(1);
    expect(inFreeStack(late!)).toBe(true);
  });
});
