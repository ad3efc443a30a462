// memslot-perf prints memslot_perf_test's lines, test by test, with a modeled twin of each timing
// line; the histograms hold each memslot ioctl and MADV_DONTNEED by kind; -q (KVM_X86_QUIRK_SLOT_
// ZAP_ALL disabled) stops the moves from zapping what the guest maps outside the moved slot.
import { describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mmuh } from './fixtures/mmuh.js';

const ts = '\\d+\\.\\d{9}s';
const kTests = ['map', 'unmap', 'unmap chunked', 'move active area', 'move inactive area', 'RW'];

function runJson(args: string[]) {
  const f = join(mkdtempSync(join(tmpdir(), 'mmuh-mp-')), 'r.json');
  const r = mmuh(['run', 'memslot-perf', ...args, '--quiet', '--json', f]);
  return { ...r, json: r.code === 0 || r.code === 1 ? JSON.parse(readFileSync(f, 'utf8')) : null };
}

describe('memslot-perf', () => {
  it('prints every test\'s lines (-v, -d, 16 slots, a modeled test length)', () => {
    const r = runJson(['-s', '16', '-v', '-d', '--modeled-length', '0.001']);
    expect(r.code, r.err).toBe(0);
    const lines = r.out.trimEnd().split('\n');
    expect(lines[0]).toBe('Allowed Number of memory slots: 16');
    for (const name of kTests) {
      const at = lines.indexOf(`Testing ${name} performance with 1 runs, 0.001 modeled seconds each`);
      expect(at, name).toBeGreaterThan(0);
      const block = lines.slice(at + 1, at + 10);
      expect(block[0]).toMatch(/^Adding slots 1\.\.15, each slot with \d+ pages \+ \d+ extra pages last$/);
      expect(block[1]).toBe('Launching the test VM');
      expect(block[2]).toMatch(new RegExp(`^Test took ${ts} for slot setup \\+ ${ts} all iterations$`));
      expect(block[3]).toMatch(new RegExp(`^\\[modeled\\] Test took ${ts} for slot setup \\+ ${ts} all iterations$`));
      expect(block[4]).toMatch(new RegExp(`^Done [1-9]\\d* iterations, avg ${ts} each$`));
      expect(block[6]).toMatch(new RegExp(`^Best runtime result was ${ts} per iteration \\(with [1-9]\\d* iterations\\)$`));
    }
    expect(lines.at(-2)).toMatch(new RegExp(`^Best slot setup time for the whole test area was ${ts}$`));
    expect(lines.at(-1)).toMatch(new RegExp(`^\\[modeled\\] Best slot setup time for the whole test area was ${ts}$`));
    const j = r.json;
    expect(j.audit.ok).toBe(true);
    expect(j.metrics.checks).toBeGreaterThan(131072); // RW's every page, plus -d's
    const loops = (t: number) => j.iterations.find((x: { test: number }) => x.test === t).nloops;
    const h = (k: string) => j.histograms[`${k}/modeled`]?.count ?? 0;
    expect(h('map.set_memory_region.create')).toBe(15);
    // One MADV_DONTNEED per page, 32768 per unmap iteration; 64 chunks of 2 MiB, a chunk that
    // straddles two of the 15 slots of 2185 pages being two calls (one per slot piece).
    expect(h('unmap.madvise_dontneed')).toBe(32768 * loops(1));
    expect(h('unmap-chunked.madvise_dontneed')).toBeGreaterThanOrEqual(64 * loops(2));
    expect(h('unmap-chunked.madvise_dontneed')).toBeLessThanOrEqual((64 + 15) * loops(2));
    // Two moves per iteration; only the active area's half in the moved slot exits to MMIO.
    expect(h('move-active-area.set_memory_region.move')).toBe(2 * loops(3));
    expect(j.stats['move-active-area-1'].total.mmio_exits).toBeGreaterThan(0);
    expect(j.stats['move-inactive-area-1'].total.mmio_exits).toBe(0);
    expect(j.histograms['map.page_fault/modeled'].count).toBeGreaterThanOrEqual(8192);
  }, 60_000);

  it('the default cap (32763 slots) is too high for map; -l 0 does no full loop', () => {
    const r = mmuh(['run', 'memslot-perf', '-f', '0', '-e', '0', '-l', '0', '--quiet']);
    expect(r.code, r.err).toBe(0);
    expect(r.out.split('\n').slice(0, 2)).toEqual(['Testing map performance with 1 runs, 0 seconds each', 'Memslot count too high for this test, decrease the cap (max is 8209)']);
    expect(r.out).not.toMatch(/Best runtime/);
    const z = mmuh(['run', 'memslot-perf', '-s', '8', '-f', '4', '-e', '4', '-l', '0', '--quiet']);
    expect(z.code, z.err).toBe(0);
    expect(z.out).toMatch(/^No full loops done - too short test time or system too loaded\?$/m);
    expect(z.out).not.toMatch(/Best runtime/);
  });

  it('-l counts wall seconds: one second of move inactive area', () => {
    const r = mmuh(['run', 'memslot-perf', '-s', '8', '-f', '4', '-e', '4', '-l', '1', '-r', '2', '--quiet']);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/^Testing move inactive area performance with 2 runs, 1 seconds each$/m);
    const took = [...r.out.matchAll(/^Test took \d+\.\d{9}s for slot setup \+ (\d+)\.(\d{9})s all iterations$/gm)];
    expect(took).toHaveLength(2);
    for (const m of took) expect(Number(m[1]) + Number(m[2]) / 1e9).toBeGreaterThanOrEqual(1);
  });

  it('-q: moves zap only the moved slot, so the guest no longer faults its area in again each iteration', () => {
    const on = runJson(['-s', '8', '-f', '4', '-e', '4', '--modeled-length', '0.001']).json;
    const off = runJson(['-s', '8', '-f', '4', '-e', '4', '--modeled-length', '0.001', '-q']).json;
    const faults = (j: { stats: Record<string, { total: { pf_taken: number } }> }) => j.stats['move-inactive-area-1']!.total.pf_taken;
    expect(on.config.quirkSlotZapAll).toBe(true);
    expect(off.config.quirkSlotZapAll).toBe(false);
    // Quirk on: every move zaps the 48 area pages and the sync page; off: they stay mapped.
    expect(faults(on)).toBeGreaterThanOrEqual(49 * on.iterations[0].nloops);
    expect(faults(off)).toBeLessThanOrEqual(49);
    expect(on.audit.ok && off.audit.ok).toBe(true);
  });
});
