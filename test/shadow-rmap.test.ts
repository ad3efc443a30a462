// The shadow MMU's rmaps (src/kvm/mmu/shadow/rmap.ts) against KVM's pte_list_* semantics:
// encoding transitions, removal, a random model check, per-memslot head arrays, growth across
// attachments, and a second view in a real worker thread.
import { describe, expect, it } from 'vitest';
import { Worker } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import {
  RmapArena, RmapIterator, RmapCtl, RmapHead, PteListDesc, kPteListExt, kPteListDescBytes, slotHeadBytes,
} from '../src/kvm/mmu/shadow/rmap.js';
import { KvmError } from '../src/host/errno.js';
import { xorshift32 } from '../src/workload/random.js';

const fixture = fileURLToPath(new URL('./fixtures/rmap-reader.mjs', import.meta.url));

/** The raw head words [tag, ptr]. */
function headWords(a: RmapArena, head: number): [number, number] {
  return [a.heads[head * 2 + RmapHead.kRmapHeadTag]!, a.heads[head * 2 + RmapHead.kRmapHeadPtr]!];
}
/** A descriptor's [more, spte_count, tail_count, sptes...] as KVM would print it. */
function desc(a: RmapArena, d: number): { more: number; spteCount: number; tailCount: number; sptes: number[] } {
  const b = d * PteListDesc.kDescWords;
  const n = a.descs[b + PteListDesc.kDescSpteCount]!;
  return {
    more: a.descs[b + PteListDesc.kDescMore]!,
    spteCount: n,
    tailCount: a.descs[b + PteListDesc.kDescTailCount]!,
    sptes: Array.from(a.descs.subarray(b + PteListDesc.kDescSptes, b + PteListDesc.kDescSptes + n)),
  };
}
function entries(it: RmapIterator, head: number): number[] {
  const out: number[] = [];
  for (let s = it.begin(head); s !== 0; s = it.next()) out.push(s);
  return out;
}
function oneHead(): { a: RmapArena; it: RmapIterator; h: number } {
  const a = RmapArena.create();
  const base = a.allocSlot(0, 16);
  return { a, it: new RmapIterator(a), h: a.headIndex(base, 0, 1, 3) };
}
/** Independent gfn_to_index arithmetic (division, not the shifts the model uses). */
function lpages(base: number, npages: number, level: number): number {
  const per = 512 ** (level - 1);
  return Math.floor((base + npages - 1) / per) - Math.floor(base / per) + 1;
}

describe('pte_list encoding transitions (pte_list_add)', () => {
  it('empty -> single -> 2-entry desc -> 14 -> a 15th pushes a head desc with tail_count 14', () => {
    const { a, it, h } = oneHead();
    expect(kPteListExt).toBe(14);
    expect(kPteListDescBytes).toBe(128);
    expect(headWords(a, h)).toEqual([0, 0]);
    expect(a.count(h)).toBe(0);

    expect(a.add(h, 1000)).toBe(0);
    expect(headWords(a, h)).toEqual([0, 1000]);
    expect(a.count(h)).toBe(1);
    expect(a.bytes().descs).toBe(0);

    expect(a.add(h, 1001)).toBe(1);
    const [tag, d1] = headWords(a, h);
    expect(tag).toBe(RmapHead.KVM_RMAP_MANY);
    expect(desc(a, d1)).toEqual({ more: 0, spteCount: 2, tailCount: 0, sptes: [1000, 1001] });
    expect(a.bytes().descs).toBe(128);

    for (let i = 2; i < 14; i++) expect(a.add(h, 1000 + i)).toBe(i);
    expect(headWords(a, h)).toEqual([1, d1]);
    expect(desc(a, d1).spteCount).toBe(14);
    expect(a.count(h)).toBe(14);

    expect(a.add(h, 1014)).toBe(14);
    const d2 = headWords(a, h)[1];
    expect(d2).not.toBe(d1);
    expect(desc(a, d2)).toEqual({ more: d1, spteCount: 1, tailCount: 14, sptes: [1014] });
    expect(desc(a, d1).spteCount).toBe(14);
    expect(a.count(h)).toBe(15);
    expect(a.bytes().descs).toBe(256);

    for (let i = 15; i < 28; i++) expect(a.add(h, 1000 + i)).toBe(i);
    expect(a.add(h, 1028)).toBe(28);
    const d3 = headWords(a, h)[1];
    expect(desc(a, d3)).toEqual({ more: d2, spteCount: 1, tailCount: 28, sptes: [1028] });
    expect(a.count(h)).toBe(29);
    // Head descriptor first, then the older, full ones.
    expect(entries(it, h)).toEqual([1028, ...Array.from({ length: 14 }, (_, i) => 1014 + i), ...Array.from({ length: 14 }, (_, i) => 1000 + i)]);
  });

  it('rejects an sptep that is not a positive SPTE index and a head outside the arena', () => {
    const { a, h } = oneHead();
    for (const bad of [0, -1, 1.5, 2 ** 31]) expect(() => a.add(h, bad)).toThrow(KvmError);
    expect(() => a.add(0, 5)).toThrow(/EINVAL/);
    expect(() => a.count(1 << 30)).toThrow(/EINVAL/);
  });
});

describe('pte_list_remove / pte_list_desc_remove_entry', () => {
  /** 20 entries: head desc d2 holds 114..119 (6), tail d1 holds 100..113 (14). */
  function twenty() {
    const o = oneHead();
    for (let i = 0; i < 20; i++) o.a.add(o.h, 100 + i);
    const d2 = headWords(o.a, o.h)[1];
    const d1 = desc(o.a, d2).more;
    return { ...o, d1, d2 };
  }

  it('from the head desc: its last entry fills the hole', () => {
    const { a, h, d1, d2 } = twenty();
    a.remove(h, 115);
    expect(desc(a, d2)).toEqual({ more: d1, spteCount: 5, tailCount: 14, sptes: [114, 119, 116, 117, 118] });
    expect(desc(a, d1).spteCount).toBe(14);
    expect(a.count(h)).toBe(19);
  });

  it('from a tail desc: the head desc\'s last entry moves in, so the tail stays full', () => {
    const { a, h, d1, d2 } = twenty();
    a.remove(h, 103);
    expect(desc(a, d1).sptes).toEqual([100, 101, 102, 119, 104, 105, 106, 107, 108, 109, 110, 111, 112, 113]);
    expect(desc(a, d2)).toEqual({ more: d1, spteCount: 5, tailCount: 14, sptes: [114, 115, 116, 117, 118] });
    expect(a.count(h)).toBe(19);
  });

  it('an emptied head desc is freed and the next becomes the head; one left keeps its desc; then empty', () => {
    const { a, it, h, d1 } = twenty();
    for (let i = 114; i < 120; i++) a.remove(h, i);
    expect(headWords(a, h)).toEqual([RmapHead.KVM_RMAP_MANY, d1]);
    expect(a.bytes().descs).toBe(128);
    expect(a.count(h)).toBe(14);
    for (let i = 100; i < 113; i++) a.remove(h, i);
    // KVM does not fold a 1-entry chain back into a single pointer.
    expect(headWords(a, h)).toEqual([RmapHead.KVM_RMAP_MANY, d1]);
    expect(desc(a, d1)).toEqual({ more: 0, spteCount: 1, tailCount: 0, sptes: [113] });
    expect(a.count(h)).toBe(1);
    expect(entries(it, h)).toEqual([113]);
    a.remove(h, 113);
    expect(headWords(a, h)).toEqual([0, 0]);
    expect(a.bytes().descs).toBe(0);
    expect(a.count(h)).toBe(0);
    expect(it.begin(h)).toBe(0);
    // A freed descriptor is reused before the bump pointer moves.
    const bump = a.ctl[RmapCtl.kRmapCtlDescBump];
    a.add(h, 1);
    a.add(h, 2);
    expect(a.ctl[RmapCtl.kRmapCtlDescBump]).toBe(bump);
  });

  it('a single entry goes back to an empty head', () => {
    const { a, h } = oneHead();
    a.add(h, 7);
    a.remove(h, 7);
    expect(headWords(a, h)).toEqual([0, 0]);
  });

  it('an absent sptep is a KVM bug: throws naming head and sptep, and changes nothing', () => {
    const { a, it, h } = oneHead();
    expect(() => a.remove(h, 9)).toThrow(new RegExp(`sptep 9 .*head ${h}\\b`));
    a.add(h, 7);
    expect(() => a.remove(h, 9)).toThrow(/sptep 9/);
    for (let i = 0; i < 20; i++) a.add(h, 100 + i);
    expect(() => a.remove(h, 9)).toThrow(/KVM_BUG_ON_DATA_CORRUPTION/);
    expect(a.count(h)).toBe(21);
    expect(entries(it, h).sort((x, y) => x - y)).toEqual([7, ...Array.from({ length: 20 }, (_, i) => 100 + i)]);
  });
});

describe('zap loops', () => {
  it('kvm_zap_all_rmap_sptes: iterate (clear SPTEs), then destroy() drops them all and frees the descs', () => {
    const { a, it, h } = oneHead();
    for (let i = 0; i < 40; i++) a.add(h, 500 + i);
    expect(a.bytes().descs).toBe(3 * 128);
    expect(entries(it, h).length).toBe(40);
    expect(a.destroy(h)).toBe(40);
    expect(headWords(a, h)).toEqual([0, 0]);
    expect(a.bytes().descs).toBe(0);
    expect(a.destroy(h)).toBe(0);
    a.add(h, 3);
    expect(a.destroy(h)).toBe(1);
    expect(a.count(h)).toBe(0);
  });

  it('remove one, begin() again (kvm_set_pte_rmap\'s restart): every survivor is seen exactly once', () => {
    const { a, it, h } = oneHead();
    for (let i = 1; i <= 45; i++) a.add(h, i);
    const seen = new Map<number, number>();
    restart: for (;;) {
      for (let s = it.begin(h); s !== 0; s = it.next()) {
        if (s % 3 === 0) {
          a.remove(h, s);
          continue restart;
        }
      }
      break;
    }
    for (let s = it.begin(h); s !== 0; s = it.next()) seen.set(s, (seen.get(s) ?? 0) + 1);
    const want = Array.from({ length: 45 }, (_, i) => i + 1).filter((s) => s % 3 !== 0);
    expect([...seen.keys()].sort((x, y) => x - y)).toEqual(want);
    expect([...seen.values()].every((n) => n === 1)).toBe(true);
    expect(a.count(h)).toBe(30);
  });
});

describe('random add/remove/destroy against a Map<head, Set<sptep>> model', () => {
  it('count, add()\'s return, iteration (each entry once) and descriptor bytes agree after every step', () => {
    const a = RmapArena.create({ heads: 8, descs: 4 });
    const it = new RmapIterator(a);
    const b1 = a.allocSlot(0x1000, 200);
    const b2 = a.allocSlot(0x12345, 150);
    const heads: number[] = [];
    for (let g = 0; g < 200; g++) heads.push(a.headIndex(b1, 0x1000, 1, 0x1000 + g));
    for (let g = 0; g < 150; g += 3) heads.push(a.headIndex(b2, 0x12345, 1, 0x12345 + g));
    heads.push(a.headIndex(b2, 0x12345, 2, 0x12345), a.headIndex(b2, 0x12345, 3, 0x12345));
    const model = new Map<number, Set<number>>(heads.map((h) => [h, new Set()]));
    const used = new Set<number>();
    let seed = 0x2545f491;
    const rand = (n: number): number => ((seed = xorshift32(seed)) % n);
    let peak = 0;
    for (let step = 0; step < 20_000; step++) {
      // A few hot heads get long chains (several descriptors), the rest stay short.
      const h = rand(4) === 0 ? heads[rand(4)]! : heads[rand(heads.length)]!;
      const set = model.get(h)!;
      const op = rand(100);
      if (op < 58 || set.size === 0) {
        let s: number;
        do s = 1 + rand(0x7ffffffe); while (used.has(s));
        expect(a.add(h, s)).toBe(set.size);
        set.add(s);
        used.add(s);
      } else if (op < 97) {
        const victims = [...set];
        const s = victims[rand(victims.length)]!;
        a.remove(h, s);
        set.delete(s);
        used.delete(s);
      } else if (op < 99) {
        expect(a.destroy(h)).toBe(set.size);
        for (const s of set) used.delete(s);
        set.clear();
      } else {
        let s: number;
        do s = 1 + rand(0x7ffffffe); while (set.has(s));
        expect(() => a.remove(h, s)).toThrow(/KVM_BUG_ON_DATA_CORRUPTION/);
      }
      peak = Math.max(peak, set.size);
      expect(a.count(h)).toBe(set.size);
      const got = entries(it, h);
      expect(got.length).toBe(set.size);
      expect(new Set(got)).toEqual(set);
      if (step % 500 === 0 || step === 19_999) {
        let descs = 0;
        for (const [hh, ss] of model) {
          expect(a.count(hh)).toBe(ss.size);
          // Tails full, head desc non-empty: a chain of c entries is ceil(c / 14) descriptors.
          if (headWords(a, hh)[0] === RmapHead.KVM_RMAP_MANY) descs += Math.ceil(ss.size / kPteListExt);
        }
        expect(a.bytes().descs).toBe(descs * kPteListDescBytes);
      }
    }
    expect(peak).toBeGreaterThan(3 * kPteListExt);
  });
});

describe('per-memslot head arrays (memslot_rmap_alloc, gfn_to_rmap)', () => {
  it('sizes per level match gfn_to_index arithmetic for unaligned base and npages', () => {
    const cases: [number, number][] = [[0, 1], [0x1ff, 2], [0x200, 512], [0x201, 512], [0x3ffff, 2], [0x12345, 0x40001], [0x7fe00, 0x200 * 0x201 + 7]];
    const a = RmapArena.create({ heads: 2, slots: 2 });
    const live: { base: number; set: Set<number> }[] = [];
    let total = 0;
    for (const [base, np] of cases) {
      const want = lpages(base, np, 1) + lpages(base, np, 2) + lpages(base, np, 3);
      expect(slotHeadBytes(np, base)).toBe(8 * want);
      const rb = a.allocSlot(base, np);
      total += want;
      expect(a.bytes().heads).toBe(8 * total);
      // Every (level, index) of the slot has its own head; the first and last gfn at each level
      // give index 0 and lpages - 1.
      const set = new Set<number>();
      for (let level = 1; level <= 3; level++) {
        const first = a.headIndex(rb, base, level, base);
        const last = a.headIndex(rb, base, level, base + np - 1);
        expect(last - first).toBe(lpages(base, np, level) - 1);
        for (let hd = first; hd <= last; hd++) set.add(hd);
      }
      expect(set.size).toBe(want);
      let overlaps = 0;
      for (const other of live) for (const hd of set) if (other.set.has(hd)) overlaps++;
      expect(overlaps).toBe(0);
      live.push({ base, set });
    }
    // 0x1ff + 2 pages straddle a 2M boundary: two 2M heads, one 1G head.
    expect(slotHeadBytes(2, 0x1ff)).toBe(8 * (2 + 2 + 1));
  });

  it('≈ 0.2 % of guest memory: 1 GiB at gfn 0x40000 is 262144 + 512 + 1 heads', () => {
    const npages = 2 ** 30 / 4096;
    expect(slotHeadBytes(npages, 0x40000)).toBe(8 * (262144 + 512 + 1));
    const frac = slotHeadBytes(npages, 0x40000) / 2 ** 30;
    expect(frac).toBeGreaterThan(8 / 4096);
    expect(frac).toBeLessThan(0.002);
    // Misaligned by one page the same slot touches one more 2M and one more 1G page.
    expect(slotHeadBytes(npages, 0x40001)).toBe(8 * (262144 + 513 + 2));
  });

  it('bad geometry is EINVAL; freeing a slot with a live rmap is refused', () => {
    const a = RmapArena.create();
    expect(() => a.allocSlot(0, 0)).toThrow(/EINVAL/);
    expect(() => a.allocSlot(-1, 4)).toThrow(/EINVAL/);
    expect(() => a.allocSlot(2 ** 32 - 1, 2)).toThrow(/EINVAL/);
    const rb = a.allocSlot(0x100, 64);
    expect(() => a.freeSlot(rb, 0x100, 65)).toThrow(/EINVAL/);
    expect(() => a.freeSlot(rb + 1, 0x100, 64)).toThrow(/EINVAL/);
    const h = a.headIndex(rb, 0x100, 2, 0x100);
    a.add(h, 42);
    expect(() => a.freeSlot(rb, 0x100, 64)).toThrow(/non-empty rmap head/);
    a.remove(h, 42);
    a.freeSlot(rb, 0x100, 64);
    expect(() => a.freeSlot(rb, 0x100, 64)).toThrow(/EINVAL/);
    expect(a.bytes().heads).toBe(0);
  });

  it('freed heads come back zeroed, including the free-range bookkeeping', () => {
    const a = RmapArena.create();
    const it = new RmapIterator(a);
    const s1 = a.allocSlot(0, 300);
    const s2 = a.allocSlot(0x1000, 300);
    const s3 = a.allocSlot(0x2000, 10); // keeps s1 + s2 off the bump pointer
    for (let g = 0; g < 300; g += 7) {
      const h = a.headIndex(s1, 0, 1, g);
      for (let i = 0; i < 20; i++) a.add(h, 1 + g * 100 + i);
      a.destroy(h);
      a.add(a.headIndex(s2, 0x1000, 1, 0x1000 + g), 5);
      a.remove(a.headIndex(s2, 0x1000, 1, 0x1000 + g), 5);
    }
    a.freeSlot(s1, 0, 300);
    a.freeSlot(s2, 0x1000, 300); // coalesces with s1's range
    const s4 = a.allocSlot(0x5000, 200); // first fit: splits the coalesced range
    const s5 = a.allocSlot(0x6000, 400); // 402 heads: takes the rest (604 - 202) exactly
    for (const [rb, base, np] of [[s4, 0x5000, 200], [s5, 0x6000, 400]] as const) {
      for (let level = 1; level <= 3; level++) {
        for (let g = base; g < base + np; g += level === 1 ? 1 : 512) {
          const h = a.headIndex(rb, base, level, g);
          expect(headWords(a, h)).toEqual([0, 0]);
          expect(it.begin(h)).toBe(0);
        }
      }
    }
    // Both new slots fit in the freed space: nothing came from the bump pointer, no free range is left.
    expect(a.ctl[RmapCtl.kRmapCtlHeadFree]).toBe(0);
    a.freeSlot(s3, 0x2000, 10);
    a.freeSlot(s4, 0x5000, 200);
    a.freeSlot(s5, 0x6000, 400);
    expect(a.ctl[RmapCtl.kRmapCtlHeadBump]).toBe(1);
  });

  it('gfn_write_track: counts per 4K gfn, refused below 0 and above USHRT_MAX, zero again on a slot reusing freed heads', () => {
    const a = RmapArena.create({ heads: 2 });
    const b = new RmapArena(a.handle); // another attachment, views taken before the growth
    const s1 = a.allocSlot(0x1000, 600);
    const s2 = a.allocSlot(0x4000, 10); // keeps s1's heads off the bump pointer
    const h = (rb: number, base: number, g: number): number => a.headIndex(rb, base, 1, g);
    for (let g = 0x1000; g < 0x1000 + 600; g += 3) a.updateWriteTrack(h(s1, 0x1000, g), (g % 5) + 1);
    for (let g = 0x1000; g < 0x1000 + 600; g++) expect(b.writeTrackCount(h(s1, 0x1000, g))).toBe((g - 0x1000) % 3 === 0 ? (g % 5) + 1 : 0);
    expect(a.writeTrackCount(h(s2, 0x4000, 0x4000))).toBe(0);
    expect(() => a.updateWriteTrack(h(s1, 0x1000, 0x1001), -1)).toThrow(/gfn_write_track .* -1/);
    a.updateWriteTrack(h(s1, 0x1000, 0x1001), 0xffff);
    expect(() => a.updateWriteTrack(h(s1, 0x1000, 0x1001), 1)).toThrow(/65536/);
    // kvm_page_track_free_memslot(): a root still in use may leave its gfn counted; the counts
    // go with the slot, and a new slot on the same heads starts from zero.
    a.freeSlot(s1, 0x1000, 600);
    const s3 = a.allocSlot(0x8000, 600);
    expect(h(s3, 0x8000, 0x8000)).toBe(h(s1, 0x1000, 0x1000));
    for (let g = 0x8000; g < 0x8000 + 600; g++) expect(a.writeTrackCount(h(s3, 0x8000, g))).toBe(0);
    expect(a.bytes().track).toBe(a.bytes().heads / 4);
  });

  it('10k alloc/free cycles of mixed sizes reuse memory: live bytes exact, reserve flat, all coalesces back', () => {
    const a = RmapArena.create({ heads: 16, slots: 2 });
    let seed = 0x9e3779b9;
    const rand = (n: number): number => ((seed = xorshift32(seed)) % n);
    const sizes = [1, 2, 17, 512, 513, 1000, 4096, 777];
    const live: { rb: number; base: number; np: number }[] = [];
    let liveHeads = 0;
    let capAt1k = 0;
    let rbMax = 0;
    for (let cycle = 0; cycle < 10_000; cycle++) {
      if (live.length >= 8 || (live.length > 0 && rand(2) === 0)) {
        const [s] = live.splice(rand(live.length), 1);
        a.freeSlot(s!.rb, s!.base, s!.np);
        liveHeads -= slotHeadBytes(s!.np, s!.base) / 8;
      } else {
        const np = sizes[rand(sizes.length)]! + rand(3);
        const base = rand(1 << 20);
        const rb = a.allocSlot(base, np);
        rbMax = Math.max(rbMax, rb);
        live.push({ rb, base, np });
        liveHeads += slotHeadBytes(np, base) / 8;
      }
      expect(a.bytes().heads).toBe(8 * liveHeads);
      if (cycle === 1000) capAt1k = a.handle.heads.byteLength;
    }
    expect(a.handle.heads.byteLength).toBe(capAt1k);
    // At most 8 slots of <= 4098 + 10 + 2 heads are live: the high-water mark stays a small multiple.
    expect(a.ctl[RmapCtl.kRmapCtlHeadBump]).toBeLessThan(4 * 8 * 4110);
    // Slot records are recycled too.
    expect(rbMax).toBeLessThanOrEqual(9);
    for (const s of live) a.freeSlot(s.rb, s.base, s.np);
    expect(a.bytes().heads).toBe(0);
    expect(a.ctl[RmapCtl.kRmapCtlHeadBump]).toBe(1);
    expect(a.ctl[RmapCtl.kRmapCtlHeadFree]).toBe(0);
  });
});

describe('growth in place, seen by another attachment', () => {
  it('heads, descriptors and slot records grow several times; a second RmapArena on the handle sees every entry', () => {
    const a = RmapArena.create({ heads: 2, descs: 2, slots: 2 });
    const b = new RmapArena(a.handle); // another thread's views, taken before any growth
    const itB = new RmapIterator(b);
    const capsH = new Set<number>(), capsD = new Set<number>(), capsS = new Set<number>();
    const note = (): void => {
      capsH.add(a.handle.heads.byteLength); capsD.add(a.handle.descs.byteLength); capsS.add(a.handle.slots.byteLength);
    };
    note();
    const slots: { rb: number; base: number; np: number }[] = [];
    for (let i = 0; i < 12; i++) {
      const base = i * 0x10000, np = 3 + i * 40;
      slots.push({ rb: a.allocSlot(base, np), base, np });
      note();
    }
    const want = new Map<number, number[]>();
    let s = 1;
    for (const { rb, base, np } of slots) {
      for (let g = base; g < base + np; g += 5) {
        const h = a.headIndex(rb, base, 1, g);
        const list: number[] = [];
        for (let k = (g % 37) + 1; k > 0; k--) { a.add(h, s); list.push(s++); }
        want.set(h, list);
        note();
      }
    }
    expect(capsH.size).toBeGreaterThanOrEqual(4);
    expect(capsD.size).toBeGreaterThanOrEqual(4);
    expect(capsS.size).toBeGreaterThanOrEqual(3);
    // The buffers grew in place: the same SABs, never copied.
    expect(b.handle.heads).toBe(a.handle.heads);
    for (const { rb, base } of slots) expect(b.headIndex(rb, base, 1, base)).toBe(a.headIndex(rb, base, 1, base));
    for (const [h, list] of want) {
      expect(b.count(h)).toBe(list.length);
      expect(entries(itB, h).sort((x, y) => x - y)).toEqual(list);
    }
    // And the other way round: b grows the descriptors, a sees what b added.
    const h0 = [...want.keys()][0]!;
    const before = a.handle.descs.byteLength;
    const more = Array.from({ length: 3000 }, (_, i) => 0x1000000 + i);
    for (const x of more) b.add(h0, x);
    expect(a.handle.descs.byteLength).toBeGreaterThan(before);
    expect(a.count(h0)).toBe(want.get(h0)!.length + more.length);
    expect(entries(new RmapIterator(a), h0).sort((x, y) => x - y)).toEqual([...want.get(h0)!, ...more]);
    expect(a.bytes()).toEqual(b.bytes());
  });

  it('a worker thread attached before the growth reads every entry after it, and its own growth is seen here', async () => {
    const a = RmapArena.create({ heads: 2, descs: 2, slots: 2 });
    const rb0 = a.allocSlot(0, 4);
    a.add(a.headIndex(rb0, 0, 1, 0), 11);
    // The SAB flag stands in for mmu_lock's handoff: 1 = worker attached, 2 = its turn, 3 = done.
    const flag = new Int32Array(new SharedArrayBuffer(4));
    const w = new Worker(fixture, { workerData: { handle: a.handle, flag: flag.buffer } });
    const done = new Promise<{ counts: number[]; lists: number[][]; grewHead: number }>((resolve, reject) => {
      w.once('message', resolve);
      w.once('error', reject);
    });
    while (Atomics.load(flag, 0) === 0) await new Promise((r) => setTimeout(r, 1));
    const rb = a.allocSlot(0x40000, 2000);
    const heads: number[] = [];
    const lists: number[][] = [];
    for (let g = 0; g < 2000; g += 10) {
      const h = a.headIndex(rb, 0x40000, 1, 0x40000 + g);
      const list: number[] = [];
      for (let k = 0; k <= g % 31; k++) { const s = 100 + g * 64 + k; a.add(h, s); list.push(s); }
      heads.push(h);
      lists.push(list);
    }
    const descBytes = a.handle.descs.byteLength;
    w.postMessage({ heads });
    Atomics.store(flag, 0, 2);
    Atomics.notify(flag, 0);
    const r = await done;
    await w.terminate();
    expect(r.counts).toEqual(lists.map((l) => l.length));
    expect(r.lists).toEqual(lists.map((l) => [...l].sort((x, y) => x - y)));
    // The worker added 5000 entries to one head, growing the descriptors past this thread's views.
    expect(Atomics.load(flag, 0)).toBe(3);
    expect(a.handle.descs.byteLength).toBeGreaterThan(descBytes);
    expect(a.count(r.grewHead)).toBe(lists[0]!.length + 5000);
    expect(entries(new RmapIterator(a), r.grewHead).length).toBe(lists[0]!.length + 5000);
  });
});
