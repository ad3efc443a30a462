/**
 * piscina entry point for userfaultfd reader threads: the runtime lives in
 * src/scenario/uffd-reader-runtime.ts.
 */
import { runUffdReaderTask, type UffdReaderTask, type UffdReaderResult } from '../src/scenario/uffd-reader-runtime.js';

export default function uffdReaderWorker(task: UffdReaderTask): UffdReaderResult {
  return runUffdReaderTask(task);
}
