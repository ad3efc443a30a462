// §3.4: --cost-model FILE is validated in the main thread before workers start (every
// operation priced, each a finite number >= 0, unknown keys named): one line, exit 2.
import { describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mmuh, oneLine } from './fixtures/mmuh.js';
import { loadCostModel, validateCostModel } from '../src/metrics/cost-model.js';
import { KvmError } from '../src/host/errno.js';
import { kDefaultCostModelPath } from './fixtures/vm-ctx.js';

const def = JSON.parse(readFileSync(kDefaultCostModelPath, 'utf8')) as { ns: Record<string, number> };

describe('--cost-model validation', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mmuh-cost-'));
  const cases: [string, string, RegExp][] = [
    ['negative', JSON.stringify({ ns: { ...def.ns, vm_exit: -1 } }), /price of 'vm_exit' must be a finite number >= 0, got -1/],
    ['infinite', `{"ns": ${JSON.stringify({ ...def.ns }).replace('"vm_exit":1200', '"vm_exit":1e999')}}`, /price of 'vm_exit' must be a finite number >= 0, got Infinity/],
    ['string', JSON.stringify({ ns: { ...def.ns, tlb_miss: '2' } }), /price of 'tlb_miss' must be a finite number >= 0, got "2"/],
    ['unknown op', JSON.stringify({ ns: { ...def.ns, vm_exitt: 1 } }), /prices unknown operation\(s\) 'vm_exitt'/],
    ['unknown key', JSON.stringify({ ...def, prices: {} }), /unknown key\(s\) 'prices'/],
    ['missing op', JSON.stringify({ ns: { ...def.ns, walk_step: undefined } }), /has no price for 'walk_step'/],
    ['no ns', JSON.stringify({ name: 'x' }), /needs an "ns" object/],
    ['not JSON', '{"ns":', /is not valid JSON/],
  ];
  it.each(cases)('%s: refused with a sentence naming the key', (name, text, re) => {
    const file = join(dir, `${name.replace(/ /g, '-')}.json`);
    writeFileSync(file, text);
    expect(() => loadCostModel(file)).toThrow(KvmError);
    expect(() => loadCostModel(file)).toThrow(re);
  });
  it('the CLI: exit 2, one line, no stack trace, before any worker starts', () => {
    for (const [name, text, re] of [cases[0]!, cases[7]!]) {
      const file = join(dir, `cli-${name.replace(/ /g, '-')}.json`);
      writeFileSync(file, text);
      const r = mmuh(['run', 'dirty-log-perf', '-b', '4M', '--workers', '1', '--cost-model', file]);
      expect(r.code).toBe(2);
      expect(oneLine(r)).toMatch(re);
      expect(r.out).toBe('');
    }
  });
  it('the shipped default model passes the schema', () => {
    expect(() => validateCostModel('default', def)).not.toThrow();
  });
  it('a missing file is one line too', () => {
    const r = mmuh(['run', 'demand-paging', '--cost-model', join(dir, 'none.json')]);
    expect(r.code).toBe(2);
    expect(oneLine(r)).toMatch(/ENOENT: cost model .* not found/);
  });
});
