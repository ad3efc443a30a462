/**
 * What a scenario is: a name, selftest-style flags, and a run function that prints the
 * selftest's lines as it goes and returns the result object.
 */
import type { FlagSpec } from './flags.js';
import type { RunResult } from './result.js';

export interface ScenarioIo {
  /** Print one line (and keep it for result.output). */
  print(line: string): void;
}

export interface ScenarioDef {
  name: string;
  summary: string;
  /** The KVM selftest it follows. */
  after: string;
  flags: FlagSpec[];
  run(flags: Record<string, unknown>, io: ScenarioIo): Promise<RunResult>;
}

export function consoleIo(quiet = false): ScenarioIo & { lines: string[] } {
  const lines: string[] = [];
  return {
    lines,
    print(line: string) {
      lines.push(line);
      if (!quiet) process.stdout.write(line + '\n');
    },
  };
}
