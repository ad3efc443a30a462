/**
 * Guest programs a worker runs for a vCPU: a memstress stream (the default, StreamSpec) or a
 * selftest's own guest code (memslot_perf_test's). A spec crosses to the worker by structured
 * clone; the program is built there, with the worker's modeled clock for programs that report
 * their own timing.
 */
import type { Metrics } from '../metrics/counters.js';
import type { AccessSource, KvmRunMmio } from '../kvm/vcpu.js';
import { MemstressStream, type StreamSpec } from './memstress.js';
import { MemslotPerfGuest, type MemslotPerfGuestSpec } from './memslot-perf-guest.js';
import { ConversionGuest, type ConversionGuestSpec } from './conversion-guest.js';

export type GuestSpec = (StreamSpec & { kind?: 'memstress' }) | MemslotPerfGuestSpec | ConversionGuestSpec;

export interface GuestProgram extends AccessSource {
  /** The VMM's handling of a KVM_EXIT_MMIO of this vCPU (vcpu_worker's checks), if it has any. */
  onMmioExit?(mmio: KvmRunMmio): void;
  /** Checks the guest made that failed (a hypercall the host refused), if it makes any. */
  readonly guestFailures?: number;
}

export function guestProgram(spec: GuestSpec, clock: Metrics): GuestProgram {
  if (spec.kind === 'memslot-perf') return new MemslotPerfGuest(spec, clock);
  if (spec.kind === 'conversion') return new ConversionGuest(spec);
  return new MemstressStream(spec);
}
