/**
 * --json FILE: checked before the run (so a long run never ends unable to write its result),
 * written atomically (a temp file in the same directory, then rename(2)), so a reader never sees
 * a half-written file and a previous run's file is replaced whole or not at all.
 */
import { accessSync, constants, renameSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { UsageError } from '../scenario/flags.js';

export function checkJsonPath(file: string): void {
  const path = resolve(file);
  const dir = dirname(path);
  let st;
  try {
    st = statSync(dir);
  } catch {
    throw new UsageError(`--json ${file}: directory '${dir}' does not exist`);
  }
  if (!st.isDirectory()) throw new UsageError(`--json ${file}: '${dir}' is not a directory`);
  try {
    accessSync(dir, constants.W_OK | constants.X_OK);
  } catch {
    throw new UsageError(`--json ${file}: directory '${dir}' is not writable`);
  }
  try {
    if (statSync(path).isDirectory()) throw new UsageError(`--json ${file}: is a directory (give a file name)`);
  } catch (e) {
    if (e instanceof UsageError) throw e;
    // does not exist yet: fine
  }
}

export function writeJsonAtomic(file: string, value: unknown): void {
  const path = resolve(file);
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
  try {
    writeFileSync(tmp, JSON.stringify(value, null, 2) + '\n');
    renameSync(tmp, path);
  } catch (e) {
    try {
      unlinkSync(tmp);
    } catch {
      // nothing to clean up
    }
    throw new UsageError(`--json ${file}: cannot write the result: ${(e as Error).message}`);
  }
}
