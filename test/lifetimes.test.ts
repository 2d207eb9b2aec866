/**
 * Cookie lifetimes and what a Koa user coming from koa-session expects (README, "Cookie lifetimes"
 * and "Coming from koa-session"): a session's own cookie lifetime stored with it and carried by every
 * later cookie; rolling; the absolute timeout; remember-me in one call; koa-session's `maxAge`,
 * `populated` and `save()`; a change of `app.keys` followed. On real Redis, asserting the
 * `Set-Cookie` attributes, the commands sent (MONITOR) and what is stored.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import Keygrip from 'keygrip';
import Koa from 'koa';
import request, { type Response } from 'supertest';
import {
  koaRedisSession,
  NotInBackendError,
  PayloadTimeoutError,
  type InvalidSessionError,
  type SessionOptions,
} from '../src/index.js';
import {
  KEYS,
  expectCookieCleared,
  expectCookieSet,
  expectNoCookie,
  makeApp,
  setCookies,
  type SetCookie,
} from './helpers/app.js';
import { closeable } from './helpers/cleanup.js';
import { assertBetween, assertTtl, signedCookie, storedData, useRedis } from './helpers/fixture.js';
import { stored, update } from './helpers/stored.js';

const f = useRedis();
const DAY = 86_400_000;

/** The session cookie the response set. */
function sessionCookie(res: Response): SetCookie {
  const cookies = setCookies(res).filter((c) => c.name === 'session');
  assert.equal(cookies.length, 1, `expected one session Set-Cookie, got ${JSON.stringify(res.headers['set-cookie'])}`);
  return cookies[0] as SetCookie;
}

/** Milliseconds from now until the cookie expires, or null for a browser-session cookie. */
function lifetime(res: Response): number | null {
  const expires = sessionCookie(res).attributes.expires;
  return typeof expires === 'string' ? Date.parse(expires) - Date.now() : null;
}

/** The cookie lives about `ms` (a second of rounding, and a loaded machine's delay, aside). */
function assertLifetime(res: Response, ms: number, what: string): void {
  const left = lifetime(res);
  assert.notEqual(left, null, `${what}: a persistent cookie (with Expires), got ${sessionCookie(res).raw}`);
  assertBetween(left as number, ms - 15_000, ms + 1_000, `${what}: the cookie's lifetime in ms`);
}

/** Let a few seconds pass for a stored session, as far as its expiry knows: the next load moves it
 *  (a load in the second the expiry was set for has nothing to move). */
async function age(id: string): Promise<void> {
  const x = Number((await stored(f.redis, `sess:${id}`)).x);
  await update(f.redis, `sess:${id}`, { x: x - 5 });
}

/** A session app on this file's Redis: each path does one thing to the session. */
function app(options: SessionOptions = {}) {
  return makeApp(3, { redis: f.server.url, ...options }, (ctx) => {
    const s = ctx.session;
    switch (ctx.path) {
      case '/login':
        s.regenerate();
        s.user = 'ada';
        if (ctx.query.days) s.adjustCookieMaxAge(Number(ctx.query.days) * DAY);
        if (ctx.query.browser) s.adjustCookieMaxAge(null);
        return 'in';
      case '/remember':
        s.regenerate();
        s.user = 'ada';
        s.rememberFor(30 * 86_400);
        return 'remembered';
      case '/seed':
        s.user = 'ada';
        return 'seeded';
      case '/write':
        s.n = ((s.n as number | undefined) ?? 0) + 1;
        return String(s.n);
      case '/regenerate':
        s.regenerate();
        return 'moved';
      case '/recookie':
        s.recookie();
        return 'again';
      default:
        return JSON.stringify({ user: s.user ?? null, isNew: s.isNew });
    }
  });
}

describe("a session's own cookie lifetime is stored, and every later cookie carries it", () => {
  it('adjustCookieMaxAge(30 days) at login: stored as `l`; key rotation, regenerate() and recookie() re-send it', async () => {
    const a = app({ rolling: false });
    const login = await a.get('/login?days=30');
    assertLifetime(login, 30 * DAY, 'the login cookie');
    const { cookie, id } = expectCookieSet(login);
    assert.equal((await stored(f.redis, `sess:${id}`)).l, String(30 * DAY), 'the lifetime is stored with the session');

    // The keys rotate: the same Redis, a ring with a new newest key. The cookie is re-signed, and
    // "remember me" does not silently turn into a browser-session cookie.
    const rotated = makeApp(3, { redis: f.server.url, rolling: false, keys: ['brand-new-secret', ...KEYS] }, (ctx) =>
      String(ctx.session.user),
    );
    const resigned = await rotated.get('/', cookie);
    assert.equal(resigned.text, 'ada');
    assertLifetime(resigned, 30 * DAY, 'the re-signed cookie');
    assert.equal(expectCookieSet(resigned).id, id, 'same id, new signature');

    const moved = await a.get('/regenerate', cookie);
    assertLifetime(moved, 30 * DAY, 'the cookie of regenerate()');
    const next = expectCookieSet(moved);
    assert.notEqual(next.id, id);
    assertLifetime(await a.get('/recookie', next.cookie), 30 * DAY, 'the cookie of recookie()');
  });

  it('adjustCookieMaxAge(null) makes a browser-session cookie that stays one, whatever the cookie.maxAge option', async () => {
    const a = app({ rolling: false, cookie: { maxAge: 3_600_000 } });
    const login = await a.get('/login?browser=1');
    assert.equal(lifetime(login), null, 'no Expires');
    const { cookie, id } = expectCookieSet(login);
    assert.equal((await stored(f.redis, `sess:${id}`)).l, '0');
    assert.equal(lifetime(await a.get('/recookie', cookie)), null, 'recookie() keeps it a browser-session cookie');
  });

  it("without a lifetime of its own, a session's cookies follow the cookie options; nothing is stored for it", async () => {
    const a = app({ rolling: false, cookie: { maxAge: 3_600_000 } });
    const login = await a.get('/login');
    assertLifetime(login, 3_600_000, 'the login cookie');
    const kept = await stored(f.redis, `sess:${expectCookieSet(login).id}`);
    assert.equal(kept.v, '2', 'the session is stored');
    assert.equal('l' in kept, false, 'with no lifetime of its own');
  });
});

describe("rolling: the cookie follows the session's expiry", () => {
  it('by default a persistent cookie is re-sent, same id and lifetime, on a read that moves the expiry: still one command', async () => {
    const a = app({ cookie: { maxAge: 3_600_000 } });
    const { cookie, id } = expectCookieSet(await a.get('/seed'));
    await a.ready();
    await age(id);
    const { res, wire } = await f.monitor.request(() => a.get('/', cookie));
    assert.deepEqual(
      wire.map((c) => c.op),
      ['load'],
    );
    assertLifetime(res, 3_600_000, 'the rolled cookie');
    assert.equal(expectCookieSet(res).cookie, cookie, 'the same signed id');
    assert.equal(expectCookieSet(res).id, id);
  });

  it('by default a write re-sends it too; a browser-session cookie is never re-sent', async () => {
    const persistent = app({ cookie: { maxAge: 3_600_000 } });
    const { cookie } = expectCookieSet(await persistent.get('/seed'));
    assertLifetime(await persistent.get('/write', cookie), 3_600_000, 'the cookie of a write');

    const browser = app();
    const seeded = expectCookieSet(await browser.get('/seed'));
    expectNoCookie(await browser.get('/', seeded.cookie));
    expectNoCookie(await browser.get('/write', seeded.cookie));
  });

  it('rolling: false never re-sends; rolling: true re-sends a browser-session cookie too', async () => {
    const off = app({ rolling: false, cookie: { maxAge: 3_600_000 } });
    const { cookie } = expectCookieSet(await off.get('/seed'));
    expectNoCookie(await off.get('/', cookie));
    expectNoCookie(await off.get('/write', cookie));

    const on = app({ rolling: true });
    const seeded = expectCookieSet(await on.get('/seed'));
    await age(seeded.id);
    const read = await on.get('/', seeded.cookie);
    assert.equal(lifetime(read), null);
    assert.equal(expectCookieSet(read).cookie, seeded.cookie);
  });

  it('with timeoutTrigger the cookie rolls only when the expiry moves', async () => {
    const a = app({ timeout: 1200, timeoutTrigger: 600, cookie: { maxAge: 3_600_000 } });
    const { cookie, id } = expectCookieSet(await a.get('/seed'));
    expectNoCookie(await a.get('/', cookie)); // 1200 s left: no refresh, no cookie
    await update(f.redis, `sess:${id}`, { x: Math.floor(Date.now() / 1000) + 100 });
    const due = await a.get('/', cookie);
    assertLifetime(due, 3_600_000, 'the cookie rolled with the refresh');
    expectNoCookie(await a.get('/', cookie)); // moved: 1200 s left again
  });

  it('a response that may not set cookies (allowCookies) does not roll, and does not fail', async () => {
    const a = app({ cookie: { maxAge: 3_600_000 }, allowCookies: (ctx) => ctx.path !== '/' });
    const { cookie } = expectCookieSet(await a.get('/seed'));
    const res = await a.get('/', cookie);
    assert.equal(res.status, 200);
    expectNoCookie(res);
  });

  it('on plain HTTP with cookie.secure the cookie is not rolled, and the read does not fail', async () => {
    const seedApp = app({ cookie: { maxAge: 3_600_000 } });
    const { cookie } = expectCookieSet(await seedApp.get('/seed'));
    const secure = app({ cookie: { maxAge: 3_600_000, secure: true } });
    const res = await secure.get('/', cookie);
    assert.equal(res.status, 200);
    assert.match(res.text, /"user":"ada"/);
    expectNoCookie(res);
  });
});

describe('absoluteTimeout: a session ends that long after its creation, however active', () => {
  it("caps the expiry, the TTL and a persistent cookie's lifetime at creation + absoluteTimeout", async () => {
    const a = app({ timeout: 1200, absoluteTimeout: 60, cookie: { maxAge: 3_600_000 } });
    const res = await a.get('/seed');
    assertLifetime(res, 60_000, 'the cookie');
    const { id } = expectCookieSet(res);
    const hash = await stored(f.redis, `sess:${id}`);
    assert.equal(Number(hash.x), Number(hash.c) + 60);
    await assertTtl(f.redis, `sess:${id}`, 60);
  });

  it('a refresh never moves the expiry past it', async (t) => {
    const a = app({ timeout: 30, absoluteTimeout: 40, rolling: true });
    const { cookie, id } = expectCookieSet(await a.get('/seed'));
    const created = Number((await stored(f.redis, `sess:${id}`)).c);
    assert.equal((await stored(f.redis, `sess:${id}`)).x, String(created + 30));
    const clock = t.mock.method(Date, 'now', () => (created + 20) * 1000);
    const read = await a.get('/', cookie);
    clock.mock.restore();
    assert.match(read.text, /"user":"ada"/);
    assert.equal((await stored(f.redis, `sess:${id}`)).x, String(created + 40), 'x = c + 40, not now + 30');
    assertBetween(await f.redis.ttl(`sess:${id}`), 1, 20, 'the TTL left to the absolute timeout');
    expectCookieSet(read); // it moved: the cookie rolled
  });

  it('once passed, the load ends the session (one command): a fresh session, the cookie cleared, onInvalid told', async (t) => {
    const seen: InvalidSessionError[] = [];
    const a = app({ timeout: 1200, absoluteTimeout: 60, rolling: false, onInvalid: (_ctx, err) => seen.push(err) });
    const { cookie, id } = expectCookieSet(await a.get('/seed'));
    const created = Number((await stored(f.redis, `sess:${id}`)).c);
    await a.ready();
    // Active all along: a read every 30 s keeps the idle timeout far away.
    for (const at of [20, 40]) {
      const clock = t.mock.method(Date, 'now', () => (created + at) * 1000);
      assert.match((await a.get('/', cookie)).text, /"user":"ada"/);
      clock.mock.restore();
    }
    const clock = t.mock.method(Date, 'now', () => (created + 60) * 1000);
    const { res, wire } = await f.monitor.request(() => a.get('/', cookie));
    clock.mock.restore();
    assert.deepEqual(
      wire.map((c) => c.op),
      ['load'],
    );
    assert.equal(res.text, JSON.stringify({ user: null, isNew: true }));
    expectCookieCleared(res);
    assert.equal(await f.redis.exists(`sess:${id}`), 0);
    assert.ok(seen.some((e) => e instanceof PayloadTimeoutError));
  });

  it('applies to sessions that never idle out (timeout: null) and to remember-me cookies', async () => {
    const never = app({ timeout: null, absoluteTimeout: 120 });
    const { id } = expectCookieSet(await never.get('/seed'));
    await assertTtl(f.redis, `sess:${id}`, 120);
    const remembered = app({ absoluteTimeout: 120 });
    assertLifetime(await remembered.get('/remember'), 120_000, 'a remember-me cookie, capped');
  });

  for (const setRedisTtl of [true, false])
    it(`a write that arrives after it finds the session gone and does not bring it back (setRedisTtl: ${setRedisTtl})`, async () => {
      const seen: InvalidSessionError[] = [];
      const a = makeApp(
        3,
        { redis: f.server.url, absoluteTimeout: 60, setRedisTtl, onInvalid: (_ctx, err) => seen.push(err) },
        async (ctx) => {
          if (ctx.path === '/seed') {
            ctx.session.user = 'ada';
            return 'seeded';
          }
          // The session was created long ago, as far as Redis now knows (its load ran before).
          await update(f.redis, `sess:${ctx.session.id}`, { c: Math.floor(Date.now() / 1000) - 3600 });
          ctx.session.cart = ['apple'];
          return 'written';
        },
      );
      const { cookie, id } = expectCookieSet(await a.get('/seed'));
      const res = await a.get('/write', cookie);
      assert.equal(res.status, 200);
      assert.equal(await f.redis.exists(`sess:${id}`), 0, 'ended, not resurrected');
      assert.ok(
        seen.some((e) => e instanceof NotInBackendError),
        `the write was answered "gone" (reported: ${seen.map((e) => e.name).join(', ')})`,
      );
    });

  it('is validated: whole seconds above 0, or null', () => {
    for (const bad of [0, -1, 1.5, '60', Number.NaN]) {
      assert.throws(
        () => koaRedisSession({ absoluteTimeout: bad as number, redis: f.server.url }),
        /option "absoluteTimeout" must be a whole number of seconds/,
      );
    }
    assert.throws(
      () => koaRedisSession({ rolling: 'yes' as unknown as boolean, redis: f.server.url }),
      /option "rolling" must be a boolean/,
    );
  });
});

describe('remember-me in one call: rememberFor(seconds)', () => {
  it('stores the timeout and the cookie lifetime; the cookie persists and rolls with every move of the expiry', async () => {
    const a = app();
    const login = await a.get('/remember');
    assertLifetime(login, 30 * DAY, 'the remember-me cookie');
    const { cookie, id } = expectCookieSet(login);
    const hash = await stored(f.redis, `sess:${id}`);
    assert.equal(hash.t, String(30 * 86_400));
    assert.equal(hash.l, String(30 * DAY));
    await assertTtl(f.redis, `sess:${id}`, 30 * 86_400);
    await age(id);
    const read = await a.get('/', cookie);
    assertLifetime(read, 30 * DAY, 'rolled on a read');
    assert.equal(expectCookieSet(read).cookie, cookie);
  });

  it('refuses anything but whole seconds above 0', async () => {
    const a = makeApp(3, { redis: f.server.url }, (ctx) => {
      try {
        ctx.session.rememberFor(0);
        return 'no error';
      } catch (err) {
        return (err as Error).message;
      }
    });
    assert.match((await a.get('/')).text, /rememberFor\(seconds\): seconds must be a whole number of seconds above 0/);
  });
});

describe("koa-session's members: maxAge, populated, save()", () => {
  it('maxAge reads the cookie lifetime, and setting it stores the session\'s own (number or "session")', async () => {
    const a = makeApp(3, { redis: f.server.url, rolling: false, cookie: { maxAge: 60_000 } }, (ctx) => {
      const before = ctx.session.maxAge;
      if (ctx.path === '/long') {
        ctx.session.user = 'ada';
        ctx.session.maxAge = 2 * DAY;
      } else if (ctx.path === '/browser') {
        ctx.session.maxAge = 'session';
      }
      return JSON.stringify({ before, after: ctx.session.maxAge, keys: Object.keys(ctx.session) });
    });
    const long = await a.get('/long');
    assert.equal(
      long.text,
      JSON.stringify({ before: 60_000, after: 2 * DAY, keys: ['user'] }),
      'maxAge is no data key',
    );
    assertLifetime(long, 2 * DAY, 'the cookie');
    const { cookie, id } = expectCookieSet(long);
    assert.equal((await stored(f.redis, `sess:${id}`)).l, String(2 * DAY));
    assert.deepEqual(await storedData(f.redis, `sess:${id}`), { user: 'ada' });
    const browser = await a.get('/browser', cookie);
    assert.equal(browser.text, JSON.stringify({ before: 2 * DAY, after: 'session', keys: ['user'] }));
    assert.equal(lifetime(browser), null);
    assert.equal((await stored(f.redis, `sess:${id}`)).l, '0');
  });

  it('maxAge without any lifetime is "session"; a bad value is a TypeError', async () => {
    const a = makeApp(3, { redis: f.server.url }, (ctx) => {
      const before = ctx.session.maxAge;
      try {
        (ctx.session as { maxAge: unknown }).maxAge = -5;
        return 'no error';
      } catch (err) {
        return `${String(before)} ${(err as Error).name}: ${(err as Error).message}`;
      }
    });
    assert.match(
      (await a.get('/')).text,
      /^session TypeError: ctx\.session\.maxAge .* must be a number of milliseconds from 1 to 2\^31 seconds, or 'session'/,
    );
  });

  it('populated tells whether the session holds data; save() writes every value and sends the cookie', async () => {
    const a = makeApp(3, { redis: f.server.url }, (ctx) => {
      const was = ctx.session.populated;
      if (ctx.path === '/seed') ctx.session.user = 'ada';
      if (ctx.path === '/save') ctx.session.save();
      return JSON.stringify([was, ctx.session.populated]);
    });
    assert.equal((await a.get('/nothing')).text, '[false,false]');
    const seed = await a.get('/seed');
    assert.equal(seed.text, '[false,true]');
    const { cookie } = expectCookieSet(seed);
    await a.ready();
    const { res, wire } = await f.monitor.request(() => a.get('/save', cookie));
    assert.equal(res.text, '[true,true]');
    assert.deepEqual(
      wire.map((c) => c.op),
      ['load', 'patch'],
    );
    assert.ok(wire[1]?.args.includes(':user'), 'every value is written');
    assert.equal(expectCookieSet(res).cookie, cookie);
  });
});

describe('app.keys is followed as it changes', () => {
  function keysApp(keys: unknown) {
    const k = new Koa();
    k.keys = keys as string[];
    k.silent = true;
    const session = koaRedisSession({ redis: f.server.url, rolling: false });
    closeable(() => session.close());
    k.use(session);
    k.use((ctx) => {
      if (ctx.path === '/seed') ctx.session.user = 'ada';
      ctx.body = String(ctx.session.user ?? 'nobody');
    });
    const callback = k.callback();
    return {
      app: k,
      session,
      get: (path: string, cookie?: string) =>
        cookie ? request(callback).get(path).set('Cookie', cookie) : request(callback).get(path),
    };
  }

  it('a new array: cookies of the old newest key still verify and are re-signed with the new one', async () => {
    const a = keysApp(['first-secret']);
    const { cookie, id } = expectCookieSet(await a.get('/seed'));
    a.app.keys = ['second-secret', 'first-secret'];
    const res = await a.get('/', cookie);
    assert.equal(res.text, 'ada');
    const resigned = expectCookieSet(res);
    assert.equal(resigned.id, id);
    assert.notEqual(resigned.cookie, cookie);
    assert.equal((await a.get('/', resigned.cookie)).text, 'ada');
    a.app.keys = ['third-secret'];
    assert.equal((await a.get('/', cookie)).text, 'nobody', 'a key dropped from app.keys verifies no more');
  });

  it('an array changed in place (unshift), and a Keygrip swapped in', async () => {
    const keys = ['first-secret'];
    const a = keysApp(keys);
    const { cookie } = expectCookieSet(await a.get('/seed'));
    keys.unshift('second-secret');
    const res = await a.get('/', cookie);
    assert.equal(res.text, 'ada');
    const resigned = expectCookieSet(res);
    a.app.keys = new Keygrip(['third-secret', 'second-secret']) as unknown as string[];
    const again = await a.get('/', resigned.cookie);
    assert.equal(again.text, 'ada');
    expectCookieSet(again); // re-signed with the Keygrip's newest key
  });

  it('a Buffer key changed in place signs and verifies with its new bytes, as ctx.cookies would', async () => {
    const key = Buffer.from('first-secret');
    const a = keysApp([key] as unknown as string[]);
    const { cookie } = expectCookieSet(await a.get('/seed'));
    assert.equal((await a.get('/', cookie)).text, 'ada');
    key.write('other-secret'); // the same length: only the bytes change
    assert.equal((await a.get('/', cookie)).text, 'nobody', 'signed with the old bytes: verifies no more');
    const { cookie: fresh, id } = expectCookieSet(await a.get('/seed'));
    assert.equal(fresh, signedCookie(id, ['other-secret']), 'signed with the new bytes');
    assert.equal((await a.get('/', fresh)).text, 'ada');
  });
});

describe('edges found in review', () => {
  it("an error's own Set-Cookie survives beside a rolled session cookie", async () => {
    const a = makeApp(3, { redis: f.server.url, cookie: { maxAge: 3_600_000 } }, (ctx) => {
      if (ctx.path === '/seed') {
        ctx.session.user = 'ada';
        return 'in';
      }
      ctx.throw(401, 'log in again', {
        headers: { 'set-cookie': ['return_to=%2Fcart; path=/; httponly'], Vary: 'Accept' },
      });
    });
    const { cookie, id } = expectCookieSet(await a.get('/seed'));
    await age(id);
    const res = await a.get('/cart', cookie);
    assert.equal(res.status, 401);
    const names = setCookies(res)
      .map((c) => c.name)
      .sort();
    assert.deepEqual(names, ['return_to', 'session'], `both cookies, got ${JSON.stringify(res.headers['set-cookie'])}`);
    assert.match(String(res.headers.vary), /Accept/);
    assert.match(String(res.headers.vary), /Cookie/);
  });

  it("timeoutTrigger scales to a session's own timeout: a remember-me session of a daily visitor keeps moving", async () => {
    const a = app({ timeout: 1200, timeoutTrigger: 600 });
    const { cookie, id } = expectCookieSet(await a.get('/remember'));
    const now = () => Math.floor(Date.now() / 1000);
    // A day later: 29 days left, more than half of 30: nothing moves.
    const dayLater = now() + 29 * 86_400;
    await update(f.redis, `sess:${id}`, { x: dayLater });
    expectNoCookie(await a.get('/', cookie));
    assert.equal(Number((await stored(f.redis, `sess:${id}`)).x), dayLater, 'the expiry stayed where it was');
    // Sixteen days later: 14 left, under half: the expiry and the cookie move, to 30 days from the
    // second of the read (between these two readings of the clock, however slow the machine).
    await update(f.redis, `sess:${id}`, { x: now() + 14 * 86_400 });
    const before = now();
    assertLifetime(await a.get('/', cookie), 30 * DAY, 'the cookie rolled with the move');
    const after = now();
    assertBetween(
      Number((await stored(f.redis, `sess:${id}`)).x),
      before + 30 * 86_400,
      after + 30 * 86_400,
      'the expiry after the move',
    );
  });

  it('one middleware on two apps: each app signs and verifies with its own app.keys, even interleaved', async () => {
    const session = koaRedisSession({ redis: f.server.url });
    closeable(() => session.close());
    let release: () => void = () => undefined;
    const held = new Promise<void>((r) => (release = r));
    let arrived: () => void = () => undefined;
    const reached = new Promise<void>((r) => (arrived = r));
    const make = (keys: string[]) => {
      const k = new Koa();
      k.keys = keys;
      k.silent = true;
      k.use(session);
      k.use(async (ctx) => {
        if (ctx.path === '/slow') {
          ctx.session.user = keys[0];
          arrived();
          await held; // the other app's request runs meanwhile
        }
        ctx.body = String(ctx.session.user ?? 'nobody');
      });
      return k.callback();
    };
    const one = make(['first-app-secret']);
    const two = make(['second-app-secret']);
    const slow = request(one)
      .get('/slow')
      .then((r) => r);
    // App one's request holds its session, however long a loaded machine took to get there (or it
    // ended without: then the assertions below say how).
    await Promise.race([reached, slow]);
    const other = await request(two)
      .get('/slow-not')
      .then((r) => r);
    assert.equal(other.text, 'nobody');
    release();
    const res = await slow;
    const { cookie } = expectCookieSet(res);
    assert.equal(
      (await request(one).get('/').set('Cookie', cookie)).text,
      'first-app-secret',
      "app one's cookie verifies with app one's keys",
    );
    assert.equal((await request(two).get('/').set('Cookie', cookie)).text, 'nobody', "and not with app two's");
  });

  it('ctx.session = {...} is all or nothing, and takes maxAge as koa-session does', async () => {
    const a = makeApp(3, { redis: f.server.url, rolling: false }, (ctx) => {
      if (ctx.path === '/seed') ctx.session.user = 'ada';
      else if (ctx.path === '/bad') {
        try {
          ctx.session = { user: 'eve', cart: ['x'], onChange: () => 1 } as never;
        } catch (err) {
          return `refused: ${(err as Error).message}`;
        }
      } else if (ctx.path === '/koa-session') ctx.session = { user: 'grace', maxAge: 2 * DAY } as never;
      return JSON.stringify({ ...ctx.session });
    });
    const { cookie, id } = expectCookieSet(await a.get('/seed'));
    const bad = await a.get('/bad', cookie);
    assert.match(bad.text, /^refused: ctx\.session\.onChange cannot be stored/);
    expectNoCookie(bad);
    assert.deepEqual(await storedData(f.redis, `sess:${id}`), { user: 'ada' }, 'nothing changed');
    const ok = await a.get('/koa-session', cookie);
    assert.equal(ok.text, JSON.stringify({ user: 'grace' }));
    assertLifetime(ok, 2 * DAY, 'maxAge set the lifetime');
    assert.equal((await stored(f.redis, `sess:${id}`)).l, String(2 * DAY));
  });

  it('data an older version stored under a now reserved name stays out of sight', async () => {
    const a = makeApp(3, { redis: f.server.url }, (ctx) => {
      if (ctx.path === '/seed') ctx.session.user = 'ada';
      return JSON.stringify({ data: { ...ctx.session }, maxAge: ctx.session.maxAge, keys: Object.keys(ctx.session) });
    });
    const { cookie, id } = expectCookieSet(await a.get('/seed'));
    await update(f.redis, `sess:${id}`, { ':maxAge': '5', ':save': '"x"' });
    assert.equal(
      (await a.get('/', cookie)).text,
      JSON.stringify({ data: { user: 'ada' }, maxAge: 'session', keys: ['user'] }),
    );
  });

  it('refuses lifetimes that make no valid expiry date', async () => {
    const a = makeApp(3, { redis: f.server.url }, (ctx) => {
      const out: string[] = [];
      for (const bad of [1e300, 2 ** 53, 0.4, 8.64e15]) {
        try {
          ctx.session.adjustCookieMaxAge(bad);
          out.push(`${bad}: accepted`);
        } catch {
          out.push(`${bad}: refused`);
        }
      }
      return out.join(', ');
    });
    assert.equal(
      (await a.get('/')).text,
      '1e+300: refused, 9007199254740992: refused, 0.4: refused, 8640000000000000: refused',
    );
    assert.throws(
      () => koaRedisSession({ redis: f.server.url, cookie: { maxAge: 1e300 } }),
      /option "cookie\.maxAge" must be a number of milliseconds from 1 to 2\^31 seconds/,
    );
  });

  it('a request that crosses the absolute timeout leaves an expired cookie, not a browser-session one', async () => {
    // 5 s: the read must load the session before they are up, however slow the machine (a load after
    // them finds a fresh session, and its write a new cookie); it writes after them.
    const a = makeApp(3, { redis: f.server.url, absoluteTimeout: 5, cookie: { maxAge: 3_600_000 } }, async (ctx) => {
      if (ctx.path === '/seed') ctx.session.user = 'ada';
      else {
        await new Promise((r) => setTimeout(r, 5_300));
        ctx.session.n = 1;
      }
      return 'ok';
    });
    const { cookie } = expectCookieSet(await a.get('/seed'));
    const res = await a.get('/slow', cookie);
    const set = setCookies(res).find((c) => c.name === 'session');
    if (set) assert.match(String(set.attributes.expires), /1970/, `an expired cookie, got ${set.raw}`);
  });
});
