/**
 * What the Runner tells an onlooker on the main thread (the CLI's live progress and --watch)
 * about a run: when vCPU phases start and end, and how to read how far a phase got and the
 * KVM stats so far. It only reads shared words the vCPUs already keep — their accesses and
 * pf_taken (plain Float64 words each vCPU's own thread writes at the end of every slice and
 * every fault), the VM's stat words — so watching adds no write, and no ordering, to the fault
 * path. The values are approximate while the phase runs (a slice not yet ended, a word read
 * as a vCPU updates it) and exact after it; nothing decides on them.
 */

export interface PhaseSample {
  /** Guest accesses the phase's vCPUs retired so far. */
  accesses: number;
  /** pf_taken so far in this phase (all its vCPUs). */
  faults: number;
}

export interface PhaseProbe {
  readonly name: string;
  /** Guest memory accesses the phase's streams make in all (memstress: one per page per vCPU). */
  readonly totalAccesses: number;
  readonly vcpus: number;
  sample(): PhaseSample;
}

export interface PhaseObserver {
  /** The Runner exists; `stats()` reads the main KVM stats summed over its VMs and vCPUs. */
  runStart(stats: () => Record<string, number>): void;
  phaseStart(p: PhaseProbe): void;
  phaseEnd(name: string): void;
  runEnd(): void;
}
