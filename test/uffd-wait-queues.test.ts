// The kernel side of userfaultfd (fs/userfaultfd.c) on one thread, exactly: read() takes the
// oldest pending message and moves it to fault_wqh; wake_userfault() wakes every entry of both
// queues in the range and only those; a message woken before it was read is never read; a
// thread that cancels (userfaultfd_must_wait() saw the mapping) leaves the queue; the resolution's
// modeled ns reaches the woken thread.
import { describe, expect, it } from 'vitest';
import { Userfaultfd, WaiterState, createWakeBoard } from '../src/host/userfaultfd.js';

function ctx(n: number): Userfaultfd {
  const board = createWakeBoard(1);
  return Userfaultfd.create(0, n, board, createWakeBoard(1));
}

describe('userfaultfd wait queues', () => {
  it('read() is FIFO and moves the message to fault_wqh', () => {
    const u = ctx(4);
    u.queueFault(2, 0, 0, 10, 1, false);
    u.queueFault(0, 0, 0, 20, 0, false);
    u.queueFault(3, 0, 0, 30, 0, false);
    expect(u.pending()).toBe(3);
    expect(u.read()).toBe(2);
    expect(u.waiterState(2)).toBe(WaiterState.kRead);
    expect(u.waiterFlags(2)).toBe(1);
    expect(u.read()).toBe(0);
    expect(u.pending()).toBe(1);
    expect(u.queued()).toBe(3);
  });
  it('wake() wakes pending and read entries in [start, end) of that VMA only, with the resolution cost', () => {
    const u = ctx(5);
    u.queueFault(0, 0, 0, 10, 0, false); // read below
    u.queueFault(1, 0, 0, 11, 0, false); // pending, in range
    u.queueFault(2, 0, 0, 12, 0, false); // pending, just past the range
    u.queueFault(3, 0, 1, 10, 0, false); // another VMA
    u.queueFault(4, 0, 0, 9, 0, false); // below the range
    expect(u.read()).toBe(0);
    expect(u.wake(0, 10, 12, 1234.5)).toBe(2);
    expect(u.waiterState(0)).toBe(WaiterState.kWoken);
    expect(u.waiterState(1)).toBe(WaiterState.kWoken);
    for (const w of [2, 3, 4]) expect(u.waiterState(w)).toBe(WaiterState.kPending);
    expect(u.finishWait(1)).toBe(1234.5);
    expect(u.waiterState(1)).toBe(WaiterState.kIdle);
    // The woken pending entry left the queue: the next read is the oldest of the rest.
    expect(u.pending()).toBe(3);
    expect(u.read()).toBe(2);
    expect(u.read()).toBe(3);
    expect(u.read()).toBe(4);
    expect(u.read()).toBe(-1);
  });
  it('cancelFault() takes the entry off either queue; the cost is known only once a reader had it', () => {
    const u = ctx(2);
    u.queueFault(0, 0, 0, 1, 0, false);
    u.queueFault(1, 0, 0, 2, 0, false);
    expect(u.cancelFault(1)).toBe(0);
    expect(u.read()).toBe(0);
    u.setResolveNs(0, 77);
    expect(u.cancelFault(0)).toBe(77);
    expect(u.queued()).toBe(0);
    expect(u.read()).toBe(-1);
    expect(u.wake(0, 0, 100, 1)).toBe(0);
  });
  it('the park hook holds read() while set', () => {
    const u = ctx(1);
    u.queueFault(0, 0, 0, 1, 0, false);
    u.setPark(true);
    expect(u.readable()).toBe(false);
    expect(u.read()).toBe(-1);
    u.setPark(false);
    expect(u.read()).toBe(0);
  });
});
