/**
 * The Mermaid export renders: the chart of `toMermaid()` (the one in docs/design.md, "The chart") is
 * drawn by Mermaid itself in headless Chromium (Debian's chromium, driven by playwright-core), with
 * no network, and every state of the machine appears in the drawing. A screenshot is saved under
 * test-output/.
 */
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { after, before, describe, it } from 'node:test';
import type { Browser } from 'playwright-core';
import { launchChromium } from './helpers/browser.js';
import { toMermaid } from '../src/chart.js';

const MERMAID = createRequire(import.meta.url).resolve('mermaid/dist/mermaid.min.js');

describe('toMermaid() in Mermaid', () => {
  let browser: Browser;
  before(async () => {
    browser = await launchChromium();
  });
  after(async () => {
    await browser?.close();
  });

  it('renders without an error, every state drawn, offline', async () => {
    const page = await browser.newPage({ viewport: { width: 1800, height: 1200 } });
    const asked: string[] = [];
    await page.route('**/*', (route) => {
      asked.push(route.request().url());
      return route.abort();
    });
    await page.setContent('<!doctype html><html><body><div id="out"></div></body></html>');
    await page.addScriptTag({ path: MERMAID });
    const text = toMermaid();
    const svg = await page.evaluate(async (source) => {
      const mermaid = (
        globalThis as unknown as {
          mermaid: { initialize(o: object): void; render(id: string, text: string): Promise<{ svg: string }> };
        }
      ).mermaid;
      mermaid.initialize({ startOnLoad: false, securityLevel: 'strict' });
      const { svg } = await mermaid.render('session', source);
      (
        globalThis as unknown as { document: { getElementById(id: string): { innerHTML: string } } }
      ).document.getElementById('out').innerHTML = svg;
      return svg;
    }, text);
    assert.doesNotMatch(svg, /Syntax error|Parse error/i);
    const labels = await page.$$eval('#out svg g.node, #out svg g.statediagram-state, #out svg .nodeLabel', (els) =>
      els.map((e) => e.textContent ?? ''),
    );
    const drawn = labels.join('\n');
    for (const state of [
      'unloaded',
      'loading',
      'creating',
      'patching',
      'moving',
      'replacing',
      'deleting',
      'invalidated',
      'regenerated',
      'persisted (create, patch, move, replace)',
      'refreshed (no write)',
      'gone (patch, move)',
    ]) {
      assert.ok(drawn.includes(state), `the drawing shows "${state}"`);
    }
    const box = await page.$eval('#out svg', (e) => e.getBoundingClientRect().width);
    assert.ok(box > 300, `a drawing of some size (${box} px wide)`);
    mkdirSync('test-output', { recursive: true });
    await page.locator('#out svg').screenshot({ path: 'test-output/session-mermaid.png' });
    assert.deepEqual(
      asked.filter((u) => !u.startsWith('data:') && !u.startsWith('about:')),
      [],
      'no request left the page',
    );
    await page.close();
  });
});
