/**
 * Every option of README "Options": its effect on the wire (MONITOR), on the cookies and on what is
 * stored. Their validation at koaRedisSession() time needs no Redis: test/unit/option-validation.test.ts.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import Keygrip from 'keygrip';
import type request from 'supertest';
import type { Context } from 'koa';
import {
  DeserializationError,
  type InvalidSessionError,
  NoSessionCookieError,
  NotInBackendError,
  PayloadLegacyError,
  PayloadTimeoutError,
  koaRedisSession,
  type SessionOptions,
} from '../src/index.js';
import {
  catchError,
  expectCookieCleared,
  expectCookieSet,
  expectNoCookie,
  makeApp,
  setCookies,
  KEYS,
} from './helpers/app.js';
import { afterSeed, assertBetween, assertTtl, signedCookie, storedData, useRedis } from './helpers/fixture.js';
import { increment, seed, stored, update } from './helpers/stored.js';
import { packSession } from '../src/store/layout.js';

const f = useRedis();

/** Run two requests: one that stores `seed`, then `handler` with its cookie; capture the second. */
function twoRequests(
  options: Omit<SessionOptions, 'redis'>,
  seed: Record<string, unknown>,
  handler: (ctx: Context) => unknown,
  withLua = false,
  between?: (key: string) => Promise<unknown>,
) {
  return afterSeed(f, { options, seed, handler, withLua, between });
}

describe('timeout', () => {
  it('stores t and x and sets the Redis TTL', async () => {
    const { key } = await twoRequests({ timeout: 60 }, { a: 1 }, () => 'x');
    const after = Math.floor(Date.now() / 1000);
    const hash = await stored(f.redis, key);
    assert.equal(hash.t, '60');
    // 60 s from the second of the last request: between the creation and now, however slow the
    // machine was between the two requests.
    assertBetween(Number(hash.x), Number(hash.c) + 60, after + 60, 'the payload expiry');
    await assertTtl(f.redis, key, 60);
  });

  it('0 means never: no TTL, no expiry in the payload, and loads move nothing', async () => {
    const { key, wire } = await twoRequests({ timeout: 0 }, { a: 1 }, () => 'x', true);
    assert.equal(await f.redis.ttl(key), -1);
    const hash = await stored(f.redis, key);
    assert.equal(hash.t, undefined);
    assert.equal(hash.x, undefined);
    assert.deepEqual(
      wire.filter((c) => c.lua).map((c) => c.op),
      ['get'],
    );
  });

  it('moves the expiry inside the load on every request by default', async () => {
    // One second later: the expiry the load computes differs from the stored one.
    const { wire } = await twoRequests(
      {},
      { a: 1 },
      () => 'x',
      true,
      (key) => increment(f.redis, key, 'x', -1),
    );
    assert.deepEqual(
      wire.map((c) => `${c.lua ? 'lua:' : ''}${c.op}`),
      ['load', 'lua:get', 'lua:setrange', 'lua:expire'],
    );
  });

  it('sends no refresh when the expiry is already where it would move (same second)', async (t) => {
    const app = makeApp(3, { redis: f.server.url }, (ctx) => {
      if (ctx.path === '/seed') ctx.session.a = 1;
    });
    await app.ready();
    const { cookie, id } = expectCookieSet(await app.get('/seed'));
    const key = `sess:${id}`;
    // The clock stands still for the read: its load runs in the second the expiry was set for.
    const second = Math.floor(Date.now() / 1000);
    await update(f.redis, key, { x: second + 1200 });
    const clock = t.mock.method(Date, 'now', () => second * 1000 + 500);
    const { res, wire } = await f.monitor.request(() => app.get('/', cookie), true);
    clock.mock.restore();
    assert.equal(res.status, 200);
    assert.equal(wire[0]?.op, 'load');
    assert.equal(wire[0]?.args[1], String(second), 'the load ran on the held clock');
    assert.deepEqual(
      wire.map((c) => `${c.lua ? 'lua:' : ''}${c.op}`),
      ['load', 'lua:get'],
      'no refresh',
    );
    assert.equal((await stored(f.redis, key)).x, String(second + 1200));
  });
});

describe('timeoutTrigger', () => {
  it('leaves the expiry alone while more than the trigger remains', async () => {
    // Five seconds gone: the expiry is not where a refresh would put it (without a trigger the load
    // would move it), but far more than the trigger remains.
    let x = 0;
    const { wire, res, key } = await twoRequests(
      { timeout: 600, timeoutTrigger: 60 },
      { a: 1 },
      () => 'x',
      true,
      async (k) => {
        x = await increment(f.redis, k, 'x', -5);
      },
    );
    assert.equal(res.status, 200);
    assert.deepEqual(
      wire.map((c) => c.op),
      ['load', 'get'],
    );
    assert.equal((await stored(f.redis, key)).x, String(x), 'the expiry stayed where it was');
  });

  it('moves the expiry inside the load once at most the trigger remains', async () => {
    const app = makeApp(3, { redis: f.server.url, timeout: 600, timeoutTrigger: 60 }, (ctx) => {
      if (ctx.path === '/seed') ctx.session.a = 1;
    });
    await app.ready();
    const { cookie, id } = expectCookieSet(await app.get('/seed'));
    const key = `sess:${id}`;
    const now = Math.floor(Date.now() / 1000);
    await update(f.redis, key, { x: now + 30 });
    await f.redis.expire(key, 30);
    const wire = await f.monitor.capture(() => app.get('/', cookie), true);
    const after = Math.floor(Date.now() / 1000);
    await app.close();
    assert.deepEqual(
      wire.map((c) => c.op),
      ['load', 'get', 'setrange', 'expire'],
    );
    await assertTtl(f.redis, key, 600);
    assertBetween(
      Number((await stored(f.redis, key)).x),
      now + 600,
      after + 600,
      'the payload expiry moved to the timeout',
    );
  });
});

describe('setRedisTtl false (LRU mode)', () => {
  it('sends no TTL, keeps the expiry in the payload, and the load still moves it', async () => {
    const before = Math.floor(Date.now() / 1000);
    const { key, wire } = await twoRequests(
      { setRedisTtl: false },
      { a: 1 },
      () => 'x',
      true,
      (k) => increment(f.redis, k, 'x', -1),
    );
    assert.equal(await f.redis.ttl(key), -1);
    assertBetween(
      Number((await stored(f.redis, key)).x),
      before + 1200,
      Math.floor(Date.now() / 1000) + 1200,
      'the payload expiry moved',
    );
    assert.deepEqual(
      wire.map((c) => c.op),
      ['load', 'get', 'setrange'],
    );
  });

  it('deletes a payload whose own expiry has passed, inside the load', async () => {
    const app = makeApp(3, { redis: f.server.url, setRedisTtl: false }, (ctx) => String(ctx.session.a));
    await app.ready();
    const cookie = signedCookie();
    const key = `sess:${cookie.slice(8, cookie.lastIndexOf('.'))}`;
    const now = Math.floor(Date.now() / 1000);
    await seed(f.redis, key, { c: now - 2000, t: 1200, x: now - 1, ':a': '1' });
    const { res, wire } = await f.monitor.request(() => app.get('/', cookie), true);
    await app.close();
    assert.equal(res.text, 'undefined');
    assert.deepEqual(
      wire.map((c) => c.op),
      ['load', 'get', 'del'],
    );
    assert.equal(await f.redis.exists(key), 0);
  });
});

describe('detectChanges', () => {
  it('false: nested mutation without changed() is not written', async () => {
    const { wire, key } = await twoRequests({ detectChanges: false }, { cart: { n: 1 } }, (ctx) => {
      (ctx.session.cart as { n: number }).n = 2;
    });
    assert.deepEqual(
      wire.map((c) => c.op),
      ['load'],
    );
    assert.deepEqual(await storedData(f.redis, key), { cart: { n: 1 } });
  });

  it('false: changed() writes every value', async () => {
    const { wire, key } = await twoRequests({ detectChanges: false }, { cart: { n: 1 }, b: 2 }, (ctx) => {
      (ctx.session.cart as { n: number }).n = 2;
      ctx.session.changed();
    });
    assert.deepEqual(
      wire.map((c) => c.op),
      ['load', 'patch'],
    );
    // key, now, TTL flag, maxSize, timeout intent, prune flag, flash count, pair count, op id,
    // absoluteTimeout, the user key's field, index, handle and info (no userKey: ''), pairs
    assert.deepEqual(wire[1]?.args.slice(14, 18), [':cart', '{"n":2}', ':b', '2']);
    assert.deepEqual(await storedData(f.redis, key), { cart: { n: 2 }, b: 2 });
  });

  it('true: only the keys whose encoding changed are sent', async () => {
    const { wire } = await twoRequests({}, { a: { x: 1 }, b: { y: 2 }, c: 3 }, (ctx) => {
      (ctx.session.b as { y: number }).y = 3;
      ctx.session.c = 3;
    });
    assert.deepEqual(
      wire.map((c) => c.op),
      ['load', 'patch'],
    );
    const args = wire[1]?.args ?? [];
    // key, now, TTL flag, maxSize, no timeout intent, prune flag, no flash, one pair, the op id,
    // absoluteTimeout, no user index (four ''), then only b. The expiry is not sent: the script takes it from the stored timeout.
    assert.match(
      args[8] ?? '',
      /^[\w-]{8}[0-9a-z]{1,6}$/,
      "the op id: the store's 8-character prefix and a base-36 counter",
    );
    assert.deepEqual(
      [...args.slice(2, 8), ...args.slice(9)],
      ['1', '65536', '', '1', '0', '1', '-1', '', '', '', '', ':b', '{"y":3}'],
    );
  });
});

describe('invalidateEmptySession', () => {
  it('false: an emptied session is kept, its fields removed, its cookie kept', async () => {
    const { wire, key, res } = await twoRequests({ invalidateEmptySession: false }, { a: 1 }, (ctx) => {
      delete ctx.session.a;
    });
    assert.deepEqual(
      wire.map((c) => c.op),
      ['load', 'patch'],
    );
    expectNoCookie(res);
    assert.equal(await f.redis.exists(key), 1);
    assert.deepEqual(await storedData(f.redis, key), {});
  });
});

describe('cookie attributes', () => {
  it('are all sent on the session cookie, and kept when clearing', async () => {
    const expires = new Date(Date.now() + 86_400_000);
    const cookie = {
      name: 'sid',
      domain: 'example.com',
      path: '/app',
      maxAge: 3_600_000,
      secure: true,
      httpOnly: true,
      sameSite: 'strict',
      priority: 'high',
      partitioned: true,
    } as const;
    const app = makeApp(
      3,
      { redis: f.server.url, cookie: { ...cookie, maxAge: undefined as unknown as number, expires } },
      (ctx) => {
        if (ctx.path === '/app/in') ctx.session.a = 1;
        else ctx.session.invalidate();
      },
      async (ctx, next) => {
        ctx.cookies.secure = true;
        await next();
      },
    );
    const res = await app.get('/app/in');
    const [set] = setCookies(res);
    assert.equal(set?.name, 'sid');
    assert.deepEqual(
      { ...set?.attributes },
      {
        path: '/app',
        expires: expires.toUTCString(),
        domain: 'example.com',
        priority: 'high',
        samesite: 'strict',
        secure: true,
        httponly: true,
        partitioned: true,
      },
    );
    const cleared = expectCookieCleared(await app.get('/app/out', `sid=${set?.value}`), 'sid');
    assert.equal(cleared.attributes.path, '/app');
    assert.equal(cleared.attributes.domain, 'example.com');
    assert.equal(cleared.attributes.partitioned, true);
    await app.close();
  });

  it('maxAge sets Max-Age-derived expires', async () => {
    const app = makeApp(3, { redis: f.server.url, cookie: { maxAge: 60_000 } }, (ctx) => {
      ctx.session.a = 1;
    });
    const before = Date.now();
    const [set] = setCookies(await app.get('/'));
    const after = Date.now();
    await app.close();
    const expires = Date.parse(String(set?.attributes.expires));
    // A minute from the response, made between these two readings of the clock (Expires is in whole
    // seconds: up to one less).
    assertBetween(expires, before + 60_000 - 1000, after + 60_000, 'Expires');
  });

  it('defaults to path=/, HttpOnly, SameSite=Lax and not Secure on plain HTTP', async () => {
    const app = makeApp(3, { redis: f.server.url }, (ctx) => {
      ctx.session.a = 1;
    });
    const [set] = setCookies(await app.get('/'));
    await app.close();
    assert.deepEqual({ ...set?.attributes }, { path: '/', samesite: 'lax', httponly: true });
  });

  it('secure: true on a plain-HTTP request fails before anything is written (no orphan key)', async () => {
    const app = makeApp(3, { redis: f.server.url, cookie: { secure: true } }, (ctx) => {
      ctx.session.a = 1;
    });
    await app.ready();
    const { res, wire } = await f.monitor.request(() => app.get('/'));
    await app.close();
    assert.equal(res.status, 500);
    assert.deepEqual(wire, []);
    expectNoCookie(res);
  });

  it('is Secure by default on HTTPS behind a trusted proxy', async () => {
    const app = makeApp(
      3,
      { redis: f.server.url },
      (ctx) => {
        ctx.session.a = 1;
      },
      async (ctx, next) => {
        ctx.app.proxy = true;
        await next();
      },
    );
    const res = await (app.get('/') as unknown as request.Test).set('X-Forwarded-Proto', 'https');
    await app.close();
    assert.equal(setCookies(res)[0]?.attributes.secure, true);
  });
});

describe('keys and rotation', () => {
  it('a cookie signed with an older key is accepted and re-signed with the newest, every attribute kept', async () => {
    const expires = new Date(Date.now() + 86_400_000);
    const oldApp = makeApp(
      3,
      { redis: f.server.url, keys: ['older-secret'], cookie: { expires, sameSite: 'strict' } },
      (ctx) => {
        ctx.session.user = 'ada';
      },
    );
    const { cookie, id } = expectCookieSet(await oldApp.get('/'));
    await oldApp.close();
    const app = makeApp(
      3,
      { redis: f.server.url, keys: ['newest-secret', 'older-secret'], cookie: { expires, sameSite: 'strict' } },
      (ctx) => String(ctx.session.user),
    );
    await app.ready();
    const { res, wire } = await f.monitor.request(() => app.get('/', cookie));
    await app.close();
    assert.equal(res.text, 'ada');
    assert.deepEqual(
      wire.map((c) => c.op),
      ['load'],
    );
    const reissued = expectCookieSet(res);
    assert.equal(reissued.id, id, 'same session');
    assert.notEqual(reissued.cookie, cookie, 'new signature');
    const expected = `session=${id}.${new Keygrip(['newest-secret']).sign(`session=${id}`)}`;
    assert.equal(reissued.cookie, expected);
    const [set] = setCookies(res);
    assert.deepEqual(
      { ...set?.attributes },
      { path: '/', expires: expires.toUTCString(), samesite: 'strict', httponly: true },
    );
  });

  it('a cookie signed with the newest key is not re-sent', async () => {
    const { res } = await twoRequests({}, { a: 1 }, () => 'x');
    expectNoCookie(res);
  });

  it('accepts a Keygrip instance', async () => {
    const { res } = await twoRequests({ keys: new Keygrip(['k1'], 'sha256') }, { a: 1 }, (ctx) =>
      String(ctx.session.a),
    );
    assert.equal(res.text, '1');
  });

  it('uses the keys option over app.keys', async () => {
    const app = makeApp(3, { redis: f.server.url, keys: ['own-key'] }, (ctx) => {
      ctx.session.a = 1;
    });
    const { id, cookie } = expectCookieSet(await app.get('/'));
    await app.close();
    assert.equal(cookie, `session=${id}.${new Keygrip(['own-key']).sign(`session=${id}`)}`);
    assert.notEqual(cookie, signedCookie(id, KEYS));
  });
});

describe('cookieOnException', () => {
  const boom = (ctx: Context) => {
    ctx.session.user = 'ada';
    ctx.throw(418, 'teapot');
  };

  it('true: an error response still sets the new session cookie, and the session is stored', async () => {
    const app = makeApp(3, { redis: f.server.url }, boom);
    await app.ready();
    const { res, wire } = await f.monitor.request(() => app.get('/'));
    await app.close();
    assert.equal(res.status, 418);
    assert.deepEqual(
      wire.map((c) => c.op),
      ['create'],
    );
    const { id } = expectCookieSet(res);
    assert.deepEqual(await storedData(f.redis, `sess:${id}`), { user: 'ada' });
  });

  it('false: an error response sets no cookie and stores nothing', async () => {
    const app = makeApp(3, { redis: f.server.url, cookieOnException: false }, boom);
    await app.ready();
    const { res, wire } = await f.monitor.request(() => app.get('/'));
    await app.close();
    assert.equal(res.status, 418);
    assert.deepEqual(wire, []);
    expectNoCookie(res);
    assert.equal(await f.redis.dbsize(), 0);
  });

  it('an existing session changed before the error is still written', async () => {
    const { wire, key, res } = await twoRequests({}, { a: 1 }, (ctx) => {
      ctx.session.a = 2;
      throw new Error('downstream');
    });
    assert.equal(res.status, 500);
    assert.deepEqual(
      wire.map((c) => c.op),
      ['load', 'patch'],
    );
    assert.deepEqual(await storedData(f.redis, key), { a: 2 });
  });
});

describe('allowCookies', () => {
  it('is asked after the handler, with the response in hand', async () => {
    const app = makeApp(
      3,
      { redis: f.server.url, allowCookies: (ctx) => !ctx.response.get('Cache-Control') },
      (ctx) => {
        ctx.session.a = 1;
        if (ctx.path === '/cached') ctx.set('Cache-Control', 'public, max-age=60');
      },
    );
    expectNoCookie(await app.get('/cached'));
    expectCookieSet(await app.get('/private'));
    await app.close();
    assert.equal(await f.redis.dbsize(), 1);
  });

  it('false on a bad cookie: no Set-Cookie at all, not even a clear', async () => {
    const app = makeApp(3, { redis: f.server.url, allowCookies: () => false }, () => 'x');
    expectNoCookie(await app.get('/', 'session=garbage'));
    await app.close();
  });
});

describe('onInvalid', () => {
  async function reasonFor(
    prepare: (key: string) => Promise<unknown>,
    options: Omit<SessionOptions, 'redis'> = {},
    cookie = signedCookie(),
  ) {
    const seen: InvalidSessionError[] = [];
    const key = `sess:${cookie.slice(8, cookie.lastIndexOf('.'))}`;
    await prepare(key);
    const app = makeApp(3, { ...options, redis: f.server.url, onInvalid: (_ctx, err) => seen.push(err) }, () => 'x');
    await app.get('/', cookie);
    await app.get('/');
    await app.close();
    assert.equal(seen.length, 1, 'called once, and not for a request without a cookie');
    return seen[0] as InvalidSessionError;
  }
  const now = () => Math.floor(Date.now() / 1000);

  it('reports a badly signed cookie as NoSessionCookieError (signature)', async () => {
    const err = await reasonFor(async () => undefined, {}, `${signedCookie().slice(0, -2)}xx`);
    assert.ok(err instanceof NoSessionCookieError);
    assert.equal((err as NoSessionCookieError).reason, 'signature');
  });
  it('reports a malformed cookie as NoSessionCookieError (format)', async () => {
    const err = await reasonFor(async () => undefined, {}, 'session=abc');
    assert.ok(err instanceof NoSessionCookieError);
    assert.equal((err as NoSessionCookieError).reason, 'format');
  });
  it('reports a missing key as NotInBackendError with the id', async () => {
    const cookie = signedCookie();
    const err = await reasonFor(async () => undefined, {}, cookie);
    assert.ok(err instanceof NotInBackendError);
    assert.equal(err.sessionId, cookie.slice(8, cookie.lastIndexOf('.')));
  });
  it('reports an expired payload as PayloadTimeoutError', async () => {
    const err = await reasonFor((key) => seed(f.redis, key, { c: now() - 90, t: 60, x: now() - 30 }));
    assert.ok(err instanceof PayloadTimeoutError);
  });
  it('reports a legacy payload as PayloadLegacyError', async () => {
    // A hash of a format before the hash layout (v = 0): nothing to migrate.
    const err = await reasonFor((key) => f.redis.hset(key, 'c', now(), 'v', 0));
    assert.ok(err instanceof PayloadLegacyError);
  });
  it('reports a string session of an older format version as PayloadLegacyError, and deletes it', async () => {
    let key = '';
    const err = await reasonFor(async (k) => {
      key = k;
      await seed(f.redis, k, { v: 1, c: now(), t: 1200, x: now() + 1200, ':a': '1' }, 1200);
    });
    assert.ok(err instanceof PayloadLegacyError);
    assert.equal(await f.redis.exists(key), 0);
  });
  it('reports an undecodable payload as DeserializationError with deserializedFailsNew', async () => {
    const err = await reasonFor((key) => seed(f.redis, key, { c: now(), ':bad': '{' }), { deserializedFailsNew: true });
    assert.ok(err instanceof DeserializationError);
    assert.equal((err as DeserializationError).key, 'bad');
  });
});

describe('the previous layout (a hash per session, v = 1) is migrated on first contact', () => {
  const now = () => Math.floor(Date.now() / 1000);

  it('a session hash loads: the handler sees its data, and it is stored again as one string, its TTL kept', async () => {
    const cookie = signedCookie();
    const key = `sess:${cookie.slice(8, cookie.lastIndexOf('.'))}`;
    const c = now() - 100;
    const x = now() + 1100;
    await f.redis.hset(key, 'c', c, 'v', 1, 't', 1200, 'x', x, 's', 16, ':user', '"ada"', ':cart', '["apple"]');
    await f.redis.expire(key, 1100);
    const seen: InvalidSessionError[] = [];
    // timeoutTrigger: the load does not move the expiry, so the migrated value is compared as it was.
    const app = makeApp(
      3,
      { redis: f.server.url, timeout: 1200, timeoutTrigger: 60, onInvalid: (_ctx, err) => seen.push(err) },
      (ctx) => JSON.stringify({ user: ctx.session.user, cart: ctx.session.cart, isNew: ctx.session.isNew }),
    );
    const res = await app.get('/', cookie);
    await app.close();
    assert.equal(res.text, JSON.stringify({ user: 'ada', cart: ['apple'], isNew: false }));
    assert.deepEqual(seen, []);
    assert.equal(await f.redis.type(key), 'string', 'migrated to the string layout');
    assert.deepEqual(await stored(f.redis, key), {
      v: '2',
      c: String(c),
      t: '1200',
      x: String(x),
      ':user': '"ada"',
      ':cart': '["apple"]',
    });
    await assertTtl(f.redis, key, 1100);
  });

  it('a marker hash {m} a regenerate left is followed by a logout: the session it names ends', async () => {
    const app = makeApp(3, { redis: f.server.url }, async (ctx) => {
      if (ctx.path === '/login') ctx.session.user = 'ada';
      else if (ctx.path === '/logout') {
        // Meanwhile, a server still on the hash layout moved the session to `moved`, leaving a marker.
        const key = `sess:${ctx.session.id}`;
        await f.redis.del(key);
        await f.redis.hset(key, 'm', 'sess:moved', 'o', 'someop=1');
        await f.redis.expire(key, 1200);
        await f.redis.hset('sess:moved', 'c', now(), 'v', 1, 't', 1200, 'x', now() + 1200, ':user', '"ada"');
        await f.redis.expire('sess:moved', 1200);
        ctx.session.invalidate();
      }
      return String(ctx.session.user);
    });
    const { cookie, id } = expectCookieSet(await app.get('/login'));
    const res = await app.get('/logout', cookie);
    await app.close();
    assert.equal(res.status, 200);
    expectCookieCleared(res);
    assert.equal(await f.redis.exists(`sess:${id}`), 0, 'the marker is gone');
    assert.equal(await f.redis.exists('sess:moved'), 0, 'and the session it names ended');
  });

  it('a marker hash loaded by its old cookie leads nowhere, and is kept as a marker of the string layout', async () => {
    const cookie = signedCookie();
    const key = `sess:${cookie.slice(8, cookie.lastIndexOf('.'))}`;
    await seed(f.redis, 'sess:moved', { t: 1200, x: now() + 1200, ':user': '"ada"' }, 1200);
    await f.redis.hset(key, 'm', 'sess:moved', 'o', 'someop=1');
    await f.redis.expire(key, 1200);
    const app = makeApp(3, { redis: f.server.url }, (ctx) =>
      JSON.stringify({ user: ctx.session.user ?? null, isNew: ctx.session.isNew }),
    );
    const res = await app.get('/', cookie);
    await app.close();
    assert.equal(res.text, JSON.stringify({ user: null, isNew: true }));
    assert.deepEqual(await stored(f.redis, key), { m: 'sess:moved', o: 'someop=1' });
    await assertTtl(f.redis, key, 1200);
    assert.deepEqual(await storedData(f.redis, 'sess:moved'), { user: 'ada' }, 'the session it names is untouched');
  });
});

describe('contextKey', () => {
  it('puts the session on the named property only', async () => {
    const app = makeApp(3, { redis: f.server.url, contextKey: 'sess' }, (ctx) => {
      (ctx as unknown as { sess: Record<string, unknown> }).sess.a = 1;
      return String(ctx.session);
    });
    const res = await app.get('/');
    await app.close();
    assert.equal(res.text, 'undefined');
    expectCookieSet(res);
  });
});

describe('prefix', () => {
  it('prefixes the Redis key', async () => {
    const { key } = await twoRequests({ prefix: 'app1:s:' }, { a: 1 }, () => 'x');
    assert.match(key, /^app1:s:/);
    assert.deepEqual(await storedData(f.redis, key), { a: 1 });
  });
});

describe('serializer', () => {
  it('encodes each value with the given serializer', async () => {
    const serializer = {
      stringify: (v: unknown) => `j:${JSON.stringify(v)}`,
      parse: (s: string) => JSON.parse(s.slice(2)),
    };
    const { key, res } = await twoRequests({ serializer }, { a: { b: 1 } }, (ctx) => JSON.stringify(ctx.session.a));
    assert.equal((await stored(f.redis, key))[':a'], 'j:{"b":1}');
    assert.equal(res.text, '{"b":1}');
  });
});

describe('genId', () => {
  it('names new sessions', async () => {
    let n = 0;
    const app = makeApp(3, { redis: f.server.url, genId: () => `custom-${++n}` }, (ctx) => {
      ctx.session.a = 1;
    });
    const { id } = expectCookieSet(await app.get('/'));
    await app.close();
    assert.equal(id, 'custom-1');
    assert.equal(await f.redis.exists('sess:custom-1'), 1);
  });

  it('draws again when an id is taken (create-if-absent)', async () => {
    await seed(f.redis, 'sess:taken', { c: 1, ':owner': '"someone"' });
    const ids = ['taken', 'fresh'];
    const app = makeApp(3, { redis: f.server.url, genId: () => ids.shift() as string }, (ctx) => {
      ctx.session.a = 1;
    });
    await app.ready();
    const { res, wire } = await f.monitor.request(() => app.get('/'));
    await app.close();
    // The taken id: its SET … NX fails, and one GET tells a collision from this create resent after a
    // lost reply (src/store/commands.ts); then a fresh id.
    assert.deepEqual(
      wire.map((c) => c.op),
      ['create', 'get', 'create'],
    );
    assert.equal(expectCookieSet(res).id, 'fresh');
    assert.deepEqual(
      await storedData(f.redis, 'sess:taken'),
      { owner: 'someone' },
      'the existing session is untouched',
    );
  });

  it('an id that is not cookie-safe is a clear error', async () => {
    const caught: { error?: unknown } = {};
    const app = makeApp(
      3,
      { redis: f.server.url, genId: () => 'has space' },
      (ctx) => {
        ctx.session.a = 1;
      },
      catchError(caught),
    );
    const res = await app.get('/');
    await app.close();
    const seen = caught.error;
    assert.equal(res.status, 500);
    assert.ok(seen instanceof TypeError, `a TypeError, got ${String(seen)}`);
    assert.match(seen.message, /genId returned "has space"; ids must match .* \(cookie-safe, no "\."\)/);
    assert.equal(await f.redis.dbsize(), 0);
  });
});

describe('redis', () => {
  it('a client passed in is used and not closed', async (t) => {
    const { Redis } = await import('ioredis');
    const client = new Redis(f.server.url);
    t.after(() => client.disconnect());
    const app = makeApp(3, { redis: client }, (ctx) => {
      ctx.session.a = 1;
    });
    expectCookieSet(await app.get('/'));
    await app.close();
    assert.equal(await client.ping(), 'PONG');
  });

  it('a create stores the same value through any client: keyPrefix, autopipelining, not yet connected; and under a non-ASCII prefix', async (t) => {
    // A create's SET may go as one frame of ours (src/store/commands.ts, FramedCommand): only where
    // the client neither prefixes keys nor autopipelines, and the key is ASCII.
    const { Redis } = await import('ioredis');
    const clients: Array<[string, () => InstanceType<typeof Redis> | string, string]> = [
      ['keyPrefix', () => new Redis(f.server.url, { keyPrefix: 'kp:' }), 'kp:sess:'],
      ['enableAutoPipelining', () => new Redis(f.server.url, { enableAutoPipelining: true }), 'sess:'],
      [
        'enableAutoPipelining, a script left out',
        () => new Redis(f.server.url, { enableAutoPipelining: true, autoPipeliningIgnoredCommands: ['ksmLoadV1'] }),
        'sess:',
      ],
      ['lazyConnect, not yet connected', () => new Redis(f.server.url, { lazyConnect: true }), 'sess:'],
      ['a non-ASCII prefix', () => f.server.url, 'sé🙂:'],
    ];
    for (const [what, make, prefix] of clients) {
      const redis = make();
      if (typeof redis !== 'string') t.after(() => redis.disconnect());
      const app = makeApp(3, { redis, prefix: prefix.replace('kp:', '') }, (ctx) => {
        if (ctx.path === '/put') Object.assign(ctx.session, { a: 'x', b: [1, 'y'] });
        else return JSON.stringify({ ...ctx.session });
      });
      const { res, wire } = await f.monitor.request(() => app.get('/put'));
      const { cookie, id } = expectCookieSet(res);
      assert.deepEqual(
        wire.filter((c) => c.op === 'create').map((c) => c.args.slice(2)),
        [['EX', '1200', 'NX']],
        `${what}: one SET … EX … NX`,
      );
      const value = (await f.redis.getBuffer(`${prefix}${id}`)) as Buffer;
      const head = /^2 \w+ \w+ \w+ /.exec(value.toString('latin1'))?.[0] as string;
      assert.ok(value.equals(packSession(head, [':a', '"x"', ':b', '[1,"y"]'], false)), `${what}: the value`);
      assert.deepEqual(JSON.parse((await app.get('/get', cookie)).text), { a: 'x', b: [1, 'y'] }, what);
      await app.close();
      await f.redis.flushall();
    }
  });

  it('a client made from options is closed by close()', async (t) => {
    const mw = koaRedisSession({ redis: { host: '127.0.0.1', port: f.server.port }, keys: KEYS });
    t.after(() => mw.close());
    assert.equal(await mw.redis.ping(), 'PONG');
    await mw.close();
    assert.equal(mw.redis.status, 'end');
  });
});
