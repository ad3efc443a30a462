// guest-dirty prints KVM's shapes step by step: the steps in the order per dirty mode, a
// stat-delta line per step, dirty_bits after each get; no pf_fast under the shadow MMU (every
// write after write protection takes the full fault); INITIALLY_SET leaves the pass after log_on
// fault-free, while legacy logging write-protects everything at log_on; log off then re-touch
// restores 2M mappings where the guest maps 2M and the host backs with THP, and only there. The
// audit is clean after every step (exit 0), and modeled time is deterministic.
import { describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mmuh } from './fixtures/mmuh.js';

interface Step { name: string; modeledNs: number; deltas: Record<string, number>; extra?: string }

function guestDirty(args: string[]) {
  const json = join(mkdtempSync(join(tmpdir(), 'guest-dirty-')), 'r.json');
  const r = mmuh(['run', 'guest-dirty', '-b', '8M', ...args, '--json', json]);
  expect(r.code, r.err + r.out).toBe(0);
  const res = JSON.parse(readFileSync(json, 'utf8')) as { steps: Step[]; audit: { ok: boolean } };
  return { out: r.out, steps: res.steps, audit: res.audit, by: (n: string) => res.steps.find((s) => s.name === n)! };
}

const pages = (8 * 2 ** 20) / 4096;

describe('guest-dirty', () => {
  it('runs the issue\'s steps in order for every dirty mode, one line each, dirty_bits after a get', () => {
    const want: Record<string, string[]> = {
      legacy: ['slot1_create', 'run1', 'get1', 'run2', 'get2', 'run3', 'get3', 'run_post', 'log_off', 'run_after_off', 'run_again', 'log_on', 'run_after_on', 'slot1_delete'],
      manual: ['slot1_create', 'run1', 'get1', 'clear1', 'run2', 'get2', 'clear2', 'run3', 'get3', 'clear3', 'run_post', 'log_off', 'run_after_off', 'run_again', 'log_on', 'run_after_on', 'slot1_delete'],
      nolog: ['slot1_create', 'run1', 'run2', 'run3', 'run_post', 'log_on', 'run_after_on', 'slot1_delete'],
    };
    want.manual_init = want.manual!;
    for (const [mode, names] of Object.entries(want)) {
      const g = guestDirty(['--mmu', 'shadow', '--dirty-mode', mode]);
      expect(g.steps.map((s) => s.name), mode).toEqual(names);
      expect(g.audit.ok).toBe(true);
      for (const n of names) expect(g.out, n).toMatch(new RegExp(`^  ${n} +\\d+\\.\\d us  `, 'm'));
      if (mode !== 'nolog') expect(g.out.match(new RegExp(`^  dirty_bits=${pages}/${pages}$`, 'gm'))?.length).toBe(3);
      // The per-step lines carry the stats; the summary has no per-phase stats table to print.
      expect(g.out, mode).not.toMatch(/^stats after/m);
    }
  });

  it('shadow MMU shapes: no pf_fast; every pass after a get re-faults; INITIALLY_SET leaves run_after_on fault-free, legacy does not', () => {
    const legacy = guestDirty(['--mmu', 'shadow', '--dirty-mode', 'legacy']);
    const init = guestDirty(['--mmu', 'shadow', '--dirty-mode', 'manual_init']);
    for (const g of [legacy, init]) {
      for (const s of g.steps) expect(s.deltas.pf_fast ?? 0, s.name).toBe(0);
      expect(g.by('run2').deltas.pf_taken).toBe(pages);
      expect(g.by('run_again').deltas.pf_taken ?? 0).toBe(0);
    }
    expect(init.by('run_after_on').deltas.pf_taken ?? 0).toBe(0);
    expect(legacy.by('run_after_on').deltas.pf_taken).toBe(pages);
    // The TDP MMU with PML (its default) re-arms by clearing D bits: the same pass takes no fault.
    const tdp = guestDirty(['--mmu', 'tdp', '--dirty-mode', 'legacy']);
    expect(tdp.by('run2').deltas.pf_taken ?? 0).toBe(0);
  });

  it('log off then re-touch restores 2M mappings only where the guest maps 2M and the host backs with THP', () => {
    const huge = guestDirty(['--mmu', 'shadow', '--guest-pt', '2m', '-s', 'anonymous_thp']);
    expect(huge.by('run1').deltas.pages_2m ?? 0).toBe(0);
    expect(huge.by('run_after_off').deltas.pages_2m).toBe(pages / 512);
    for (const [pt, s] of [['4k', 'anonymous_thp'], ['2m', 'anonymous']] as const) {
      const g = guestDirty(['--mmu', 'shadow', '--guest-pt', pt, '-s', s]);
      expect(g.by('run_after_off').deltas.pages_2m ?? 0, `${pt} ${s}`).toBe(0);
    }
  });

  it('modeled time per step is the same run to run', () => {
    const a = guestDirty(['--mmu', 'shadow', '--dirty-mode', 'manual']);
    const b = guestDirty(['--mmu', 'shadow', '--dirty-mode', 'manual']);
    expect(b.steps.map((s) => s.modeledNs)).toEqual(a.steps.map((s) => s.modeledNs));
  });
});
