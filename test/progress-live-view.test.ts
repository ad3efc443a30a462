// The live view driven by hand: a fake terminal (isTTY, columns, rows) and a fake clock. The
// progress line's rate and ETA, escape codes on a terminal and none off it, NO_COLOR and
// TERM=dumb, output lines scrolling above the block, the block erased at the end, and the
// --watch table in kvm_stat's format.
import { describe, expect, it } from 'vitest';
import { colorEnabled, createLiveView, fmtDuration, si, watchTable } from '../src/report/progress.js';
import type { PhaseProbe, PhaseSample } from '../src/scenario/phase-observer.js';

function fakeTty(columns = 100, rows = 24) {
  const chunks: string[] = [];
  return { chunks, isTTY: true, columns, rows, write: (s: string) => chunks.push(s), all: () => chunks.join('') };
}

function clock() {
  let t = 0;
  return { now: () => t, set: (ms: number) => (t = ms) };
}

function probe(name: string, total: number) {
  const s: PhaseSample = { accesses: 0, faults: 0 };
  const p: PhaseProbe = { name, totalAccesses: total, vcpus: 2, sample: () => ({ ...s }) };
  return { p, s };
}

const SGR = /\x1b\[[0-9;]*m/;

describe('progress line', () => {
  it('rate over the last second, percentage and ETA from the remaining accesses', () => {
    const tty = fakeTty(120);
    const c = clock();
    const v = createLiveView(tty, { env: {}, now: c.now, timer: false })!;
    const { p, s } = probe('demand-paging', 4000);
    v.phaseStart(p);
    c.set(1000);
    s.accesses = 1000;
    s.faults = 500;
    v.tick();
    expect(v.frame()).toHaveLength(1);
    expect(v.frame()[0]).toMatch(/^demand-paging \[#{10}-{30}\]  25%  1.00k pages\/s  500 faults\/s  0:01 ETA 0:03$/);
    // The next second at twice the rate: the window forgets the first.
    c.set(2000);
    s.accesses = 3000;
    v.tick();
    c.set(2100);
    v.tick();
    expect(v.frame()[0]).toMatch(/  75%  1.82k pages\/s .* ETA 0:01$/);
  });

  it('escape codes on a terminal: the block is erased (CR, ESC[2K) and redrawn, name bold, bar green', () => {
    const tty = fakeTty();
    const c = clock();
    const v = createLiveView(tty, { env: {}, now: c.now, timer: false })!;
    const { p, s } = probe('populate', 100);
    v.phaseStart(p);
    s.accesses = 50;
    c.set(500);
    v.tick();
    expect(tty.all()).toContain('\r\x1b[2K');
    expect(tty.all()).toContain('\x1b[1mpopulate\x1b[0m');
    expect(tty.all()).toMatch(/\[\x1b\[32m#+\x1b\[0m-+\]/);
  });

  it('a line printed meanwhile goes above the block: erase, the line, redraw', () => {
    const tty = fakeTty();
    const v = createLiveView(tty, { env: { NO_COLOR: '1' }, now: clock().now, timer: false })!;
    v.phaseStart(probe('p', 10).p);
    tty.chunks.length = 0;
    v.print('Iteration 1 dirty memory time: 0.1s');
    expect(tty.chunks[0]).toBe('\r\x1b[2K');
    expect(tty.chunks[1]).toBe('Iteration 1 dirty memory time: 0.1s\n');
    expect(tty.chunks[2]).toMatch(/^p \[/);
  });

  it('close() erases the block and nothing is drawn after it', () => {
    const tty = fakeTty();
    const v = createLiveView(tty, { env: {}, now: clock().now, timer: false })!;
    v.phaseStart(probe('p', 10).p);
    v.close();
    const n = tty.chunks.length;
    expect(tty.chunks[n - 1]).toBe('\r\x1b[2K');
    v.tick();
    v.phaseStart(probe('q', 10).p);
    expect(tty.chunks.length).toBe(n);
  });

  it('lines are cut to the terminal width so they never wrap', () => {
    const tty = fakeTty(40);
    const v = createLiveView(tty, { env: {}, now: clock().now, timer: false })!;
    v.phaseStart(probe('a-very-long-phase-name-iteration-12', 10).p);
    const drawn = tty.all().split('\r\x1b[2K').pop()!.replace(/\x1b\[[0-9;]*[mAK]/g, '');
    expect(drawn.length).toBeLessThanOrEqual(39);
  });
});

describe('where there is no live view', () => {
  it('not a terminal (a pipe, a file), or --quiet: none', () => {
    expect(createLiveView({ isTTY: false, write: () => {} })).toBeNull();
    expect(createLiveView({ write: () => {} })).toBeNull();
    expect(createLiveView(fakeTty(), { quiet: true })).toBeNull();
  });

  it('NO_COLOR (not empty): no colour, still drawn in place', () => {
    const tty = fakeTty();
    const v = createLiveView(tty, { env: { NO_COLOR: '1' }, now: clock().now, timer: false })!;
    v.phaseStart(probe('p', 10).p);
    v.tick();
    expect(tty.all()).not.toMatch(SGR);
    expect(tty.all()).toContain('\r\x1b[2K');
    expect(colorEnabled({ NO_COLOR: '' })).toBe(true);
    expect(colorEnabled({ NO_COLOR: 'yes' })).toBe(false);
  });

  it('TERM=dumb: no escape at all; one line rewritten after CR; no --watch table', () => {
    const tty = fakeTty();
    const c = clock();
    const v = createLiveView(tty, { env: { TERM: 'dumb' }, now: c.now, timer: false, watch: true })!;
    v.runStart(() => ({ pf_taken: 5 }));
    v.phaseStart(probe('p', 10).p);
    c.set(1000);
    v.tick();
    v.print('a line');
    expect(tty.all()).not.toContain('\x1b');
    expect(tty.all()).toMatch(/^\rp \[/);
    expect(tty.all()).toContain('a line\n');
    expect(tty.all()).not.toContain('kvm statistics');
  });
});

describe('--watch: kvm_stat\'s table', () => {
  it('first after 0.25 s, then every --watch-delay; Total, %Total, CurAvg/s over the interval', () => {
    const tty = fakeTty();
    const c = clock();
    let stats: Record<string, number> = { pf_taken: 100, pages_4k: 100, remote_tlb_flush: 0, mmu_unsync: 0 };
    const v = createLiveView(tty, { env: {}, now: c.now, timer: false, watch: true, watchDelay: 2 })!;
    v.runStart(() => ({ ...stats }));
    c.set(200);
    v.tick();
    expect(v.frame()).toEqual([]);
    stats = { pf_taken: 300, pages_4k: 300, remote_tlb_flush: 1, mmu_unsync: 0 };
    c.set(250);
    v.tick();
    const row = (k: string, v: number, pct: string, cur: string) => ` ${k.padEnd(40)} ${String(v).padStart(10)}${pct.padStart(7)} ${cur.padStart(8)}`;
    expect(v.frame()).toEqual([
      'kvm statistics - summary',
      ` ${'Event'.padEnd(40)} ${'Total'.padStart(10)}${'%Total'.padStart(7)} ${'CurAvg/s'.padStart(8)}`,
      row('pages_4k', 300, '49.9', '800'),
      row('pf_taken', 300, '49.9', '800'),
      row('remote_tlb_flush', 1, '0.2', '4'),
      ` ${'Total'.padEnd(40)} ${'601'.padStart(10)}${''.padStart(7)} ${'1604'.padStart(8)}`,
    ]);
    // Not refreshed before the delay; then the rate is over the 2 s since.
    stats = { pf_taken: 700, pages_4k: 300, remote_tlb_flush: 1, mmu_unsync: 0 };
    c.set(2000);
    v.tick();
    expect(v.frame()[2]).toBe(row('pages_4k', 300, '49.9', '800'));
    c.set(2250);
    v.tick();
    expect(v.frame()[2]).toBe(row('pf_taken', 700, '69.9', '200'));
    expect(v.frame()[3]).toBe(row('pages_4k', 300, '30.0', ''));
    // The progress line sits above the table while a phase runs.
    v.phaseStart(probe('iteration-1', 10).p);
    expect(v.frame()[0]).toMatch(/^iteration-1 \[/);
    expect(v.frame()[1]).toBe('kvm statistics - summary');
    v.runEnd();
    expect(v.frame()).toHaveLength(1);
  });

  it('rows stop at the bottom of the screen; nothing yet reads "No matching events"', () => {
    const many = Object.fromEntries(Array.from({ length: 50 }, (_, i) => [`s${i}`, i + 1]));
    expect(watchTable(many, {}, 1, 10)).toHaveLength(2 + 7 + 1);
    expect(watchTable({ a: 0 }, {}, 1, 10)).toEqual(['kvm statistics - summary', expect.stringContaining('Event'), ' No matching events reported yet']);
  });
});

describe('formatting', () => {
  it('si and m:ss', () => {
    expect([0, 999, 1000, 1234, 2.5e6, 3e9].map(si)).toEqual(['0', '999', '1.00k', '1.23k', '2.50M', '3.00G']);
    expect([0, 59.4, 61, 3661].map(fmtDuration)).toEqual(['0:00', '0:59', '1:01', '1:01:01']);
  });
});
