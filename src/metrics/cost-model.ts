/**
 * Cost-model profiles: JSON files of ns per counted operation. The modeled clock of a thread
 * is Σ count(op) × price(op); `lock_wait_ns` is wall time and never priced.
 */
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
  const m = JSON.parse(text) as CostModel;
  for (const k of Object.keys(m.ns)) {
    if (!(k in kOp)) fail('EINVAL', `cost model '${nameOrPath}' prices unknown operation '${k}'`);
  }
  return m;
}

/** Price vector indexed by op id; unpriced ops cost 0. */
export function costVector(m: CostModel): Float64Array {
  const v = new Float64Array(kOpCount);
  for (let i = 0; i < kOpCount; i++) v[i] = m.ns[kOpNames[i]!] ?? 0;
  v[kOp.lock_wait_ns] = 0;
  return v;
}
