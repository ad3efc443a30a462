#!/usr/bin/env node
// Entry point: the CLI is compiled to dist/ (workers load compiled JS; no loader in measured paths).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const main = fileURLToPath(new URL('../dist/src/cli/main.js', import.meta.url));
if (!existsSync(main)) {
  process.stderr.write('mmuh: not built yet: run `npm run build` (or `npm ci && npm run build`) first\n');
  process.exit(2);
}
const { main: run } = await import(main);
process.exitCode = await run(process.argv.slice(2));
