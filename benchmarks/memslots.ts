/**
 * memslots-32764: KVM_USER_MEM_SLOTS memslots of 2 MiB created one by one in one VM, then a
 * flags-only toggle (dirty logging on one slot) and a delete, in a child process
 * (memslots-child.ts) so peak RSS is the run's own (GNU time's ru_maxrss, as the other child
 * benchmarks). The same child with 0 slots gives the RSS the slots add to. Value: seconds from
 * the first create to the end of the delete, median of 3 runs (1 of 4096 slots under --quick).
 */
import { runChild, type ChildRun } from './child.js';
import { atMost, closeWindow, openWindow, repeatedFigure, round, type BenchOptions, type BenchResult, type Benchmark, type Figure } from './lib.js';

const GiB = 2 ** 30;

interface ChildOut {
  slots: number;
  createS: number;
  flagsMs: number;
  deleteMs: number;
  totalS: number;
  remaining: number;
  violations: number;
}

async function child(o: BenchOptions, n: number): Promise<{ run: ChildRun; out: ChildOut }> {
  const run = await runChild(process.execPath, ['dist/benchmarks/memslots-child.js', String(n)], { cwd: o.root, timeoutMs: 300_000 });
  if (run.exitCode !== 0) throw new Error(`memslots child (${n} slots) failed: exit ${run.exitCode} ${run.signal ?? ''}: ${run.stderrTail.trim().split('\n').pop() ?? ''}`);
  const out = JSON.parse(run.stdoutTail.trim().split('\n').pop()!) as ChildOut;
  if (out.remaining !== (n > 1 ? n - 1 : n) || out.violations !== 0) throw new Error(`memslots child: ${out.remaining} slots left (want ${n > 1 ? n - 1 : n}), ${out.violations} audit violation(s)`);
  return { run, out };
}

export const memslots32764: Benchmark = {
  name: 'memslots-32764',
  description: '32764 (KVM_USER_MEM_SLOTS) 2 MiB memslots created in one VM, then a dirty-logging toggle and a delete, in a child: time and peak RSS beyond the same child without slots',
  async run(o: BenchOptions): Promise<BenchResult> {
    const n = o.quick ? 4096 : 32764;
    const reps = o.quick ? 1 : 3;
    const w0 = openWindow();
    const ref = await child(o, 0);
    const runs: { run: ChildRun; out: ChildOut; window: ReturnType<typeof closeWindow> }[] = [];
    for (let i = 0; i < reps; i++) {
      const w = openWindow();
      const r = await child(o, n);
      runs.push({ ...r, window: closeWindow(w, 1, r.run.cpuMs ?? 0) });
      o.log(`  run ${i + 1}/${reps}: ${n} slots in ${r.out.createS.toFixed(2)} s, toggle ${r.out.flagsMs.toFixed(2)} ms, delete ${r.out.deleteMs.toFixed(2)} ms, peak RSS ${((r.run.peakRssBytes ?? 0) / 2 ** 20).toFixed(0)} MiB`);
    }
    const windows = runs.map((r) => r.window);
    const time = repeatedFigure('memslots-32764', runs.map((r) => r.out.totalS), 's', 'lower', windows, o.quick ? undefined : atMost(10, 's'));
    const refRss = ref.run.peakRssBytes ?? 0;
    const beyond = repeatedFigure('memslots-32764.peak-rss-beyond', runs.map((r) => ((r.run.peakRssBytes ?? NaN) - refRss) / GiB), 'GiB', 'lower', [], o.quick ? undefined : atMost(1, 'GiB'));
    beyond.notes.push(`the child without slots peaks at ${(refRss / 2 ** 20).toFixed(0)} MiB (${ref.run.peakRssSource}); the slots map no resident memory (nothing is faulted in)`);
    const create = repeatedFigure('memslots-32764.create-per-slot', runs.map((r) => (r.out.createS * 1e6) / n), 'us', 'lower', windows);
    const toggle = repeatedFigure('memslots-32764.toggle', runs.map((r) => r.out.flagsMs), 'ms', 'lower', windows);
    const del = repeatedFigure('memslots-32764.delete', runs.map((r) => r.out.deleteMs), 'ms', 'lower', windows);
    const figures: Figure[] = [time, beyond, create, toggle, del];
    for (const f of figures) f.value = round(f.value, 3);
    if (o.quick) time.notes.push(`quick: ${n} slots, no target`);
    return {
      name: this.name, description: this.description, seed: o.seed,
      config: { slots: n, slotBytes: 2 * 2 ** 20, repetitions: reps },
      figures, window: closeWindow(w0, 1, runs.reduce((s, r) => s + (r.run.cpuMs ?? 0), 0) + (ref.run.cpuMs ?? 0)),
      samples: runs.map((r, i) => ({ rep: i + 1, out: r.out, peakRssBytes: r.run.peakRssBytes, peakRssSource: r.run.peakRssSource, wallS: round(r.run.wallS, 2), window: r.window })),
      details: { referencePeakRssBytes: refRss, referenceOut: ref.out },
      noisy: time.noisy, notes: time.notes,
    };
  },
};
