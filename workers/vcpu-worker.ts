/**
 * piscina entry point: attaches and dispatches; the runtime lives in src/scenario/worker-runtime.ts.
 */
import { runPhaseTask, type PhaseTask, type PhaseTaskResult } from '../src/scenario/worker-runtime.js';

export default function vcpuWorker(task: PhaseTask): PhaseTaskResult {
  return runPhaseTask(task);
}
