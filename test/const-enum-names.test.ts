// Op ids and vCPU stat indices are const enums (tsc inlines them as literals on the hot path),
// while the names printed in results come from the kOpNames / kVcpuStatNames arrays. The two
// must agree member by member, or a counter would be reported under another op's name.
import { describe, expect, it } from 'vitest';
import * as ops from '../dist/src/metrics/ops.js';
import * as stats from '../dist/src/kvm/stats.js';
import * as layout from '../dist/src/kvm/vcpu-layout.js';

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

  // VcpuStat is the u64 word of each stat in struct kvm_vcpu_stat (the vCPU's stats block): it
  // must be the descriptor's offset / 8, for every descriptor, or the hot path would bump one
  // stat and KVM_GET_STATS_FD report it under another name.
  it('VcpuStat[name] is the u64 word of name in kVcpuStatDescs, for every vCPU stat', () => {
    const entries = enumEntries(stats, 'VcpuStat');
    expect(entries.length).toBe(stats.kVcpuStatDescs.length);
    for (const [name, word] of entries) expect(stats.kVcpuStatDescs.find((d) => d.name === name)?.offset).toBe(word * 8);
  });

  it('VcpuLayout.kVcpuStatWords is the size of struct kvm_vcpu_stat, and the block fits before the harness block', () => {
    const L = enumEntries(layout, 'VcpuLayout');
    const get = (n: string) => L.find(([k]) => k === n)![1];
    expect(get('kVcpuStatWords')).toBe(stats.kVcpuStatWords);
    expect(get('kVcpuStats') + get('kVcpuStatWords')).toBeLessThanOrEqual(get('kVcpuHarness'));
    // The Float64 blocks lie past the PML buffer (Int32 words) and inside the vCPU's SAB.
    expect(get('kVcpuStats') * 8).toBeGreaterThanOrEqual((get('kVcpuPmlBuffer') + get('PML_LOG_NR_ENTRIES')) * 4);
    expect((get('kVcpuHarness') + 5) * 8).toBeLessThanOrEqual(get('kVcpuBytes'));
  });
});
