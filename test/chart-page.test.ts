/**
 * The live chart page end to end in headless Chromium (Debian's chromium, driven by playwright-core),
 * as a developer debugging "my session got lost" uses it (README, "Debugging a session"): mounted
 * after the session middleware, watched by a browser that holds a session itself, while that browser
 * is refused a login by csrfProtect, logs in, writes a cart and logs out. The page lists each request
 * with its status, session tag, final state and the write's answer; a click highlights the request's
 * path on the chart; the list filters, pauses and clears; the chart reads at 1400 px; and the page's
 * own polls send no Redis command. A screenshot is saved under test-output/.
 */
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import Koa from 'koa';
import type { Browser, Request as PageRequest } from 'playwright-core';
import { launchChromium } from './helpers/browser.js';
import { csrfProtect, koaRedisSession, type SessionMiddleware } from '../src/index.js';
import { sessionChart } from '../src/chart-page.js';
import { KEYS } from './helpers/app.js';
import { useRedis } from './helpers/fixture.js';

const f = useRedis();

describe('sessionChart() in a browser', () => {
  let browser: Browser;
  let server: Server;
  let session: SessionMiddleware;
  let base = '';

  before(async () => {
    browser = await launchChromium();
    const app = new Koa();
    app.keys = KEYS;
    app.silent = true;
    // A refresh only in the last 10 minutes of 20: a read right after a write is `untouched` even
    // when it falls in the next second (without a trigger, every new second refreshes).
    session = koaRedisSession({ redis: f.server.url, timeout: 1200, timeoutTrigger: 600 });
    app.use(session);
    // After the session: the case where every poll of the page used to load and refresh the session
    // of the browser watching it.
    app.use(sessionChart({ session }));
    app.use(csrfProtect());
    app.use((ctx) => {
      if (ctx.path === '/form') ctx.body = ctx.session.getCsrfToken();
      else if (ctx.path === '/login') {
        ctx.session.regenerate();
        ctx.session.user = 'ada';
        ctx.body = ctx.session.getCsrfToken();
      } else if (ctx.path === '/cart') {
        ctx.session.cart = [...((ctx.session.cart as string[] | undefined) ?? []), 'apple'];
        ctx.body = 'ok';
      } else if (ctx.path === '/logout') {
        ctx.session.invalidate();
        ctx.body = 'bye';
      } else ctx.body = 'ok';
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

  it('follows one browser through a refused login, a login, a cart and a logout; highlights, filters; its polls cost nothing', async () => {
    // One browser: the developer's tab on the page and the app share its cookie jar.
    const context = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
    const page = await context.newPage();
    const outside: string[] = [];
    page.on('request', (req) => {
      if (!req.url().startsWith(base)) outside.push(req.url());
    });
    const consoleErrors: string[] = [];
    page.on('console', (msg) => {
      if (msg.type() === 'error') consoleErrors.push(msg.text());
    });
    // The page's polls of its data still in flight (see the pause below).
    const polls = new Set<PageRequest>();
    page.on('request', (req) => {
      if (req.url() === `${base}/_session/data`) polls.add(req);
    });
    page.on('requestfinished', (req) => polls.delete(req));
    page.on('requestfailed', (req) => polls.delete(req));
    await page.goto(`${base}/_session`);
    await page.waitForSelector('#chart svg');
    assert.ok(await page.isVisible('#chart svg'), 'the chart is visible');
    assert.ok((await page.locator('#chart g.edge').count()) > 40, 'every transition is drawn');
    assert.equal(await page.locator('#chart g.edge.taken').count(), 0, 'nothing counted yet');

    // The story, sent with the same browser's cookies.
    const http = context.request;
    const token = await (await http.get(`${base}/form`)).text();
    assert.equal((await http.post(`${base}/login`)).status(), 403, 'no token: refused by csrfProtect');
    const login = await http.post(`${base}/login`, { headers: { 'x-csrf-token': token } });
    assert.equal(login.status(), 200);
    const fresh = await login.text();
    assert.equal((await http.post(`${base}/cart`, { headers: { 'x-csrf-token': fresh } })).status(), 200);
    assert.equal((await http.post(`${base}/logout`, { headers: { 'x-csrf-token': fresh } })).status(), 200);

    // The page polls its data every second (its CSP forbids eval, so poll from here rather than
    // waitForFunction). The deadline is read from the clock, however long each look takes on a
    // loaded machine; it is far above the page's one-second poll and below the test timeout.
    const waitRows = async (want: number) => {
      const start = performance.now();
      for (let rows = 0; (rows = await page.locator('#recent tr').count()) !== want; ) {
        assert.ok(
          performance.now() < start + 30_000,
          `the page listed ${rows} of ${want} requests after ${((performance.now() - start) / 1000).toFixed(1)} s`,
        );
        await new Promise((r) => setTimeout(r, 100));
      }
    };
    await waitRows(5);
    const rows = await page.$$eval('#recent tr', (trs) =>
      trs.map((tr) => [...tr.querySelectorAll('td')].slice(1, 7).map((td) => td.textContent ?? '')),
    );
    const [t1, t2] = (rows[2]?.[2] ?? '').split('>');
    assert.match(t1 ?? '', /^[\w-]{8}$/, `a session tag, got ${JSON.stringify(rows[2])}`);
    assert.match(t2 ?? '', /^[\w-]{8}$/);
    assert.deepEqual(rows, [
      ['POST /logout', '200', t2, 'destroyed', 'load, delete → ended', 'clear'],
      ['POST /cart', '200', t2, 'persisted', 'load, patch → stored', 'none'],
      ['POST /login', '200', `${t1}>${t2}`, 'persisted', 'load, move → stored', 'set'],
      ['POST /login', '403', t1, 'untouched', 'load', 'none'],
      ['GET /form', '200', t1, 'persisted', 'create → stored', 'set'],
    ]);

    // The page's own polls, with this browser's cookie: no Redis command at all.
    const cookies = await context.cookies(base);
    const wire = await f.monitor.capture(() => new Promise((r) => setTimeout(r, 2_500)));
    assert.deepEqual(wire, [], 'the page and its polls sent no Redis command');
    assert.ok(cookies.length <= 1, 'the page set no cookie of its own');

    // A click on the login highlights exactly its path, ending in `persisted` through `moving`.
    const data = (await (await http.get(`${base}/_session/data`)).json()) as {
      recent: Array<{ edges: string[]; path: string; status: number }>;
    };
    const loginEdges = data.recent.find((r) => r.path === '/login' && r.status === 200)?.edges ?? [];
    assert.ok(loginEdges.includes('moving:write.stored:0'), `the login went through moving: ${loginEdges.join(' ')}`);
    await page.locator('#recent tr').nth(2).click();
    const selected = await page.$$eval('#chart g.edge.selected', (gs) => gs.map((g) => g.id).sort());
    assert.deepEqual(selected, [...new Set(loginEdges)].sort());
    assert.equal(await page.locator('#chart g.node.selected').getAttribute('id'), 'state:persisted');
    assert.equal(await page.locator('#recent tr.selected').count(), 1);

    // Readable at 1400 px: edge labels at 11 px or more as drawn, without zooming.
    // The label's font size times the scale it is drawn at (the tests' types have no DOM: a cast).
    const drawnPx = (t: { getAttribute(name: string): string | null }) =>
      (t as unknown as { getScreenCTM(): { a: number } }).getScreenCTM().a * Number(t.getAttribute('font-size'));
    const px = await page.$eval('#chart g.edge text', drawnPx);
    assert.ok(px >= 11, `edge labels are ${px.toFixed(1)} px`);
    await page.click('#zoom-in');
    const zoomed = await page.$eval('#chart g.edge text', drawnPx);
    assert.ok(zoomed > px * 1.2, 'zoom in makes them larger');
    await page.click('#zoom-out');
    mkdirSync('test-output', { recursive: true });
    await page.screenshot({ path: 'test-output/session-chart.png', fullPage: true });
    await page.click('#fit');
    await page.screenshot({ path: 'test-output/session-chart-fit.png', fullPage: true });

    // Filters: by session tag, by status, by final state.
    await page.fill('#f-session', t1 as string);
    assert.equal(
      await page.locator('#recent tr').count(),
      3,
      "the first id's three requests (the login shows both tags)",
    );
    await page.fill('#f-status', '403');
    assert.equal(await page.locator('#recent tr').count(), 1);
    await page.fill('#f-session', '');
    await page.fill('#f-status', '');
    await page.selectOption('#f-final', 'destroyed');
    assert.deepEqual(await page.$$eval('#recent tr td:nth-child(2)', (tds) => tds.map((td) => td.textContent)), [
      'POST /logout',
    ]);
    await page.selectOption('#f-final', '');

    // Pause keeps the list still; clear empties it.
    await page.check('#pause');
    // A poll sent just before the tick may still be on its way on a loaded machine: answered after
    // the next request, it would list it. Let it be answered first.
    await Promise.all([...polls].map((req) => req.response()));
    await http.get(`${base}/other`);
    await new Promise((r) => setTimeout(r, 1_500));
    assert.equal(await page.locator('#recent tr').count(), 5, 'paused: the new request is not listed yet');
    await page.uncheck('#pause');
    await waitRows(6);
    await page.click('#clear');
    await waitRows(0);
    assert.equal(await page.textContent('#summary'), '0 requests seen');
    assert.equal(await page.locator('#chart g.edge.taken').count(), 0, 'counts cleared');

    assert.deepEqual(outside, [], "no request left the page's own origin");
    assert.deepEqual(consoleErrors, []);
    await context.close();
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
