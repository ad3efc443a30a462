/** The scenario registry. */
import { demandPaging } from './demand-paging.js';
import { dirtyLogPerf } from './dirty-log-perf.js';
import { dirtyLogPageSplitting } from './dirty-log-page-splitting.js';
import { memslotPerf } from './memslot-perf.js';
import { memslotModificationStress } from './memslot-modification-stress.js';
import { conversionStorm } from './conversion-storm.js';
import { guestMemfd } from './guest-memfd.js';
import { privateMemConversions } from './private-mem-conversions.js';
import { mmuCompare } from './mmu-compare.js';
import { guestDirty } from './guest-dirty.js';
import type { ScenarioDef } from './scenario.js';

export const kScenarios: ScenarioDef[] = [
  demandPaging, dirtyLogPerf, dirtyLogPageSplitting, memslotPerf, memslotModificationStress, guestMemfd, privateMemConversions, conversionStorm, mmuCompare, guestDirty,
];

export function findScenario(name: string): ScenarioDef | undefined {
  return kScenarios.find((s) => s.name === name);
}
