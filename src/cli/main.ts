/**
 * mmuh: `mmuh run <scenario> [flags]`, `mmuh list`, `--help` everywhere.
 * Exit codes: 0 success; 1 the run failed (a KVM error out of a vCPU, or the audit found a
 * violation); 2 bad usage (unknown flag, bad size, impossible configuration).
 */
import { writeFileSync } from 'node:fs';
import { findScenario, kScenarios } from '../scenario/index.js';
import { UsageError, flagHelp, parseFlags } from '../scenario/flags.js';
import { consoleIo } from '../scenario/scenario.js';
import { KvmError } from '../host/errno.js';
import { renderText } from '../report/text.js';

const kUsage = `usage: mmuh <command> [args]

commands:
  run <scenario> [flags]   run a scenario (mmuh run <scenario> --help for its flags)
  list                     list the scenarios
  help                     this text

Results: --json FILE writes the result (schema kvm-mmu-harness/result@1).`;

function die(code: number, msg: string): number {
  process.stderr.write(`mmuh: ${msg}\n`);
  return code;
}

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === undefined || cmd === 'help' || cmd === '--help' || cmd === '-h') {
    process.stdout.write(kUsage + '\n');
    return cmd === undefined ? 2 : 0;
  }
  if (cmd === 'list') {
    for (const s of kScenarios) process.stdout.write(`${s.name.padEnd(28)} ${s.summary}  (after ${s.after})\n`);
    return 0;
  }
  if (cmd !== 'run') return die(2, `unknown command '${cmd}' (try mmuh --help)`);
  const [name, ...flags] = rest;
  if (name === undefined || name === '--help' || name === '-h') {
    process.stdout.write(`usage: mmuh run <scenario> [flags]\nscenarios: ${kScenarios.map((s) => s.name).join(', ')}\n`);
    return name === undefined ? 2 : 0;
  }
  const scenario = findScenario(name);
  if (!scenario) return die(2, `unknown scenario '${name}' (mmuh list shows them)`);
  if (flags.includes('--help') || flags.includes('-h')) {
    process.stdout.write(`usage: mmuh run ${scenario.name} [flags]\n${scenario.summary}\nafter KVM's ${scenario.after}\n\n${flagHelp(scenario.flags)}\n`);
    return 0;
  }
  let parsed: Record<string, unknown>;
  try {
    parsed = parseFlags(scenario.flags, flags);
  } catch (e) {
    if (e instanceof UsageError) return die(2, e.message);
    throw e;
  }
  const io = consoleIo();
  try {
    const result = await scenario.run(parsed, io);
    result.output = io.lines;
    if (!parsed.quiet) process.stdout.write(renderText(result) + '\n');
    const json = parsed.json as string | null;
    if (json) writeFileSync(json, JSON.stringify(result, null, 2) + '\n');
    if (typeof result.metrics.checksFailed === 'number' && result.metrics.checksFailed > 0) return die(1, `${result.metrics.checksFailed} check(s) failed`);
    if (!result.audit.ok) return die(1, `audit failed: ${result.audit.violations.length} violation(s), first: ${result.audit.violations[0]!.kind}: ${result.audit.violations[0]!.detail}`);
    return 0;
  } catch (e) {
    if (e instanceof UsageError) return die(2, e.message);
    if (e instanceof KvmError) return die(1, e.message);
    const err = e as Error;
    if (err && typeof err.message === 'string' && /^E[A-Z]+: /.test(err.message)) return die(1, err.message);
    throw e;
  }
}
