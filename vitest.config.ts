import { defineConfig } from 'vitest/config';

// Unit tests import the TypeScript sources; concurrency tests start workers from dist/ (built by
// `npm test` first), so both run the same code the CLI runs.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    pool: 'forks',
    maxWorkers: 2,
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
