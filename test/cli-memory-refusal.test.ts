// §3.1: a run that will not fit is refused before anything is allocated: exit 2, one ENOMEM
// line naming what it needs and what is available (injected, so the test does not depend on
// the machine).
import { describe, expect, it } from 'vitest';
import { mmuh, oneLine } from './fixtures/mmuh.js';

describe('refuse what will not fit', () => {
  it('-b 4T: ENOMEM with need and available, quickly (nothing allocated)', () => {
    const t0 = Date.now();
    const r = mmuh(['run', 'demand-paging', '-b', '4T'], { MMUH_MEMORY_AVAILABLE: '8G' });
    expect(r.code).toBe(2);
    expect(oneLine(r)).toMatch(/^mmuh: ENOMEM: this run needs about [\d.]+ GiB .* but 8\.0 GiB is available \(MMUH_MEMORY_AVAILABLE\)/);
    expect(Date.now() - t0).toBeLessThan(15_000);
    expect(r.out).toBe('');
  });
  it('--host-memory 1T for a 64 MiB guest needs > 2 GiB of frame table: refused with 1 GiB available', () => {
    const r = mmuh(['run', 'demand-paging', '-b', '64M', '--host-memory', '1T'], { MMUH_MEMORY_AVAILABLE: '1G' });
    expect(r.code).toBe(2);
    expect(oneLine(r)).toMatch(/ENOMEM: this run needs about 2\.\d GiB \(frameTable 2\.\d GiB.*1 GiB host|ENOMEM: this run needs about 2\.\d GiB \(frameTable/);
    expect(oneLine(r)).toMatch(/but 1\.0 GiB is available/);
  });
  it('dirty-log-page-splitting is refused the same way (both passes size the same host)', () => {
    const r = mmuh(['run', 'dirty-log-page-splitting', '-b', '64M'], { MMUH_MEMORY_AVAILABLE: '16M' });
    expect(r.code).toBe(2);
    expect(oneLine(r)).toMatch(/ENOMEM: .* but 16 MiB is available/);
  });
});
