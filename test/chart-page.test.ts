/**
 * The live chart page end to end in headless Chromium (Debian's chromium, driven by playwright-core):
 * it loads with no outside request, the chart is visible, and transition counts and the list of
 * recent requests change after requests. A screenshot is saved under test-output/.
 */
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import Koa from 'koa';
import { chromium, type Browser } from 'playwright-core';
import { koaRedisSession, type SessionMiddleware } from '../src/index.js';
import { sessionChart } from '../src/chart-page.js';
import { KEYS } from './helpers/app.js';
import { useRedis } from './helpers/fixture.js';

const f = useRedis();
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

describe('sessionChart() in a browser', () => {
  let browser: Browser;
  let server: Server;
  let session: SessionMiddleware;
  let base = '';

  before(async () => {
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    const app = new Koa();
    app.keys = KEYS;
    app.silent = true;
    // A refresh only in the last 10 minutes of 20: the read right after the login is `untouched`
    // even when it falls in the next second (without a trigger, every new second refreshes).
    session = koaRedisSession({ redis: f.server.url, timeout: 1200, timeoutTrigger: 600 });
    app.use(sessionChart({ session }));
    app.use(session);
    app.use((ctx) => {
      if (ctx.path === '/login') ctx.session.user = 'ada';
      if (ctx.path === '/logout') ctx.session.invalidate();
      ctx.body = 'ok';
    });
    server = createServer(app.callback());
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    await browser?.close();
    await new Promise((r) => server.close(r));
    await session.close();
  });

  it('draws the chart offline, and counts transitions as requests arrive', async () => {
    const page = await browser.newPage({ viewport: { width: 1600, height: 1300 } });
    const outside: string[] = [];
    page.on('request', (req) => {
      if (!req.url().startsWith(base)) outside.push(req.url());
    });
    const consoleErrors: string[] = [];
    page.on('console', (msg) => {
      if (msg.type() === 'error') consoleErrors.push(msg.text());
    });
    await page.goto(`${base}/_session`);
    await page.waitForSelector('#chart svg');
    assert.ok(await page.isVisible('#chart svg'), 'the chart is visible');
    assert.ok((await page.locator('#chart g.edge').count()) > 40, 'every transition is drawn');
    assert.equal(await page.locator('#chart g.edge.taken').count(), 0, 'nothing counted yet');

    // Some traffic: a login (create), a read with the cookie, a logout.
    const login = await fetch(`${base}/login`);
    const cookie = (login.headers.get('set-cookie') ?? '').split(';')[0] as string;
    await fetch(`${base}/`, { headers: { cookie } });
    await fetch(`${base}/logout`, { headers: { cookie } });

    // The page polls its data every second (its CSP forbids eval, so poll from here rather than
    // waitForFunction). The deadline is read from the clock, however long each look at the page
    // takes on a loaded machine; it is far above the page's one-second poll and below the test timeout.
    const start = performance.now();
    const deadline = start + 30_000;
    for (let rows = 0; (rows = await page.locator('#recent tr').count()) < 3; ) {
      assert.ok(performance.now() < deadline, `the page listed ${rows} of the three requests after ${((performance.now() - start) / 1000).toFixed(1)} s`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const counted = await page.$$eval('#chart g.edge.taken', (gs) => gs.map((g) => [g.id, g.querySelector('text.count')?.textContent]));
    const byId = Object.fromEntries(counted);
    assert.equal(byId['unloaded:cookie.missing:0'], '× 1');
    assert.equal(byId['unloaded:cookie.verified:0'], '× 2');
    assert.equal(byId['new:request.ended:4'], '× 1', 'the create');
    assert.equal(byId['creating:write.stored:0'], '× 1', 'the create stored');
    assert.equal(byId['loaded.invalidated:request.ended:0'], '× 1', 'the logout');
    const rows = await page.$$eval('#recent tr', (trs) => trs.map((tr) => [...tr.querySelectorAll('td')].slice(1, 5).map((td) => td.textContent)));
    assert.deepEqual(rows, [
      ['GET /logout', 'destroyed', 'load, delete', 'clear'],
      ['GET /', 'untouched', 'load', 'none'],
      ['GET /login', 'persisted', 'create', 'set'],
    ]);

    mkdirSync('test-output', { recursive: true });
    await page.screenshot({ path: 'test-output/session-chart.png', fullPage: true });
    assert.deepEqual(outside, [], 'no request left the page\'s own origin');
    assert.deepEqual(consoleErrors, []);
    await page.close();
  });

  it('refuses to start in production unless allowed', () => {
    const env = process.env.NODE_ENV;
    process.env.NODE_ENV = 'production';
    try {
      assert.throws(() => sessionChart({ session }), /development page/);
      assert.doesNotThrow(() => sessionChart({ session, allowInProduction: true }));
    } finally {
      if (env === undefined) delete process.env.NODE_ENV;
      else process.env.NODE_ENV = env;
    }
  });
});
