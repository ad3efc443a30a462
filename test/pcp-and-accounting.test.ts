import { describe, expect, it } from 'vitest';
import { Zone } from '../src/host/buddy.js';
import { PcpCache, Pcp } from '../src/host/pcp.js';
import { Host, HostPage } from '../src/host/host.js';
import { kMiB } from './fixtures/vm-ctx.js';

const kPreferred0 = { mode: 'preferred', node: 0 } as const;

describe('per-thread page cache (pcp)', () => {
  it('refills one 64-page block and hands it out in ascending order', () => {
    const z = Zone.create(0, 0, 4096);
    const pcp = new PcpCache(z);
    const got: number[] = [];
    for (let i = 0; i < Pcp.kPcpBatch; i++) got.push(pcp.alloc());
    expect(got).toEqual(Array.from({ length: 64 }, (_, i) => i));
    expect(pcp.count).toBe(0);
    expect(z.freePages()).toBe(4096 - 64);
    expect(pcp.alloc()).toBe(64); // the next refill takes [64, 128)
    expect(pcp.count).toBe(63);
    expect(z.freePages()).toBe(4096 - 128);
  });

  it('drain returns exactly the cached frames, merged into buddies', () => {
    const z = Zone.create(0, 0, 4096);
    const pcp = new PcpCache(z);
    const out: number[] = [];
    for (let i = 0; i < 10; i++) out.push(pcp.alloc());
    pcp.drain();
    expect(pcp.count).toBe(0);
    expect(z.freePages()).toBe(4096 - 10);
    // [10,12) [12,16) [16,32) [32,64) from the drained block; [64,4096) from the refill's split.
    const blocks = Array.from({ length: 13 }, (_, o) => z.freeBlocks(o));
    expect(blocks).toEqual([0, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0]);
    for (const p of out) pcp.free(p);
    expect(z.freePages()).toBe(4096 - 10); // still cached
    pcp.drain();
    expect(z.freePages()).toBe(4096);
    expect(z.freeBlocks(12)).toBe(1);
  });

  it('refills frame by frame when no 64-page block is left, and fails when the zone is empty', () => {
    // 40 frames: an order-5 block at 0 and an order-3 block at 32.
    const z = Zone.create(0, 0, 40);
    const pcp = new PcpCache(z);
    const got: number[] = [];
    for (let p = pcp.alloc(); p >= 0; p = pcp.alloc()) got.push(p);
    const expected = [32, 33, 34, 35, 36, 37, 38, 39];
    for (let i = 0; i < 32; i++) expected.push(i);
    expect(got).toEqual(expected);
    expect(z.freePages()).toBe(0);
    expect(pcp.count).toBe(0);
  });

  it('spills a batch back to the zone above the high watermark', () => {
    const z = Zone.create(0, 0, 4096);
    const pcp = new PcpCache(z);
    const out: number[] = [];
    for (let i = 0; i < 320; i++) out.push(pcp.alloc());
    expect(z.freePages()).toBe(4096 - 320);
    for (let i = 0; i < Pcp.kPcpHigh; i++) pcp.free(out[i]!);
    expect(pcp.count).toBe(Pcp.kPcpHigh);
    expect(z.freePages()).toBe(4096 - 320);
    pcp.free(out[Pcp.kPcpHigh]!); // 257 > high: drain one batch
    expect(pcp.count).toBe(Pcp.kPcpHigh + 1 - Pcp.kPcpBatch);
    expect(z.freePages()).toBe(4096 - 320 + Pcp.kPcpBatch);
    for (let i = Pcp.kPcpHigh + 1; i < 320; i++) pcp.free(out[i]!);
    expect(pcp.count).toBe(256);
    pcp.drain();
    expect(z.freePages()).toBe(4096);
    expect(z.freeBlocks(12)).toBe(1);
  });
});

describe('host frame accounting per owner', () => {
  it('publishes per-thread owner counts at drain()', () => {
    const host = Host.create({ memory: 64 * kMiB });
    const t = host.thread();
    const small = [0, 1, 2].map((i) => t.allocFolio(0, 5, kPreferred0, i));
    const huge = t.allocFolio(HostPage.kOrder2M, 5, kPreferred0, 0);
    expect(small).toEqual([0, 1, 2]); // from the pcp block [0, 64)
    expect(huge).toBe(512); // lowest order-9 block left after splitting for [0, 64)
    expect(host.frames.owner(huge + 100)).toBe(5);
    expect(host.frames.order(huge + 100)).toBe(HostPage.kOrder2M);
    expect(host.ownedPages(5)).toBe(0); // batched in the thread until drain
    t.drain();
    expect(host.ownedPages(5)).toBe(3 + 512);
    t.freeFolio(small[1]!);
    t.freeFolio(huge);
    expect(host.ownedPages(5)).toBe(515);
    t.drain();
    expect(host.ownedPages(5)).toBe(2);
    expect(host.ownedPages(6)).toBe(0);
    expect(host.accounting().free).toBe(16384 - 2);
    t.freeFolio(small[0]!);
    t.freeFolio(small[2]!);
    t.drain();
    expect(host.ownedPages(5)).toBe(0);
    const a = host.accounting();
    expect(a.free).toBe(16384);
    expect(host.zones[0]!.freeBlocks(14)).toBe(1);
  });

  it('keeps owners apart and balances across two threads and two nodes', () => {
    const host = Host.create({ memory: 64 * kMiB, nodes: 2 });
    const node1 = host.zones[1]!.startPfn;
    expect(node1).toBe(1 << 18); // nodes start on 1 GiB boundaries
    const t1 = host.thread();
    const t2 = host.thread();
    const inter = { mode: 'interleave', node: 0 } as const;
    const a = [0, 1, 2, 3].map((i) => t1.allocFolio(0, 1, inter, i));
    expect(a).toEqual([0, node1, 1, node1 + 1]);
    const b = t2.allocFolio(HostPage.kOrder2M, 2, { mode: 'bind', node: 1 }, 0);
    expect(b).toBe(node1 + 512);
    expect(host.frames.owner(b)).toBe(2);
    t1.drain();
    t2.drain();
    expect(host.ownedPages(1)).toBe(4);
    expect(host.ownedPages(2)).toBe(512);
    const acc = host.accounting();
    expect(acc.nodes.map((n) => n.free)).toEqual([8192 - 2, 8192 - 2 - 512]);
    expect(acc.free + host.ownedPages(1) + host.ownedPages(2)).toBe(acc.pages);
    // Node 1 has 14 whole 2 MiB blocks left ([0,512) holds two 4K frames, [512,1024) is b).
    const t3 = host.thread();
    const bound: number[] = [];
    for (let i = 0; i < 14; i++) bound.push(t3.allocFolio(HostPage.kOrder2M, 3, { mode: 'bind', node: 1 }, i));
    expect(bound).toEqual(Array.from({ length: 14 }, (_, i) => node1 + 1024 + 512 * i));
    // Bound to a full node: no fallback; preferred falls back to node 0.
    expect(t3.allocFolio(HostPage.kOrder2M, 3, { mode: 'bind', node: 1 }, 14)).toBe(-1);
    expect(t3.allocFolio(HostPage.kOrder2M, 3, { mode: 'preferred', node: 1 }, 14)).toBe(512);
  });
});
