/**
 * Cost-model profiles: JSON files of ns per counted operation. The modeled clock of a thread
 * is Σ count(op) × price(op); `lock_wait_ns` is wall time and never priced.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { kOpCount, kOpNames, kOp } from './ops.js';
import { fail } from '../host/errno.js';

export interface CostModel {
  name: string;
  description: string;
  ns: Record<string, number>;
}

export const kDefaultCostModel = 'default';

/**
 * What the modeled clock assumes, in the words every view prints beside a modeled figure. A
 * thread's modeled time is the sum of its own operations' prices; a phase takes as long as its
 * slowest vCPU, so adding VMs or vCPUs that share this machine's cores does not slow any of them.
 */
export const kModeledAssumption =
  'modeled time assumes each vCPU runs on its own physical CPU with no host contention: a phase takes as long as its slowest vCPU\'s ' +
  'counted operations priced by the cost model (waiting for mmu_lock is priced only where vCPU faults take it on the modeled lock timeline: --lock-model on, the shadow MMU\'s default), so N one-vCPU VMs report N times ' +
  'one VM\'s rate however few cores ran them';

/**
 * A cost model's version: the first 12 hex digits of the SHA-256 of its prices (sorted by
 * operation), so two results name the same version exactly when they were priced alike.
 */
export function costModelVersion(m: CostModel): string {
  const prices = Object.keys(m.ns).sort().map((k) => [k, m.ns[k]]);
  return createHash('sha256').update(JSON.stringify(prices)).digest('hex').slice(0, 12);
}

export function costModelPath(name: string): string {
  if (name.includes('/') || name.endsWith('.json')) return name;
  // Profiles ship as JSON in src/metrics/cost-models; this module runs from src/ (tests) or
  // dist/src/ (CLI, workers), so find the package root first.
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json')) && dirname(dir) !== dir) dir = dirname(dir);
  return join(dir, 'src', 'metrics', 'cost-models', `${name}.json`);
}

export function loadCostModel(nameOrPath: string = kDefaultCostModel): CostModel {
  let text: string;
  try {
    text = readFileSync(costModelPath(nameOrPath), 'utf8');
  } catch {
    fail('ENOENT', `cost model '${nameOrPath}' not found (give a built-in name such as 'default' or a path to a JSON file)`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    fail('EINVAL', `cost model '${nameOrPath}' is not valid JSON (${(e as Error).message})`);
  }
  return validateCostModel(nameOrPath, json);
}

/**
 * The schema: { name?: string, description?: string, ns: { <op>: price } } with a price for
 * every counted operation (a missing one would silently cost 0), each a finite number ≥ 0, and
 * no unknown operation (a typo would be ignored). `lock_wait_ns` is wall time: never priced,
 * so it may be absent, and so may `uffd_wake_scan` (reported, never priced); `uffd_delay_ns` counts ns of the requested -d delay, priced 1, so it may
 * be absent too, as may `lock_wait_modeled_ns` (ns of modeled mmu_lock wait, priced 1). Runs in the main thread before workers start, so a bad file is one
 * line and exit 2, never a worker crash.
 */
export function validateCostModel(label: string, json: unknown): CostModel {
  const what = `cost model '${label}'`;
  if (typeof json !== 'object' || json === null || Array.isArray(json)) fail('EINVAL', `${what} must be a JSON object with an "ns" object of prices`);
  const m = json as Record<string, unknown>;
  const extra = Object.keys(m).filter((k) => k !== 'name' && k !== 'description' && k !== 'ns');
  if (extra.length > 0) fail('EINVAL', `${what} has unknown key(s) ${extra.map((k) => `'${k}'`).join(', ')} (allowed: name, description, ns)`);
  for (const k of ['name', 'description'] as const) {
    if (m[k] !== undefined && typeof m[k] !== 'string') fail('EINVAL', `${what}: "${k}" must be a string`);
  }
  const ns = m.ns;
  if (typeof ns !== 'object' || ns === null || Array.isArray(ns)) fail('EINVAL', `${what} needs an "ns" object mapping each operation to its price in ns`);
  const prices = ns as Record<string, unknown>;
  const unknown = Object.keys(prices).filter((k) => !(k in kOp));
  if (unknown.length > 0) fail('EINVAL', `${what} prices unknown operation(s) ${unknown.map((k) => `'${k}'`).join(', ')}`);
  for (const [k, v] of Object.entries(prices)) {
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) fail('EINVAL', `${what}: price of '${k}' must be a finite number >= 0, got ${typeof v === 'number' ? String(v) : JSON.stringify(v)}`);
  }
  if ('lock_wait_modeled_ns' in prices && prices.lock_wait_modeled_ns !== 1) fail('EINVAL', `${what}: 'lock_wait_modeled_ns' counts ns of modeled mmu_lock wait, so its price is 1 (or leave it out), got ${String(prices.lock_wait_modeled_ns)}`);
  if ('uffd_delay_ns' in prices && prices.uffd_delay_ns !== 1) fail('EINVAL', `${what}: 'uffd_delay_ns' counts ns of the -d delay, so its price is 1 (or leave it out), got ${String(prices.uffd_delay_ns)}`);
  const missing = kOpNames.filter((k) => k !== 'lock_wait_ns' && k !== 'uffd_wake_scan' && k !== 'uffd_delay_ns' && k !== 'lock_wait_modeled_ns' && !(k in prices));
  if (missing.length > 0) fail('EINVAL', `${what} has no price for ${missing.map((k) => `'${k}'`).join(', ')} (give 0 to make an operation free)`);
  return { name: typeof m.name === 'string' ? m.name : label, description: typeof m.description === 'string' ? m.description : '', ns: prices as Record<string, number> };
}

/** Price vector indexed by op id; unpriced ops cost 0. */
export function costVector(m: CostModel): Float64Array {
  const v = new Float64Array(kOpCount);
  for (let i = 0; i < kOpCount; i++) v[i] = m.ns[kOpNames[i]!] ?? 0;
  v[kOp.lock_wait_ns] = 0;
  // How many wait-queue entries a wake walks depends on how readers and vCPUs interleaved.
  v[kOp.uffd_wake_scan] = 0;
  // A duration the user asked for (-d), not a hardware cost: every model adds it as it is.
  v[kOp.uffd_delay_ns] = 1;
  // A wait on the modeled lock timeline is already in ns of modeled time.
  v[kOp.lock_wait_modeled_ns] = 1;
  return v;
}
