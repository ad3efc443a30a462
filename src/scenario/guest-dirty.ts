/**
 * guest-dirty: one vCPU runs a guest in long mode with identity paging (its own 4-level page
 * tables in slot 0 at GPA 0, which holds its code page and tables and is never logged); slot 1
 * at GPA 1 GiB holds the data, created with dirty logging unless the mode is `nolog`, mapped by
 * the guest with 4K PTEs or 2M PDEs (`--guest-pt`). A pass writes one byte to every 4K page of
 * slot 1 and exits to the VMM. Each step prints its name, wall time and the delta of every KVM
 * stat (VM and vCPU) that changed — the shapes a KVM developer checks: no pf_fast in the shadow
 * MMU, INITIALLY_SET leaving the pass after log_on fault-free, log_off + re-touch restoring huge
 * mappings where guest and host allow. Modeled time per step goes in the JSON.
 *
 * The vCPU runs on the main thread (one vCPU, VMM calls between passes, as the selftest's
 * vcpu_run()/ucall loop): deterministic op counts and modeled ns for a seed, no worker needed.
 */
import { Host } from '../host/host.js';
import { Vm, type ThreadCtx } from '../kvm/vm.js';
import { Metrics, countersToRecord } from '../metrics/counters.js';
import { KVM_MEM_LOG_DIRTY_PAGES } from '../kvm/memslot.js';
import { KVM_DIRTY_LOG_INITIALLY_SET, KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE } from '../kvm/dirty/strategy.js';
import { kVcpuStatNames, kVmStatNames } from '../kvm/stats.js';
import { audit } from '../kvm/audit.js';
import { costModelFlag, kMmuFlags } from './common-flags.js';
import { formatSize, parseSize, UsageError } from './flags.js';
import { guestSlot0Pages, setupGuestPaging } from './guest-paging.js';
import { memoryReport } from './assemble.js';
import { hostInfo, snapshot } from './host-info.js';
import { kResultSchema, type PhaseSummary, type RunResult } from './result.js';
import type { ScenarioDef } from './scenario.js';
import type { AccessSource } from '../kvm/vcpu.js';

const kModes = ['nolog', 'legacy', 'manual', 'manual_init'] as const;
type DirtyMode = (typeof kModes)[number];
const kSlot1Gpa = 2 ** 30;

/** `-b`: GiB when a bare number (the issue's `-b 1`, `-b 4`), else a size with a suffix. */
function slotBytes(s: string): number {
  const b = /^\d+$/.test(s) ? Number(s) * 2 ** 30 : parseSize(s);
  if (!(b > 0) || b % 4096 !== 0) throw new UsageError(`-b ${s}: give GiB (a bare number) or a size that is a multiple of 4 KiB`);
  return b;
}

/** One pass: a store to every 4K page of slot 1, in order. */
class Pass implements AccessSource {
  write = true;
  readonly pte = null;
  private i = 0;
  constructor(private readonly base: number, private readonly pages: number, readonly iteration: number) {}
  next(): number {
    return this.i < this.pages ? this.base + this.i++ : -1;
  }
}

export const guestDirty: ScenarioDef = {
  name: 'guest-dirty',
  summary: 'one vCPU with its own page tables writes every page of a dirty-logged slot, step by step: stat deltas per step (pf_*, pages_*, mmu_*), dirty bits per get',
  after: 'dirty_log_test.c / dirty_log_perf_test.c with a guest that runs with paging (the shadow MMU\'s view)',
  flags: [
    ...kMmuFlags.filter((f) => f.name === 'mmu' || f.name === 'guest-pt' || f.name === 'lock-model'),
    { name: 'bytes', short: 'b', type: 'string', default: '1', help: 'slot 1 size: GiB as a bare number (-b 1, -b 4), or a size (64M)' },
    { name: 'backing', short: 's', type: 'enum', choices: ['anonymous', 'anonymous_thp'], default: 'anonymous', help: 'backing of slot 1' },
    { name: 'dirty-mode', type: 'enum', choices: kModes, default: 'legacy', help: 'nolog | legacy (GET clears) | manual (GET + CLEAR, MANUAL_PROTECT) | manual_init (… with INITIALLY_SET)' },
    { name: 'iterations', short: 'i', type: 'int', default: 3, min: 1, max: 1000, help: 'passes with a get (and clear) after each' },
    { name: 'audit-steps', type: 'bool', default: true, help: 'run the invariant audit after every step' },
    { name: 'seed', type: 'int', default: 1, min: 0, max: 2 ** 31 - 1, help: 'random seed (recorded; the passes are sequential)' },
    { name: 'cost-model', type: 'string', default: 'default', help: 'cost-model profile (name or JSON path) for modeled time' },
    { name: 'json', type: 'string', default: null, help: 'write the result JSON to this file' },
    { name: 'quiet', short: 'q', type: 'bool', default: false, help: 'print only the step lines' },
  ],
  check(f) {
    const b = slotBytes(f.bytes as string);
    if (f['guest-pt'] === '2m' && b % 2 ** 21 !== 0) throw new UsageError(`-b ${String(f.bytes)} with --guest-pt 2m: slot 1 must be a multiple of 2 MiB`);
    return [];
  },
  async run(f, io) {
    const start = snapshot();
    const bytes = slotBytes(f.bytes as string);
    const pages = bytes / 4096;
    const mode = f['dirty-mode'] as DirtyMode;
    const leaf = f['guest-pt'] as '4k' | '2m';
    const iters = f.iterations as number;
    const cost = costModelFlag(f['cost-model'] as string);
    const base = kSlot1Gpa / 4096;
    const pagingOpts = { regions: [{ gfn: base, pages }], leaf };
    const slot0 = guestSlot0Pages(pagingOpts);
    const host = Host.create({ memory: bytes + slot0 * 4096 + 64 * 2 ** 20, pageContent: slot0 });
    const ctx: ThreadCtx = { metrics: new Metrics(cost), hostThread: host.thread() };
    const m = ctx.metrics;
    const lockModel = f['lock-model'] === null || f['lock-model'] === undefined ? {} : { lockModel: f['lock-model'] === 'on' };
    const vm = Vm.create(host, 0, ctx, { mmu: f.mmu as 'tdp' | 'shadow', maxVcpus: 1, ...lockModel });
    if (mode === 'manual') vm.enableCap('KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2', KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE);
    if (mode === 'manual_init') vm.enableCap('KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2', KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE | KVM_DIRTY_LOG_INITIALLY_SET);
    const vcpu = vm.createVcpu();
    setupGuestPaging(vm, pagingOpts);
    const logFlags = mode === 'nolog' ? 0 : KVM_MEM_LOG_DIRTY_PAGES;
    let hva = 0;
    const phases: PhaseSummary[] = [];
    const steps: Record<string, unknown>[] = [];
    const violations: ReturnType<typeof audit>['violations'] = [];
    let pass = 0;
    const stats = () => ({ vm: vm.getStats() as unknown as Record<string, number>, vcpu: vcpu.getStats() as unknown as Record<string, number> });

    const step = (name: string, fn: () => string | null) => {
      const before = stats();
      const t0 = m.t;
      const w0 = performance.now();
      const extra = fn();
      const wallNs = (performance.now() - w0) * 1e6;
      // The vCPU and the VMM run on this thread: its clock holds both (run() adds its share to the vCPU's too).
      const modeledNs = m.t - t0;
      const after = stats();
      const deltas: Record<string, number> = {};
      const tokens: string[] = [];
      for (const [names, k] of [[kVmStatNames, 'vm'], [kVcpuStatNames, 'vcpu']] as const) {
        for (const n of names) {
          const d = (after[k][n] ?? 0) - (before[k][n] ?? 0);
          if (d === 0 || !Number.isFinite(d)) continue;
          deltas[n] = d;
          tokens.push(`${n}${d > 0 ? '+' : '-'}${Math.abs(d)}`);
        }
      }
      io.print(`  ${name.padEnd(14)} ${(wallNs / 1e3).toFixed(1).padStart(12)} us  ${tokens.join(' ')}`);
      if (extra !== null) io.print(`  ${extra}`);
      phases.push({ name, wallNs, modeledNs } as PhaseSummary);
      steps.push({ name, wallUs: wallNs / 1e3, modeledNs, deltas, ...(extra !== null ? { extra } : {}) });
      if (f['audit-steps'] === true) {
        ctx.hostThread.drain();
        for (const v of audit(host, [vm]).violations) violations.push({ ...v, detail: `after ${name}: ${v.detail}` });
      }
    };
    const run = (name: string) => step(name, () => {
      pass++;
      const n = vcpu.run(new Pass(base, pages, pass), pages + 1);
      if (n !== pages) throw new Error(`guest-dirty: ${name} retired ${n} of ${pages} stores`);
      return null;
    });
    const region = (flags: number, size: number) => vm.setUserMemoryRegion2({ slot: 1, flags, guestPhysAddr: kSlot1Gpa, memorySize: size, userspaceAddr: hva });
    const get = (k: number) => step(`get${k}`, () => {
      const bm = vm.getDirtyLog(1);
      let bits = 0;
      for (let i = 0; i < pages; i++) if ((bm[i >>> 5]! >>> (i & 31)) & 1) bits++;
      return `dirty_bits=${bits}/${pages}`;
    });
    const clear = (k: number) => step(`clear${k}`, () => {
      const ones = new Uint32Array(Math.ceil(pages / 64) * 2).fill(0xffffffff);
      vm.clearDirtyLog({ slot: 1, firstPage: 0, numPages: pages, bitmap: ones });
      return null;
    });

    io.print(`guest-dirty: --mmu ${String(f.mmu)}, slot 1 ${formatSize(bytes)} at GPA 1 GiB (${String(f.backing)}), guest ${leaf} leaves, --dirty-mode ${mode}, ${iters} pass(es)`);
    step('slot1_create', () => {
      hva = vm.mmap({ size: bytes, backing: f.backing as 'anonymous' | 'anonymous_thp' });
      region(logFlags, bytes);
      return null;
    });
    if (mode === 'nolog') {
      for (let k = 1; k <= 3; k++) run(`run${k}`);
      run('run_post');
      step('log_on', () => (region(KVM_MEM_LOG_DIRTY_PAGES, bytes), null));
      run('run_after_on');
    } else {
      run('run1');
      for (let k = 1; k <= iters; k++) {
        get(k);
        if (mode !== 'legacy') clear(k);
        if (k < iters) run(`run${k + 1}`);
      }
      run('run_post');
      step('log_off', () => (region(0, bytes), null));
      run('run_after_off');
      run('run_again');
      step('log_on', () => (region(KVM_MEM_LOG_DIRTY_PAGES, bytes), null));
      run('run_after_on');
    }
    step('slot1_delete', () => (region(logFlags, 0), null));
    ctx.hostThread.drain();
    const final = audit(host, [vm]);
    violations.push(...final.violations);
    const result: RunResult = {
      schema: kResultSchema, status: violations.length === 0 ? 'ok' : 'failed',
      ...(violations.length > 0 ? { error: { errno: null, message: `audit failed: ${violations[0]!.kind}: ${violations[0]!.detail}` } } : {}),
      scenario: 'guest-dirty', config: { ...f }, seed: f.seed as number, host: hostInfo(start, 1), phases,
      histograms: {}, stats: {}, counters: countersToRecord(m.c), audit: { ok: violations.length === 0, violations },
      memory: memoryReport(host, [vm]), metrics: { steps: JSON.stringify(steps) }, output: [],
    };
    (result as RunResult & { steps: unknown }).steps = steps;
    return result;
  },
};
