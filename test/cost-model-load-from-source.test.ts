import { describe, expect, it } from 'vitest';
import { costModelPath, costVector, loadCostModel } from '../src/metrics/cost-model.js';
import { kOp } from '../src/metrics/ops.js';
import { kDefaultCostModelPath } from './fixtures/vm-ctx.js';

describe('cost models resolve from the TypeScript sources too', () => {
  it('loads the default profile by path and prices operations from it', () => {
    const m = loadCostModel(kDefaultCostModelPath);
    expect(m.name).toBe('default');
    const v = costVector(m);
    expect(v[kOp.vm_exit]).toBe(1200);
    expect(v[kOp.lock_wait_ns]).toBe(0);
  });

  // BUG (src/metrics/cost-model.ts costModelPath, line 21): a built-in name is resolved as
  // `../../../src/metrics/cost-models/<name>.json` relative to the module's own URL. That is the
  // package root only for dist/src/metrics/cost-model.js; from src/metrics/cost-model.ts (what
  // vitest and any ts loader import) it points one directory above the package, so
  // loadCostModel() throws ENOENT "cost model 'default' not found".
  it('loads the default profile by name', () => {
    expect(costModelPath('default')).toBe(kDefaultCostModelPath);
    expect(loadCostModel().name).toBe('default');
  });
});
