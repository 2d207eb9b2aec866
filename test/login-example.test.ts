/**
 * examples/login.ts (what `npm start` runs) in headless Chromium, as a person would use it: the
 * forms, the CSRF token they carry (README "`ctx.session`", csrfProtect), the id changed at login,
 * "remember me" in the browser's own cookie jar, logout by POST only, escaped output, and "Your
 * sessions" (README, "A user's sessions") seen from three browsers signed in as one user; and with
 * supertest, that the example keeps its keys under its own prefix. Screenshots go to test-output/.
 */
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { Browser, BrowserContext, BrowserContextOptions, Cookie, Page } from 'playwright-core';
import { launchChromium } from './helpers/browser.js';
import request from 'supertest';
import { createApp, REMEMBER_SECONDS } from '../examples/login.js';
import { assertBetween, assertTtl, storedData, useRedis } from './helpers/fixture.js';
import { stored as storedSession } from './helpers/stored.js';

const f = useRedis();
const PREFIX = 'example:sess:';

/** The session id a cookie value carries (`<id>.<signature>`). */
const idOf = (value: string) => value.slice(0, value.lastIndexOf('.'));

/** The stored session, header and fields (test/helpers/stored.ts), without `x`, the payload expiry
 *  every load slides (docs/design.md, "Storage"). */
async function storedHash(key: string): Promise<Record<string, string>> {
  const { x, ...rest } = await storedSession(f.redis, key);
  assert.ok(x, `${key} has an expiry`);
  return rest;
}

describe('examples/login in a browser', () => {
  let browser: Browser;
  let server: Server;
  let app: ReturnType<typeof createApp>;
  let base = '';

  before(async () => {
    browser = await launchChromium();
    app = createApp(f.server.url);
    server = createServer(app.app.callback());
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    await browser?.close();
    await new Promise((r) => server?.close(r));
    app?.session.redis.disconnect(); // the example passes its own client: ours to end
  });

  /** A fresh browser profile: its own cookie jar. */
  async function fresh(
    t: { after: (fn: () => Promise<void>) => void },
    options: BrowserContextOptions = {},
  ): Promise<{ context: BrowserContext; page: Page }> {
    const context = await browser.newContext(options);
    t.after(() => context.close());
    return { context, page: await context.newPage() };
  }

  async function sessionCookie(context: BrowserContext): Promise<Cookie | undefined> {
    return (await context.cookies(base)).find((c) => c.name === 'session');
  }

  /** Sign in through the login form, as a person would. */
  async function signIn(page: Page, name: string, password: string, remember = false): Promise<void> {
    await page.goto(`${base}/login`);
    await page.getByLabel('Name').fill(name);
    await page.getByLabel('Password').fill(password);
    if (remember) await page.getByLabel('Remember me for 30 days').check();
    await Promise.all([page.waitForURL(`${base}/`), page.getByRole('button', { name: 'Sign in' }).click()]);
  }

  it('refuses a login POST without the token (403) and stores nothing', async (t) => {
    const { context, page } = await fresh(t);
    // No session at all: a forged cross-site form post carries neither cookie nor token.
    const forged = await context.request.post(`${base}/login`, {
      form: { name: 'ada', password: 'lovelace' },
      maxRedirects: 0,
    });
    assert.equal(forged.status(), 403);
    assert.deepEqual(await f.redis.keys('*'), [], 'nothing stored');
    assert.equal(await sessionCookie(context), undefined);

    // The login page's session, and the real form with its hidden token taken out.
    await page.goto(`${base}/login`);
    const before = await sessionCookie(context);
    assert.ok(before, 'the login page created the session its token belongs to');
    const stored = await storedHash(`${PREFIX}${idOf(before.value)}`);
    await page.locator('input[name="_csrf"]').evaluate((input) => input.remove());
    await page.getByLabel('Name').fill('ada');
    await page.getByLabel('Password').fill('lovelace');
    const [refused] = await Promise.all([
      page.waitForResponse(`${base}/login`),
      page.getByRole('button', { name: 'Sign in' }).click(),
    ]);
    assert.equal(refused.status(), 403);
    assert.equal((await sessionCookie(context))?.value, before.value, 'the same session, not signed in');
    assert.deepEqual(await f.redis.keys('*'), [`${PREFIX}${idOf(before.value)}`]);
    assert.deepEqual(await storedHash(`${PREFIX}${idOf(before.value)}`), stored, 'nothing written');

    // A token from another session does not do either.
    const other = await fresh(t);
    await other.page.goto(`${base}/login`);
    const token = await other.page.locator('input[name="_csrf"]').inputValue();
    const wrong = await context.request.post(`${base}/login`, {
      form: { _csrf: token, name: 'ada', password: 'lovelace' },
      maxRedirects: 0,
    });
    assert.equal(wrong.status(), 403);
    assert.deepEqual(await storedHash(`${PREFIX}${idOf(before.value)}`), stored);
  });

  it('signs in through the form under a new id, with a browser-session cookie without "remember me"', async (t) => {
    const { context, page } = await fresh(t);
    await page.goto(`${base}/login`);
    const before = await sessionCookie(context);
    assert.ok(before);
    await signIn(page, 'ada', 'lovelace');
    assert.match(await page.locator('body').innerText(), /Signed in as ada, until you close the browser\./);
    const cookie = await sessionCookie(context);
    assert.ok(cookie);
    assert.notEqual(idOf(cookie.value), idOf(before.value), 'regenerate() gave a new id');
    assert.equal(cookie.expires, -1, 'a browser-session cookie');
    assert.equal(cookie.httpOnly, true);
    assert.equal(cookie.sameSite, 'Lax');
    const key = `${PREFIX}${idOf(cookie.value)}`;
    assert.deepEqual(await storedData(f.redis, key), { user: 'ada' });
    await assertTtl(f.redis, key, 1200);
    // The pre-login id holds no data any more: only the marker a regenerate leaves (docs/design.md).
    assert.deepEqual(await storedData(f.redis, `${PREFIX}${idOf(before.value)}`), {});
  });

  it('with "remember me" the cookie jar holds a cookie for 30 days, and the session lasts as long', async (t) => {
    const { context, page } = await fresh(t);
    await signIn(page, 'grace', 'hopper', true);
    assert.match(await page.locator('body').innerText(), /Signed in as grace, remembered for 30 days\./);
    const cookie = await sessionCookie(context);
    assert.ok(cookie);
    const now = Date.now() / 1000;
    assertBetween(cookie.expires, now + REMEMBER_SECONDS - 60, now + REMEMBER_SECONDS + 5, 'cookie expiry');
    const key = `${PREFIX}${idOf(cookie.value)}`;
    assert.deepEqual(await storedData(f.redis, key), { user: 'grace' });
    await assertTtl(f.redis, key, REMEMBER_SECONDS);
    // A later visit is still remembered: the cookie stays persistent.
    await page.reload();
    assert.match(await page.locator('body').innerText(), /remembered for 30 days/);
    const later = await sessionCookie(context);
    assert.equal(later?.value, cookie.value);
    assert.ok((later?.expires ?? -1) >= cookie.expires - 1, 'still a 30-day cookie');
  });

  it('signs out by POST: the cookie is cleared and the Redis key is gone', async (t) => {
    const { context, page } = await fresh(t);
    await signIn(page, 'ada', 'lovelace', true);
    const cookie = await sessionCookie(context);
    assert.ok(cookie);
    const key = `${PREFIX}${idOf(cookie.value)}`;
    assert.equal(await f.redis.exists(key), 1);
    const [logout] = await Promise.all([
      page.waitForResponse(`${base}/logout`),
      page.getByRole('button', { name: 'Sign out' }).click(),
    ]);
    assert.equal(logout.request().method(), 'POST');
    assert.equal(logout.status(), 303);
    await page.waitForURL(`${base}/`);
    assert.match(await page.locator('body').innerText(), /Not signed in/);
    assert.equal(await sessionCookie(context), undefined, 'the cookie is cleared');
    assert.equal(await f.redis.exists(key), 0, 'the session is gone from Redis');
    // Left: at most the marker at the pre-login id, which holds no data.
    for (const left of await f.redis.keys('*')) assert.deepEqual(await storedData(f.redis, left), {}, left);
  });

  it('a GET to /logout does not sign out', async (t) => {
    const { context, page } = await fresh(t);
    await signIn(page, 'ada', 'lovelace');
    const cookie = await sessionCookie(context);
    assert.ok(cookie);
    const res = await page.goto(`${base}/logout`);
    assert.equal(res?.status(), 405);
    assert.equal(res?.headers().allow, 'POST');
    assert.equal((await sessionCookie(context))?.value, cookie.value);
    assert.deepEqual(await storedData(f.redis, `${PREFIX}${idOf(cookie.value)}`), { user: 'ada' });
    await page.goto(`${base}/`);
    assert.match(await page.locator('body').innerText(), /Signed in as ada/);
  });

  it('"Your sessions": three browsers signed in as one user; revoke one, then log out everywhere else', async (t) => {
    // Three profiles (three cookie jars), each its own user agent; the third's would be markup if
    // the page did not escape it.
    const agents = [
      'Mozilla/5.0 (X11; Linux x86_64) Laptop/1.0',
      'Mozilla/5.0 (Linux; Android 14) Phone/2.0',
      `Tablet/3.0 <img src=x onerror="document.title='pwned'">`,
    ] as const;
    const laptop = await fresh(t, { userAgent: agents[0] });
    const phone = await fresh(t, { userAgent: agents[1] });
    const tablet = await fresh(t, { userAgent: agents[2] });
    for (const { page } of [laptop, phone, tablet]) await signIn(page, 'ada', 'lovelace');
    mkdirSync('test-output', { recursive: true });

    /** The sessions page's rows, each as its cells' text. */
    const rows = async (page: Page): Promise<string[][]> =>
      page
        .locator('tbody tr')
        .evaluateAll((trs) =>
          trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent?.trim() ?? '')),
        );
    const signedIn = async (page: Page): Promise<boolean> => {
      await page.goto(`${base}/`);
      return /Signed in as ada/.test(await page.locator('body').innerText());
    };

    // From the laptop: three sessions, with each browser's agent and IP, this one marked.
    const { page } = laptop;
    await page.goto(`${base}/`);
    await Promise.all([page.waitForURL(`${base}/sessions`), page.getByRole('link', { name: 'Your sessions' }).click()]);
    let listed = await rows(page);
    assert.equal(listed.length, 3);
    assert.deepEqual(listed.map((cells) => cells[0]).sort(), [...agents].sort(), 'each browser by its user agent');
    for (const cells of listed) {
      assert.equal(cells[1], '127.0.0.1');
      assert.match(cells[2] ?? '', /^\d{4}-\d\d-\d\d \d\d:\d\d UTC$/, 'signed in');
      assert.match(cells[3] ?? '', / UTC$/, 'last active');
      assert.match(cells[4] ?? '', / UTC$/, 'expires');
    }
    assert.deepEqual(
      listed.filter((cells) => cells[5] === 'This device').map((cells) => cells[0]),
      [agents[0]],
      'this device is the laptop',
    );
    assert.equal(await page.getByRole('button', { name: 'Revoke' }).count(), 2, 'a Revoke for each other one');
    assert.equal(await page.locator('td img, script').count(), 0, "no markup of the tablet's agent made it in");
    assert.notEqual(await page.title(), 'pwned');
    await page.screenshot({ path: 'test-output/login-sessions.png', fullPage: true });

    // The forms are POST + CSRF token as the rest: a GET, or a POST without the token, ends nothing.
    assert.equal((await page.goto(`${base}/sessions/revoke-others`))?.status(), 405);
    const forged = await laptop.context.request.post(`${base}/sessions/revoke-others`, { maxRedirects: 0 });
    assert.equal(forged.status(), 403);
    assert.equal((await app.session.sessions.list('ada')).length, 3);

    // "Revoke" on the phone's row: the phone's next page load is signed out, the others are not.
    await page.goto(`${base}/sessions`);
    await Promise.all([
      page.waitForResponse((res) => res.url() === `${base}/sessions` && res.request().method() === 'GET'),
      page.getByRole('row').filter({ hasText: agents[1] }).getByRole('button', { name: 'Revoke' }).click(),
    ]);
    listed = await rows(page);
    assert.deepEqual(listed.map((cells) => cells[0]).sort(), [agents[0], agents[2]].sort());
    assert.equal(await signedIn(phone.page), false, 'the phone is signed out');
    assert.match(await phone.page.locator('body').innerText(), /Not signed in/);
    assert.equal(await sessionCookie(phone.context), undefined, "the phone's cookie is cleared");
    assert.equal(await signedIn(tablet.page), true, 'the tablet is not');

    // "Log out everywhere else": the tablet is signed out, the laptop still signed in and alone.
    await page.goto(`${base}/sessions`);
    await Promise.all([
      page.waitForResponse((res) => res.url() === `${base}/sessions` && res.request().method() === 'GET'),
      page.getByRole('button', { name: 'Log out everywhere else' }).click(),
    ]);
    listed = await rows(page);
    assert.deepEqual(listed, [[agents[0], '127.0.0.1', ...(listed[0] ?? []).slice(2, 5), 'This device']]);
    assert.equal(await page.getByRole('button', { name: 'Log out everywhere else' }).count(), 0, 'no one else');
    await page.screenshot({ path: 'test-output/login-sessions-alone.png', fullPage: true });
    assert.equal(await signedIn(tablet.page), false, 'the tablet is signed out');
    assert.equal(await signedIn(page), true, 'the laptop is still signed in');
    assert.equal((await app.session.sessions.list('ada')).length, 1);
  });

  it('a wrong password is refused (401), and what was typed comes back escaped', async (t) => {
    const { context, page } = await fresh(t);
    const typed = `"><script>document.title='pwned'</script><b x='`;
    await page.goto(`${base}/login`);
    const before = await sessionCookie(context);
    await page.getByLabel('Name').fill(typed);
    await page.getByLabel('Password').fill('wrong');
    const [res] = await Promise.all([
      page.waitForResponse(`${base}/login`),
      page.getByRole('button', { name: 'Sign in' }).click(),
    ]);
    assert.equal(res.status(), 401);
    assert.match(await res.text(), /value="&#34;&#62;&#60;script&#62;/);
    await page.waitForLoadState();
    assert.equal(await page.getByLabel('Name').inputValue(), typed, 'shown as the text it is');
    assert.equal(await page.locator('script, b').count(), 0, "no markup of the visitor's made it into the page");
    assert.notEqual(await page.title(), 'pwned');
    assert.match(await page.getByRole('alert').innerText(), /Unknown name or wrong password/);
    assert.equal((await sessionCookie(context))?.value, before?.value, 'not signed in, same session');
    assert.deepEqual(await storedData(f.redis, `${PREFIX}${idOf(before?.value ?? '')}`), {});
  });
});

describe('examples/login over HTTP', () => {
  it('keeps its keys under its own prefix, never the default sess:', async (t) => {
    const { app, session } = createApp(f.server.url);
    t.after(() => session.redis.disconnect());
    const agent = request.agent(app.callback());
    const form = await agent.get('/login');
    assert.equal(form.status, 200);
    const token = /name="_csrf" value="([^"]+)"/.exec(form.text)?.[1];
    assert.ok(token);
    const login = await agent.post('/login').type('form').send({ _csrf: token, name: 'ada', password: 'lovelace' });
    assert.equal(login.status, 303);
    assert.equal(login.headers.location, '/');
    const keys = await f.redis.keys('*');
    assert.ok(keys.length > 0);
    for (const key of keys) assert.ok(key.startsWith(PREFIX), key);
    // Sessions are strings; the one hash is ada's index of her sessions (userKey), under the prefix too.
    const types = await Promise.all(keys.map((key) => f.redis.type(key)));
    assert.deepEqual(
      types.filter((type) => type !== 'string'),
      ['hash'],
    );
    const sessions = keys.filter((_, i) => types[i] === 'string');
    const users = await Promise.all(sessions.map(async (key) => (await storedData(f.redis, key)).user));
    assert.ok(users.includes('ada'), 'the signed-in session is one of them');
    assert.match((await agent.get('/')).text, /Signed in as <b>ada<\/b>/);
  });
});
