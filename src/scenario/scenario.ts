/**
 * What a scenario is: a name, selftest-style flags, and a run function that prints the
 * selftest's lines as it goes and returns the result object.
 */
import type { FlagSpec } from './flags.js';
import type { RunResult } from './result.js';
import type { PhaseObserver } from './phase-observer.js';

export interface ScenarioIo {
  /** Print one line (and keep it for result.output). */
  print(line: string): void;
  /** Watches the run's phases (the CLI's live progress); scenarios hand it to their Runner. */
  observer?: PhaseObserver;
}

export interface ScenarioDef {
  name: string;
  summary: string;
  /** The KVM selftest it follows. */
  after: string;
  flags: FlagSpec[];
  /**
   * Refuse conflicting or inert flag combinations (UsageError, exit 2) before anything is
   * allocated; may adjust flags (e.g. cap --workers) and returns notes for the result's
   * host.notes.
   */
  check?(flags: Record<string, unknown>): string[];
  run(flags: Record<string, unknown>, io: ScenarioIo): Promise<RunResult>;
}

/**
 * kselftest's KSFT_SKIP: the upstream test would skip here (TEST_REQUIRE / __TEST_REQUIRE
 * not met) instead of failing. The CLI prints the reason and exits 4.
 */
export const KSFT_SKIP = 4;
export class SkipError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SkipError';
  }
}

export function consoleIo(quiet = false, write: (s: string) => void = (s) => process.stdout.write(s)): ScenarioIo & { lines: string[] } {
  const lines: string[] = [];
  return {
    lines,
    print(line: string) {
      lines.push(line);
      if (!quiet) write(line + '\n');
    },
  };
}
