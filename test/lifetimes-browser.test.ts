/**
 * Cookie lifetimes in a real browser's cookie jar (headless Chromium, Debian's chromium driven by
 * playwright-core; README, "Cookie lifetimes"): a persistent cookie rolls forward while the user is
 * active, a remember-me cookie survives as a persistent one, and the absolute timeout ends the
 * session however active the browser is, with no cookie outliving it.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Browser, BrowserContext } from 'playwright-core';
import { launchChromium } from './helpers/browser.js';
import type { SessionOptions } from '../src/index.js';
import { useRedis } from './helpers/fixture.js';
import { serveSession } from './helpers/server.js';

const f = useRedis();

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('cookie lifetimes in the browser', () => {
  let browser: Browser;

  before(async () => {
    browser = await launchChromium();
  });
  after(async () => {
    await browser?.close();
  });

  /** An app (closed by the fixture's hooks after each test): `/login` stores a user (`?remember`
   *  ticks remember-me), `/` shows who is logged in. Its base URL. */
  async function serve(options: SessionOptions): Promise<string> {
    const app = await serveSession({ redis: f.server.url, ...options }, (ctx) => {
      if (ctx.path === '/login') {
        ctx.session.regenerate();
        ctx.session.user = 'ada';
        if (ctx.query.remember !== undefined) ctx.session.rememberFor(30 * 86_400);
      }
      ctx.body = `user: ${String(ctx.session.user ?? 'nobody')}`;
    });
    return app.base;
  }

  /** The session cookie's expiry in the jar, epoch seconds; -1 for a browser-session cookie. */
  async function expiry(context: BrowserContext, base: string): Promise<number> {
    const cookies = await context.cookies(base);
    const cookie = cookies.find((c) => c.name === 'session');
    assert.ok(cookie, `the jar holds the session cookie (has ${JSON.stringify(cookies.map((c) => c.name))})`);
    return cookie.expires;
  }

  async function text(context: BrowserContext, url: string): Promise<string> {
    const page = await context.newPage();
    try {
      await page.goto(url);
      return (await page.textContent('body')) ?? '';
    } finally {
      await page.close();
    }
  }

  it('a persistent cookie rolls forward in the jar while the user is active; remember-me persists', async () => {
    const base = await serve({ cookie: { maxAge: 60_000 } });
    const context = await browser.newContext();
    try {
      assert.equal(await text(context, `${base}/login`), 'user: ada');
      const first = await expiry(context, base);
      assert.ok(first > Date.now() / 1000 + 30, `a persistent cookie about a minute out (expires ${first})`);
      // A second later the expiry moves, and the cookie with it.
      await sleep(2_100);
      assert.equal(await text(context, `${base}/`), 'user: ada');
      const rolled = await expiry(context, base);
      assert.ok(rolled >= first + 1, `the cookie moved forward (${first} -> ${rolled})`);

      assert.equal(await text(context, `${base}/login?remember`), 'user: ada');
      const remembered = await expiry(context, base);
      assert.ok(remembered > Date.now() / 1000 + 29 * 86_400, `remember-me: about 30 days out (expires ${remembered})`);
    } finally {
      await context.close();
    }
  });

  it("absoluteTimeout: the jar's cookie ends with it, and an active browser is logged out when it passes", async () => {
    const base = await serve({ absoluteTimeout: 3, cookie: { maxAge: 3_600_000 } });
    const context = await browser.newContext();
    try {
      // The session is created (in whole seconds) between these two instants, however long a loaded
      // machine takes to open the page: its absolute deadline, 3 s later, is bounded by them.
      const start = Date.now() / 1000;
      assert.equal(await text(context, `${base}/login`), 'user: ada');
      const loggedIn = Date.now() / 1000;
      const expires = await expiry(context, base);
      assert.ok(
        expires <= loggedIn + 3,
        `the cookie is capped at the absolute timeout, not an hour out (expires ${(expires - loggedIn).toFixed(1)} s after the login answered)`,
      );
      // Active meanwhile: a request every second keeps the idle timeout away.
      for (let i = 0; i < 2; i++) {
        await sleep(1_000);
        const seen = await text(context, `${base}/`);
        if (Date.now() / 1000 < start + 2) assert.equal(seen, 'user: ada');
      }
      await sleep(Math.max(0, (loggedIn + 4 - Date.now() / 1000) * 1000));
      assert.equal(await text(context, `${base}/`), 'user: nobody', 'logged out once the absolute timeout passed');
    } finally {
      await context.close();
    }
  });
});
