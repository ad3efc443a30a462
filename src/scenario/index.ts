/** The scenario registry. */
import { demandPaging } from './demand-paging.js';
import type { ScenarioDef } from './scenario.js';

export const kScenarios: ScenarioDef[] = [demandPaging];

export function findScenario(name: string): ScenarioDef | undefined {
  return kScenarios.find((s) => s.name === name);
}
