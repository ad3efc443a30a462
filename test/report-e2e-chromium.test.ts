// End to end: two real runs of different strategies (dirty-log-perf -b 64M -i 2, --dirty pml and
// --dirty wrprot, --repeat 3), `mmuh report`, and the page opened in headless Chromium (Debian's
// /usr/bin/chromium driven by playwright-core): no console errors, no request leaves the page,
// the charts (svg[data-chart]) and tables (table[data-table]) are in the DOM with their series
// and rows, and a screenshot is saved to test-artifacts/. Skipped, with the reason printed, where
// Chromium is missing or cannot start (.ci/run installs it).
import { beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Browser } from 'playwright-core';
import { mmuh } from './fixtures/mmuh.js';
import type { RunResult } from '../src/scenario/result.js';

const kChromium = process.env.MMUH_CHROMIUM ?? '/usr/bin/chromium';
// As root in a sandbox with no network: no sandbox, no GPU, none of Chromium's own connections.
const kArgs = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

async function launch(): Promise<Browser> {
  const { chromium } = await import('playwright-core');
  return chromium.launch({ executablePath: kChromium, headless: true, args: kArgs });
}

async function whyNot(): Promise<string | null> {
  if (!existsSync(kChromium)) return `no Chromium at ${kChromium} (apt-get install chromium, or set MMUH_CHROMIUM)`;
  try {
    const b = await launch();
    await b.close();
    return null;
  } catch (e) {
    return `Chromium at ${kChromium} does not start: ${(e as Error).message.split('\n')[0]}`;
  }
}

const skip = await whyNot();
if (skip !== null) console.warn(`report-e2e-chromium: SKIPPED: ${skip}`);

const dir = mkdtempSync(join(tmpdir(), 'mmuh-e2e-'));
const html = join(dir, 'out', 'pml-vs-wrprot.html');
const results: RunResult[] = [];

describe.skipIf(skip !== null)(`the report in headless Chromium${skip ? ` (skipped: ${skip})` : ''}`, () => {
  beforeAll(() => {
    for (const d of ['pml', 'wrprot']) {
      const json = join(dir, `${d}.json`);
      const r = mmuh(['run', 'dirty-log-perf', '-b', '64M', '-i', '2', '--workers', '1', '--dirty', d, '--repeat', '3', '-q', '--json', json]);
      if (r.code !== 0) throw new Error(`mmuh run --dirty ${d}: exit ${r.code}: ${r.err}`);
      results.push(JSON.parse(readFileSync(json, 'utf8')) as RunResult);
    }
    const r = mmuh(['report', join(dir, 'pml.json'), join(dir, 'wrprot.json'), '-o', html]);
    if (r.code !== 0) throw new Error(`mmuh report: exit ${r.code}: ${r.err}`);
  }, 120_000);

  it('opens offline without errors; charts and tables are in the DOM; screenshot saved', async () => {
    const browser = await launch();
    try {
      const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
      const errors: string[] = [];
      const requests: string[] = [];
      page.on('console', (m) => {
        if (m.type() === 'error') errors.push(m.text());
      });
      page.on('pageerror', (e) => errors.push(String(e)));
      page.on('request', (q) => requests.push(q.url()));
      const url = pathToFileURL(html).href;
      await page.goto(url, { waitUntil: 'load' });
      expect(errors).toEqual([]);
      expect(requests).toEqual([url]);

      const keys = new Set(results.flatMap((r) => Object.keys(r.histograms)));
      const pct = page.locator('svg[data-chart="percentile"]');
      expect(await pct.count()).toBe(keys.size);
      // Every run of every input that recorded a histogram is a line with a path.
      for (const key of keys) {
        const chart = page.locator(`svg[data-chart="percentile"][data-histogram="${key}"]`);
        const lines = results.reduce((n, r) => n + r.repeats!.runs.filter((x) => (x.histograms[key]?.count ?? 0) > 0).length, 0);
        expect(await chart.locator('g[data-series] path').count(), key).toBe(lines);
        expect(await chart.locator('g[data-series] path').first().getAttribute('d')).toMatch(/^M[\d.]+ [\d.]+(L[\d.]+ [\d.]+)*$/);
        expect(await chart.locator('text').allTextContents()).toContain('0%');
      }
      const phases = results[0]!.phases.length;
      for (const clock of ['wall', 'modeled']) {
        const bars = page.locator(`svg[data-chart="phase-bars"][data-clock="${clock}"]`);
        expect(await bars.count()).toBe(1);
        expect(await bars.getAttribute('data-categories')).toBe(String(phases));
        expect(await bars.locator('g[data-series="pml"] rect').count()).toBe(phases);
        expect(await bars.locator('g[data-series="wrprot"] rect').count()).toBe(phases);
      }
      expect(await page.locator('svg[data-chart="page-timeline"] g[data-series] circle').count()).toBe(2 * 3 * phases);
      expect(await page.locator('svg[data-chart="tlb-flushes"]').count()).toBe(1);

      for (const t of ['inputs', 'comparison', 'phase-stats', 'config', 'environment']) expect(await page.locator(`table[data-table="${t}"]`).count(), t).toBe(1);
      const cmp = page.locator('table[data-table="comparison"] tr');
      const it2 = cmp.filter({ hasText: /^iteration-2modeled/ });
      expect(await it2.locator('td').allTextContents()).toEqual(expect.arrayContaining(['iteration-2', 'modeled', 'exact (no variance)', 'yes']));
      expect(await page.locator('table[data-table="config"] tr.diff').filter({ hasText: 'dirty' }).count()).toBeGreaterThan(0);
      expect(await page.locator('[data-model-note]').count()).toBeGreaterThan(2);
      const noisy = results.some((r) => r.repeats!.runs.some((x) => x.host.noisy));
      expect(await page.locator('[data-warning="noisy"]').count()).toBe(noisy ? 1 : 0);
      expect(await page.locator('table[data-table="profile"]').count()).toBe(0);

      const artifacts = join(__dirname, '..', 'test-artifacts');
      mkdirSync(artifacts, { recursive: true });
      const shot = join(artifacts, 'report-e2e-pml-vs-wrprot.png');
      await page.screenshot({ path: shot, fullPage: true });
      expect(readFileSync(shot).subarray(1, 4).toString()).toBe('PNG');
    } finally {
      await browser.close();
    }
  });
});
