// Op ids and vCPU stat indices are const enums (tsc inlines them as literals on the hot path),
// while the names printed in results come from the kOpNames / kVcpuStatNames arrays. The two
// must agree member by member, or a counter would be reported under another op's name.
import { describe, expect, it } from 'vitest';
import * as ops from '../dist/src/metrics/ops.js';
import * as stats from '../dist/src/kvm/stats.js';

/** The enum object tsc keeps (preserveConstEnums): name -> index, plus index -> name. */
function enumEntries(mod: object, name: string): [string, number][] {
  const e = Reflect.get(mod, name) as Record<string, string | number> | undefined;
  if (e === undefined) throw new Error(`${name} is not emitted: is preserveConstEnums off?`);
  return Object.entries(e).filter((kv): kv is [string, number] => typeof kv[1] === 'number');
}

describe('const enums agree with the name arrays', () => {
  it('Op[name] is the index of name in kOpNames, for every op', () => {
    const entries = enumEntries(ops, 'Op');
    expect(entries.length).toBe(ops.kOpNames.length);
    for (const [name, id] of entries) expect(ops.kOpNames[id]).toBe(name);
    ops.kOpNames.forEach((name, i) => expect(ops.kOp[name]).toBe(i));
  });

  it('VcpuStat[name] is the index of name in kVcpuStatNames, for every stat', () => {
    const entries = enumEntries(stats, 'VcpuStat');
    expect(entries.length).toBe(stats.kVcpuStatNames.length);
    for (const [name, id] of entries) expect(stats.kVcpuStatNames[id]).toBe(name);
  });
});
