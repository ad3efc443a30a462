import { defineConfig } from 'vitest/config';

// Unit tests import the TypeScript sources; concurrency tests start workers from dist/, which the
// global setup compiles first (so a stale dist/ is never tested), and both run the code the CLI runs.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/setup/build-dist.ts'],
    pool: 'forks',
    maxWorkers: 2,
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
