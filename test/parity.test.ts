/**
 * Pyramid ISession parity (reference/pyramid_session_redis.md §2): flash queues, CSRF tokens and
 * csrfProtect(), adjustTimeout(), adjustCookieMaxAge(), recookie(), and maxSize — each with the
 * Redis commands it costs.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Context, Middleware } from 'koa';
import { SessionSizeError, csrfProtect, type SessionOptions } from '../src/index.js';
import { expectCookieSet, expectNoCookie, makeApp, setCookies } from './helpers/app.js';
import { closeable } from './helpers/cleanup.js';
import { assertTtl, storedData, useRedis } from './helpers/fixture.js';

const f = useRedis();

/** An app whose handler picks its behaviour by path; returns helpers that capture the wire. */
async function appWith(routes: Record<string, (ctx: Context) => unknown>, options: Omit<SessionOptions, 'redis'> = {}, before?: Middleware) {
  const app = makeApp(3, { ...options, redis: f.server.url }, (ctx) => routes[ctx.path]?.(ctx), before);
  await app.ready();
  return {
    app,
    run: async (path: string, cookie?: string) => {
      const { res, wire } = await f.monitor.request(() => app.get(path, cookie));
      return { res, wire: wire.map((c) => c.op) };
    },
  };
}

describe('flash', () => {
  it('queues messages across a redirect and pops them once', async () => {
    const { app, run } = await appWith({
      '/save': (ctx) => {
        ctx.session.flash('saved');
        ctx.session.flash({ level: 'warn', text: 'check it' });
        ctx.redirect('/show');
      },
      '/show': (ctx) => JSON.stringify(ctx.session.popFlash()),
    });
    const first = await run('/save');
    assert.deepEqual(first.wire, ['create'], 'a flash alone creates the session');
    const { cookie, id } = expectCookieSet(first.res);
    const shown = await run('/show', cookie);
    assert.deepEqual(JSON.parse(shown.res.text), ['saved', { level: 'warn', text: 'check it' }]);
    assert.deepEqual(shown.wire, ['load', 'del'], 'popping the only content empties the session, which is deleted');
    const again = await run('/show', cookie);
    assert.equal(again.res.text, '[]');
    await app.close();
    assert.equal(await f.redis.exists(`sess:${id}`), 0);
  });

  it('keeps named queues apart, and flash is not data', async () => {
    const { app, run } = await appWith({
      '/put': (ctx) => {
        ctx.session.user = 'ada';
        ctx.session.flash('e1', 'errors');
        ctx.session.flash('i1', 'info');
        ctx.session.flash('e2', 'errors');
      },
      '/peek': (ctx) => JSON.stringify({ errors: ctx.session.peekFlash('errors'), info: ctx.session.peekFlash('info'), none: ctx.session.peekFlash(), keys: Object.keys(ctx.session) }),
    });
    const { cookie, id } = expectCookieSet((await run('/put')).res);
    const peek = await run('/peek', cookie);
    assert.deepEqual(JSON.parse(peek.res.text), { errors: ['e1', 'e2'], info: ['i1'], none: [], keys: ['user'] });
    assert.deepEqual(peek.wire, ['load'], 'peeking writes nothing');
    const hash = await f.redis.hgetall(`sess:${id}`);
    assert.equal(hash['f:errors'], '["e1","e2"]');
    assert.equal(hash['f:info'], '["i1"]');
    await app.close();
  });

  it('popping an empty queue sends no write', async () => {
    const { app, run } = await appWith({
      '/put': (ctx) => {
        ctx.session.user = 'ada';
      },
      '/pop': (ctx) => JSON.stringify(ctx.session.popFlash('nothing-here')),
    });
    const { cookie } = expectCookieSet((await run('/put')).res);
    const pop = await run('/pop', cookie);
    assert.equal(pop.res.text, '[]');
    assert.deepEqual(pop.wire, ['load']);
    await app.close();
  });

  it('popping one queue of several patches just that field away', async () => {
    const { app, run } = await appWith({
      '/put': (ctx) => {
        ctx.session.user = 'ada';
        ctx.session.flash('a', 'one');
        ctx.session.flash('b', 'two');
      },
      '/pop': (ctx) => JSON.stringify(ctx.session.popFlash('one')),
    });
    const { cookie, id } = expectCookieSet((await run('/put')).res);
    const pop = await run('/pop', cookie);
    assert.equal(pop.res.text, '["a"]');
    assert.deepEqual(pop.wire, ['load', 'patch']);
    const hash = await f.redis.hgetall(`sess:${id}`);
    assert.equal(hash['f:one'], undefined);
    assert.equal(hash['f:two'], '["b"]');
    await app.close();
  });

  it('allowDuplicate false does not queue a message twice', async () => {
    const { app, run } = await appWith({
      '/put': (ctx) => {
        ctx.session.flash({ t: 'x' }, '', false);
        ctx.session.flash({ t: 'x' }, '', false);
        ctx.session.flash({ t: 'y' }, '', false);
        ctx.session.flash({ t: 'y' });
        return JSON.stringify(ctx.session.peekFlash());
      },
    });
    const { res } = await run('/put');
    assert.deepEqual(JSON.parse(res.text), [{ t: 'x' }, { t: 'y' }, { t: 'y' }]);
    await app.close();
  });

  it('a message that cannot be stored is refused at flash()', async () => {
    const { app, run } = await appWith({
      '/put': (ctx) => {
        try {
          ctx.session.flash(() => 1, 'q');
          return 'stored';
        } catch (err) {
          return (err as Error).message;
        }
      },
    });
    const { res, wire } = await run('/put');
    assert.match(res.text, /ctx\.session\.flash\(…, "q"\)\[0\] cannot be stored in the session: a function/);
    assert.deepEqual(wire, []);
    await app.close();
  });
});

describe('CSRF tokens', () => {
  it('getCsrfToken() makes a 64-hex token once, stable across requests, stored outside the data', async () => {
    const { app, run } = await appWith({
      '/token': (ctx) => JSON.stringify({ token: ctx.session.getCsrfToken(), keys: Object.keys(ctx.session) }),
    });
    const first = await run('/token');
    const { token, keys } = JSON.parse(first.res.text);
    assert.match(token, /^[0-9a-f]{64}$/);
    assert.deepEqual(keys, []);
    assert.deepEqual(first.wire, ['create']);
    const { cookie, id } = expectCookieSet(first.res);
    const second = await run('/token', cookie);
    assert.equal(JSON.parse(second.res.text).token, token);
    assert.deepEqual(second.wire, ['load'], 'reading the token again writes nothing');
    assert.equal(await f.redis.hget(`sess:${id}`, 'k'), JSON.stringify(token));
    await app.close();
  });

  it('newCsrfToken() replaces the token', async () => {
    const { app, run } = await appWith({
      '/token': (ctx) => ctx.session.getCsrfToken(),
      '/renew': (ctx) => ctx.session.newCsrfToken(),
    });
    const first = await run('/token');
    const { cookie } = expectCookieSet(first.res);
    const renewed = await run('/renew', cookie);
    assert.notEqual(renewed.res.text, first.res.text);
    assert.match(renewed.res.text, /^[0-9a-f]{64}$/);
    assert.deepEqual(renewed.wire, ['load', 'patch']);
    assert.equal((await run('/token', cookie)).res.text, renewed.res.text);
    await app.close();
  });

  describe('csrfProtect()', () => {
    const guarded = async () => {
      const { Koa3, request } = await import('./helpers/raw.js');
      const { koaRedisSession } = await import('../src/index.js');
      const koa = new Koa3();
      koa.keys = ['k'];
      koa.silent = true;
      const session = koaRedisSession({ redis: f.server.url });
      const close = closeable(() => session.close());
      koa.use(session);
      koa.use(async (ctx, next) => {
        // a stand-in body parser for form posts
        if (ctx.is('application/x-www-form-urlencoded')) {
          let text = '';
          for await (const chunk of ctx.req) text += chunk;
          (ctx.request as { body?: unknown }).body = Object.fromEntries(new URLSearchParams(text));
        }
        await next();
      });
      koa.use(csrfProtect());
      koa.use((ctx) => {
        ctx.body = ctx.path === '/form' ? ctx.session.getCsrfToken() : 'done';
      });
      const agent = request(koa.callback());
      const form = await agent.get('/form');
      const cookie = String((form.headers['set-cookie'] as unknown as string[])[0]).split(';')[0] as string;
      return { agent, cookie, token: form.text, close };
    };

    it('lets safe methods through without a token', async () => {
      const { agent, cookie, close } = await guarded();
      assert.equal((await agent.get('/x').set('Cookie', cookie)).status, 200);
      await close();
    });

    it('accepts the token in the header', async () => {
      const { agent, cookie, token, close } = await guarded();
      assert.equal((await agent.post('/x').set('Cookie', cookie).set('X-CSRF-Token', token)).status, 200);
      await close();
    });

    it('accepts the token in the form field', async () => {
      const { agent, cookie, token, close } = await guarded();
      const res = await agent.post('/x').set('Cookie', cookie).type('form').send({ _csrf: token });
      assert.equal(res.status, 200);
      await close();
    });

    it('answers 403 to a missing, wrong or other session\'s token', async () => {
      const { agent, cookie, token, close } = await guarded();
      const other = await guarded();
      assert.equal((await agent.post('/x').set('Cookie', cookie)).status, 403);
      const wrong = `${token.slice(0, -1)}${token.endsWith('0') ? '1' : '0'}`;
      assert.equal((await agent.post('/x').set('Cookie', cookie).set('X-CSRF-Token', wrong)).status, 403);
      assert.equal((await agent.post('/x').set('Cookie', cookie).set('X-CSRF-Token', 'short')).status, 403);
      assert.equal((await agent.post('/x').set('Cookie', cookie).set('X-CSRF-Token', other.token)).status, 403);
      assert.equal((await agent.post('/x').set('X-CSRF-Token', token)).status, 403, 'no session, no token');
      await close();
      await other.close();
    });

    it('says where to mount it when there is no session middleware', async () => {
      const { Koa3, request } = await import('./helpers/raw.js');
      const koa = new Koa3();
      koa.silent = true;
      let seen: unknown;
      koa.use(async (ctx, next) => {
        try {
          await next();
        } catch (err) {
          seen = err;
          ctx.status = 500;
        }
      });
      koa.use(csrfProtect());
      await request(koa.callback()).post('/x');
      assert.match(String(seen), /mount csrfProtect\(\) after koaRedisSession\(\)/);
    });
  });
});

describe('adjustTimeout()', () => {
  it('moves t, x and the TTL together in the one write (fixing pyramid B5)', async () => {
    const { app, run } = await appWith({
      '/put': (ctx) => {
        ctx.session.user = 'ada';
      },
      '/long': (ctx) => {
        ctx.session.adjustTimeout(86_400);
        return String(ctx.session.timeout);
      },
    }, { timeoutTrigger: 60 });
    const { cookie, id } = expectCookieSet((await run('/put')).res);
    const key = `sess:${id}`;
    const long = await run('/long', cookie);
    assert.equal(long.res.text, '86400');
    assert.deepEqual(long.wire, ['load', 'patch']);
    const hash = await f.redis.hgetall(key);
    const now = Date.now() / 1000;
    assert.equal(hash.t, '86400');
    assert.ok(Math.abs(Number(hash.x) - (now + 86_400)) < 5, 'the payload expiry moved');
    await assertTtl(f.redis, key, 86_400);
    await app.close();
  });

  it('0 makes the session never expire: no t, no x, no TTL', async () => {
    const { app, run } = await appWith({
      '/put': (ctx) => {
        ctx.session.user = 'ada';
      },
      '/forever': (ctx) => {
        ctx.session.adjustTimeout(0);
      },
      '/read': (ctx) => String(ctx.session.timeout),
    });
    const { cookie, id } = expectCookieSet((await run('/put')).res);
    assert.deepEqual((await run('/forever', cookie)).wire, ['load', 'patch']);
    const hash = await f.redis.hgetall(`sess:${id}`);
    assert.equal(hash.t, undefined);
    assert.equal(hash.x, undefined);
    assert.equal(await f.redis.ttl(`sess:${id}`), -1);
    assert.equal((await run('/read', cookie)).res.text, 'null');
    await app.close();
  });

  it('on a new session, the session is created with that timeout', async () => {
    const { app, run } = await appWith({
      '/put': (ctx) => {
        ctx.session.adjustTimeout(30);
        ctx.session.user = 'ada';
      },
    });
    const { id } = expectCookieSet((await run('/put')).res);
    assert.equal(await f.redis.hget(`sess:${id}`, 't'), '30');
    await assertTtl(f.redis, `sess:${id}`, 30);
    await app.close();
  });

  it('refuses a bad value', async () => {
    const { app, run } = await appWith({
      '/bad': (ctx) => {
        try {
          ctx.session.adjustTimeout(1.5);
          return 'ok';
        } catch (err) {
          return (err as Error).message;
        }
      },
    });
    assert.match((await run('/bad')).res.text, /adjustTimeout\(seconds\): seconds must be a whole number/);
    await app.close();
  });
});

describe('adjustCookieMaxAge() and recookie()', () => {
  it('adjustCookieMaxAge(ms) re-sends the same cookie with that lifetime, and no write', async () => {
    const { app, run } = await appWith({
      '/put': (ctx) => {
        ctx.session.user = 'ada';
      },
      '/remember': (ctx) => {
        ctx.session.adjustCookieMaxAge(30 * 86_400_000);
      },
      '/forget': (ctx) => {
        ctx.session.adjustCookieMaxAge(null);
      },
    }, { cookie: { maxAge: 60_000 } });
    const { cookie, id } = expectCookieSet((await run('/put')).res);
    const remember = await run('/remember', cookie);
    assert.deepEqual(remember.wire, ['load']);
    assert.equal(expectCookieSet(remember.res).id, id);
    const expires = Date.parse(String(setCookies(remember.res)[0]?.attributes.expires));
    assert.ok(Math.abs(expires - (Date.now() + 30 * 86_400_000)) < 10_000);
    const forget = await run('/forget', cookie);
    assert.equal(setCookies(forget.res)[0]?.attributes.expires, undefined, 'a browser-session cookie');
    await app.close();
  });

  it('refuses a bad value', async () => {
    const { app, run } = await appWith({
      '/bad': (ctx) => {
        try {
          ctx.session.adjustCookieMaxAge(-1);
          return 'ok';
        } catch (err) {
          return (err as Error).message;
        }
      },
    });
    assert.match((await run('/bad')).res.text, /adjustCookieMaxAge\(ms\): ms must be a number of milliseconds above 0/);
    await app.close();
  });

  it('recookie() on a new empty session sets nothing', async () => {
    const { app, run } = await appWith({ '/': (ctx) => ctx.session.recookie() });
    const { res, wire } = await run('/');
    expectNoCookie(res);
    assert.deepEqual(wire, []);
    await app.close();
  });
});

describe('maxSize', () => {
  /** What maxSize counts, from what Redis holds: every field but the metadata (c, t, x, v), name and
   *  value, in bytes. */
  async function storedBytes(key: string): Promise<number> {
    const hash = await f.redis.hgetall(key);
    return Object.entries(hash)
      .filter(([field]) => !['c', 't', 'x', 'v'].includes(field))
      .reduce((n, [field, value]) => n + Buffer.byteLength(field) + Buffer.byteLength(value), 0);
  }

  /** The error the request failed with, caught in front of the session middleware. */
  function catchError(into: { error?: unknown }): Middleware {
    return async (_ctx, next) => {
      try {
        await next();
      } catch (err) {
        into.error = err;
        throw err;
      }
    };
  }

  it('refuses a session over the limit: 500, nothing written, no cookie', async () => {
    const caught: { error?: unknown } = {};
    const { app, run } = await appWith({ '/': (ctx) => void (ctx.session.blob = 'x'.repeat(2000)) }, { maxSize: 1000 }, catchError(caught));
    const { res, wire } = await run('/');
    assert.equal(res.status, 500);
    assert.deepEqual(wire, []);
    expectNoCookie(res);
    assert.equal(await f.redis.dbsize(), 0);
    assert.ok(caught.error instanceof SessionSizeError, `a SessionSizeError, got ${String(caught.error)}`);
    // ':blob' 5 bytes + '"x…"' 2002
    assert.equal(caught.error.message, 'session data is 2007 bytes, over the maxSize option (1000 bytes); nothing was written');
    assert.deepEqual([caught.error.size, caught.error.maxSize], [2007, 1000]);
    await app.close();
  });

  // The limit to the byte, in bytes not characters (é is two), counting flash messages too: a new
  // session of exactly maxSize bytes is created, one byte more is refused; then the same for a write
  // to an existing session, whose stored fields count as they are.
  it('a new session of exactly maxSize bytes is stored; one byte more is refused', async () => {
    const fill = (ctx: Context, message: string) => {
      ctx.session.b = 'é'.repeat(494);
      ctx.session.flash(message);
    };
    const { app, run } = await appWith({ '/at': (ctx) => fill(ctx, 'mm'), '/over': (ctx) => fill(ctx, 'mmm') }, { maxSize: 1000 });
    // ':b' 2 + '"é…"' 2 × 494 + 2, then 'f:' 2 + '["mm"]' 6: 1000 bytes (counted in characters: 506)
    const at = await run('/at');
    assert.equal(at.res.status, 200);
    assert.deepEqual(at.wire, ['create']);
    assert.equal(await storedBytes(`sess:${expectCookieSet(at.res).id}`), 1000);
    const over = await run('/over');
    assert.equal(over.res.status, 500);
    assert.deepEqual(over.wire, []);
    assert.equal(await f.redis.dbsize(), 1);
    await app.close();
  });

  it('a write that brings a session to exactly maxSize bytes is stored; one byte more is refused', async () => {
    const caught: { error?: unknown } = {};
    const { app, run } = await appWith({
      '/put': (ctx) => void (ctx.session.blob = 'x'.repeat(900)),
      '/at': (ctx) => void (ctx.session.more = 'y'.repeat(86)),
      '/over': (ctx) => void (ctx.session.more = 'y'.repeat(87)),
    }, { maxSize: 1000 }, catchError(caught));
    const { cookie, id } = expectCookieSet((await run('/put')).res);
    // stored: ':blob' 5 + '"x…"' 902 = 907; then ':more' 5 + '"y…"' 88 = 93 more: 1000 bytes
    const key = `sess:${id}`;
    assert.equal(await storedBytes(key), 907);
    const over = await run('/over', cookie);
    assert.equal(over.res.status, 500);
    assert.deepEqual(over.wire, ['load']);
    assert.match(String((caught.error as Error | undefined)?.message), /^session data is 1001 bytes, over the maxSize option \(1000 bytes\)/);
    assert.equal(await storedBytes(key), 907, 'nothing written');
    const at = await run('/at', cookie);
    assert.equal(at.res.status, 200);
    assert.deepEqual(at.wire, ['load', 'patch']);
    assert.equal(await storedBytes(key), 1000);
    await app.close();
  });

  it('counts what is already stored: a small change to a big session is refused', async () => {
    const { app, run } = await appWith({
      '/put': (ctx) => void (ctx.session.blob = 'x'.repeat(900)),
      '/add': (ctx) => void (ctx.session.more = 'y'.repeat(200)),
    }, { maxSize: 1000 });
    const { cookie, id } = expectCookieSet((await run('/put')).res);
    const add = await run('/add', cookie);
    assert.equal(add.res.status, 500);
    assert.deepEqual(add.wire, ['load']);
    assert.deepEqual(Object.keys(await storedData(f.redis, `sess:${id}`)), ['blob']);
    await app.close();
  });

  it('counts a nested value that grew without a top-level assignment', async () => {
    const { app, run } = await appWith({
      '/put': (ctx) => void (ctx.session.cart = { items: [] as string[] }),
      '/grow': (ctx) => void (ctx.session.cart as { items: string[] }).items.push('x'.repeat(2000)),
    }, { maxSize: 1000 });
    const { cookie, id } = expectCookieSet((await run('/put')).res);
    const grow = await run('/grow', cookie);
    assert.equal(grow.res.status, 500);
    assert.deepEqual(grow.wire, ['load']);
    assert.deepEqual(await storedData(f.redis, `sess:${id}`), { cart: { items: [] } });
    await app.close();
  });

  it('accepts a session at the limit', async () => {
    const { app, run } = await appWith({ '/': (ctx) => void (ctx.session.b = 'x'.repeat(100)) }, { maxSize: 104 });
    const { res } = await run('/');
    assert.equal(res.status, 200);
    expectCookieSet(res);
    await app.close();
  });

  it('must be a whole number of bytes', async () => {
    const { koaRedisSession } = await import('../src/index.js');
    assert.throws(() => koaRedisSession({ maxSize: 0 }), /option "maxSize" must be a whole number of bytes above 0/);
  });
});
