/**
 * stdout that a closed reader (`mmuh … | head -1`) cannot crash. Node ignores SIGPIPE, so a
 * write to a closed pipe fails with EPIPE (an 'error' event, an uncaught exception and a stack
 * trace by default). We stop printing and let the run finish: its exit code stays the run's
 * own (0, 1, ...) rather than 141 (128 + SIGPIPE), so `set -o pipefail` and the --json result,
 * which is still written, both report what the run did, not what the reader did.
 */
export interface Writer {
  write(s: string): void;
  /** True once the reader went away. */
  readonly closed: boolean;
}

let installed: Writer | null = null;

export function stdoutWriter(): Writer {
  if (installed) return installed;
  let closed = false;
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE' || e.code === 'ERR_STREAM_DESTROYED') {
      closed = true;
      return;
    }
    throw e;
  });
  installed = {
    write(s: string) {
      if (closed || process.stdout.destroyed) return;
      process.stdout.write(s);
    },
    get closed() {
      return closed;
    },
  };
  return installed;
}
