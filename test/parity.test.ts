/**
 * Pyramid ISession parity (https://github.com/jvanasco/pyramid_session_redis): flash queues, CSRF tokens and
 * csrfProtect(), adjustTimeout(), adjustCookieMaxAge(), recookie(), and maxSize — each with the
 * Redis commands it costs.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Context, Middleware } from 'koa';
import { SessionSizeError, csrfProtect, type SessionOptions } from '../src/index.js';
import {
  catchError,
  expectCookieCleared,
  expectCookieSet,
  expectNoCookie,
  makeApp,
  setCookies,
} from './helpers/app.js';
import { closeable } from './helpers/cleanup.js';
import { assertBetween, assertTtl, storedData, useRedis } from './helpers/fixture.js';
import { packedSize, stored, storedSize } from './helpers/stored.js';
import { entrySize } from '../src/store/layout.js';

const f = useRedis();

/** An app whose handler picks its behaviour by path; returns helpers that capture the wire. */
async function appWith(
  routes: Record<string, (ctx: Context) => unknown>,
  options: Omit<SessionOptions, 'redis'> = {},
  before?: Middleware,
) {
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
    assert.deepEqual(
      shown.wire,
      ['load', 'patch'],
      'popping the only content empties the session: the patch deletes it',
    );
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
      '/peek': (ctx) =>
        JSON.stringify({
          errors: ctx.session.peekFlash('errors'),
          info: ctx.session.peekFlash('info'),
          none: ctx.session.peekFlash(),
          keys: Object.keys(ctx.session),
        }),
    });
    const { cookie, id } = expectCookieSet((await run('/put')).res);
    const peek = await run('/peek', cookie);
    assert.deepEqual(JSON.parse(peek.res.text), { errors: ['e1', 'e2'], info: ['i1'], none: [], keys: ['user'] });
    assert.deepEqual(peek.wire, ['load'], 'peeking writes nothing');
    const hash = await stored(f.redis, `sess:${id}`);
    // Each message encoded on its own and framed (<message id>:<length>:<text>), so flashes append
    // in Redis and a pop takes exactly the messages it loaded.
    assert.match(hash['f:errors'] ?? '', /^[\w-]+:4:"e1"[\w-]+:4:"e2"$/);
    assert.match(hash['f:info'] ?? '', /^[\w-]+:4:"i1"$/);
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
    const hash = await stored(f.redis, `sess:${id}`);
    assert.equal(hash['f:one'], undefined);
    assert.match(hash['f:two'] ?? '', /^[\w-]+:3:"b"$/);
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
    assert.match(res.text, /ctx\.session\.flash\(…, "q"\) cannot be stored in the session: a function/);
    assert.deepEqual(wire, []);
    await app.close();
  });
});

describe('CSRF tokens', () => {
  it('getCsrfToken() makes a token bound to the id, stable across requests, with an empty salt stored outside the data', async () => {
    const { app, run } = await appWith({
      '/token': (ctx) => JSON.stringify({ token: ctx.session.getCsrfToken(), keys: Object.keys(ctx.session) }),
    });
    const first = await run('/token');
    const { token, keys } = JSON.parse(first.res.text);
    assert.match(token, /^[A-Za-z0-9_-]{27}$/);
    assert.deepEqual(keys, []);
    assert.deepEqual(first.wire, ['create']);
    const { cookie, id } = expectCookieSet(first.res);
    const second = await run('/token', cookie);
    assert.equal(JSON.parse(second.res.text).token, token);
    assert.deepEqual(second.wire, ['load'], 'reading the token again writes nothing');
    assert.equal(
      (await stored(f.redis, `sess:${id}`)).k,
      '""',
      'the session is stored with an empty salt; the token is derived',
    );
    assert.notEqual(token, id);
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
    assert.match(renewed.res.text, /^[A-Za-z0-9_-]{27}$/);
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
        ctx.body =
          ctx.path === '/form'
            ? ctx.session.getCsrfToken()
            : ctx.path === '/renew'
              ? ctx.session.newCsrfToken()
              : 'done';
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

    it("answers 403 to a missing, wrong or other session's token", async () => {
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

    it('after newCsrfToken(), the new token passes and the one it replaced is refused', async () => {
      const { agent, cookie, token, close } = await guarded();
      const renewed = await agent.get('/renew').set('Cookie', cookie);
      assert.equal(renewed.status, 200);
      assert.notEqual(renewed.text, token);
      assert.equal(
        (await agent.post('/x').set('Cookie', cookie).set('X-CSRF-Token', renewed.text)).status,
        200,
        'the new token',
      );
      assert.equal(
        (await agent.post('/x').set('Cookie', cookie).set('X-CSRF-Token', token)).status,
        403,
        'the replaced token',
      );
      await close();
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
    const { app, run } = await appWith(
      {
        '/put': (ctx) => {
          ctx.session.user = 'ada';
        },
        '/long': (ctx) => {
          ctx.session.adjustTimeout(86_400);
          return String(ctx.session.timeout);
        },
      },
      { timeoutTrigger: 60 },
    );
    const { cookie, id } = expectCookieSet((await run('/put')).res);
    const key = `sess:${id}`;
    const before = Math.floor(Date.now() / 1000);
    const long = await run('/long', cookie);
    const after = Math.floor(Date.now() / 1000);
    assert.equal(long.res.text, '86400');
    assert.deepEqual(long.wire, ['load', 'patch']);
    const hash = await stored(f.redis, key);
    assert.equal(hash.t, '86400');
    // A day from the second of the write, between these two readings of the clock.
    assertBetween(Number(hash.x), before + 86_400, after + 86_400, 'the payload expiry moved');
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
    const hash = await stored(f.redis, `sess:${id}`);
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
    assert.equal((await stored(f.redis, `sess:${id}`)).t, '30');
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
  it('adjustCookieMaxAge(ms) re-sends the same cookie with that lifetime, stored with the session (one patch)', async () => {
    const { app, run } = await appWith(
      {
        '/put': (ctx) => {
          ctx.session.user = 'ada';
        },
        '/remember': (ctx) => {
          ctx.session.adjustCookieMaxAge(30 * 86_400_000);
        },
        '/forget': (ctx) => {
          ctx.session.adjustCookieMaxAge(null);
        },
        '/recookie': (ctx) => {
          ctx.session.recookie();
        },
      },
      { cookie: { maxAge: 60_000 } },
    );
    const { cookie, id } = expectCookieSet((await run('/put')).res);
    const before = Date.now();
    const remember = await run('/remember', cookie);
    const after = Date.now();
    // Stored, so that every later cookie of the session carries it (README, "Cookie lifetimes").
    assert.deepEqual(remember.wire, ['load', 'patch']);
    assert.equal(expectCookieSet(remember.res).id, id);
    const expires = Date.parse(String(setCookies(remember.res)[0]?.attributes.expires));
    // 30 days from the response, made between these two readings of the clock (Expires is in whole
    // seconds: up to one less).
    assertBetween(expires, before + 30 * 86_400_000 - 1000, after + 30 * 86_400_000, 'Expires');
    const forget = await run('/forget', cookie);
    assert.equal(setCookies(forget.res)[0]?.attributes.expires, undefined, 'a browser-session cookie');
    assert.deepEqual(forget.wire, ['load', 'patch']);
    assert.equal(
      setCookies((await run('/recookie', cookie)).res)[0]?.attributes.expires,
      undefined,
      'still one, on a later cookie',
    );
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
    assert.match(
      (await run('/bad')).res.text,
      /adjustCookieMaxAge\(ms\): ms must be a number of milliseconds from 1 to 2\^31 seconds/,
    );
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
  /** What maxSize counts, from what Redis holds: every field of the packed map, name and value with
   *  their MessagePack headers (entrySize), but the value's header (v c t x) and the remembered
   *  operations (o). */
  async function storedBytes(key: string): Promise<number> {
    const bytes = await storedSize(f.redis, key);
    assert.equal(
      await packedSize(f.redis, key),
      bytes,
      'the size counted field by field is what the packed map holds (what the scripts measure)',
    );
    return bytes;
  }

  it('refuses a session over the limit: 500, nothing written, no cookie', async () => {
    const caught: { error?: unknown } = {};
    const { app, run } = await appWith(
      { '/': (ctx) => void (ctx.session.blob = 'x'.repeat(2000)) },
      { maxSize: 1000 },
      catchError(caught),
    );
    const { res, wire } = await run('/');
    assert.equal(res.status, 500);
    assert.deepEqual(wire, []);
    expectNoCookie(res);
    assert.equal(await f.redis.dbsize(), 0);
    assert.ok(caught.error instanceof SessionSizeError, `a SessionSizeError, got ${String(caught.error)}`);
    // ':blob' and '"x…"' (2002 bytes), each with its MessagePack header; the value's header (c, t, x)
    // is not counted.
    const size = entrySize(':blob', JSON.stringify('x'.repeat(2000)));
    assert.equal(size, 1 + 5 + 3 + 2002);
    assert.equal(
      caught.error.message,
      `session data is ${size} bytes, over the maxSize option (1000 bytes); nothing was written`,
    );
    assert.deepEqual([caught.error.size, caught.error.maxSize], [size, 1000]);
    await app.close();
  });

  // The limit to the byte, in bytes not characters (é is two), counting flash messages:
  // a session is measured as stored under a large limit, then made again under exactly that limit
  // (stored) and one byte less (refused).
  it('a new session of exactly maxSize bytes is stored; one byte more is refused', async () => {
    const fill = (ctx: Context) => {
      ctx.session.b = 'é'.repeat(494);
      ctx.session.flash('mm');
    };
    const measure = await appWith({ '/': fill }, { maxSize: 100_000 });
    const first = await measure.run('/');
    const bytes = await storedBytes(`sess:${expectCookieSet(first.res).id}`);
    assert.ok(bytes > 2 * 494, `counted in bytes (${bytes})`);
    await measure.app.close();
    await f.redis.flushall();
    const exact = await appWith({ '/': fill }, { maxSize: bytes });
    const at = await exact.run('/');
    assert.equal(at.res.status, 200);
    assert.deepEqual(at.wire, ['create']);
    assert.equal(await storedBytes(`sess:${expectCookieSet(at.res).id}`), bytes);
    await exact.app.close();
    const under = await appWith({ '/': fill }, { maxSize: bytes - 1 });
    const over = await under.run('/');
    assert.equal(over.res.status, 500);
    assert.deepEqual(over.wire, []);
    assert.equal(await f.redis.dbsize(), 1);
    await under.app.close();
  });

  it('a write that brings a session to exactly maxSize bytes is stored; one byte more is refused', async () => {
    const caught: { error?: unknown } = {};
    const measure = await appWith({ '/put': (ctx) => void (ctx.session.blob = 'x'.repeat(900)) }, { maxSize: 100_000 });
    const { cookie, id } = expectCookieSet((await measure.run('/put')).res);
    await measure.app.close();
    const key = `sess:${id}`;
    const before = await storedBytes(key);
    const limit = before + entrySize(':more', JSON.stringify('y'.repeat(86))); // ':more' and '"y…"' of 86 y: exactly the limit
    const { app, run } = await appWith(
      {
        '/at': (ctx) => void (ctx.session.more = 'y'.repeat(86)),
        '/over': (ctx) => void (ctx.session.more = 'y'.repeat(87)),
      },
      { maxSize: limit },
      catchError(caught),
    );
    const over = await run('/over', cookie);
    assert.equal(over.res.status, 500);
    // The patch's script checks the stored total and refuses the growth: nothing applied.
    assert.deepEqual(over.wire, ['load', 'patch']);
    assert.equal(
      String((caught.error as Error | undefined)?.message),
      `session data would pass the maxSize option (${limit} bytes) with this request's changes added to what is stored; nothing was written`,
    );
    assert.equal(await storedBytes(key), before, 'nothing written');
    const at = await run('/at', cookie);
    assert.equal(at.res.status, 200);
    assert.deepEqual(at.wire, ['load', 'patch']);
    assert.equal(await storedBytes(key), limit);
    await app.close();
  });

  it('counts what is already stored: a small change to a big session is refused', async () => {
    const { app, run } = await appWith(
      {
        '/put': (ctx) => void (ctx.session.blob = 'x'.repeat(900)),
        '/add': (ctx) => void (ctx.session.more = 'y'.repeat(200)),
      },
      { maxSize: 1000 },
    );
    const { cookie, id } = expectCookieSet((await run('/put')).res);
    const add = await run('/add', cookie);
    assert.equal(add.res.status, 500);
    assert.match(add.res.text, /Internal Server Error/);
    // The patch's script measures the stored map and refuses the growth: nothing applied.
    assert.deepEqual(add.wire, ['load', 'patch']);
    const blob = entrySize(':blob', JSON.stringify('x'.repeat(900)));
    const bytes = await storedSize(f.redis, `sess:${id}`);
    assert.equal(bytes, blob, 'what is stored: the blob alone');
    assert.equal(
      await packedSize(f.redis, `sess:${id}`),
      bytes,
      'the size counted field by field is what the packed map holds',
    );
    assert.ok(
      bytes <= 1000 && bytes + entrySize(':more', JSON.stringify('y'.repeat(200))) > 1000,
      'the stored total with the change added is over the limit',
    );
    assert.deepEqual(Object.keys(await storedData(f.redis, `sess:${id}`)), ['blob']);
    await app.close();
  });

  it('counts a nested value that grew without a top-level assignment', async () => {
    const { app, run } = await appWith(
      {
        '/put': (ctx) => void (ctx.session.cart = { items: [] as string[] }),
        '/grow': (ctx) => void (ctx.session.cart as { items: string[] }).items.push('x'.repeat(2000)),
      },
      { maxSize: 1000 },
    );
    const { cookie, id } = expectCookieSet((await run('/put')).res);
    const grow = await run('/grow', cookie);
    assert.equal(grow.res.status, 500);
    assert.deepEqual(grow.wire, ['load', 'patch']);
    assert.deepEqual(await storedData(f.redis, `sess:${id}`), { cart: { items: [] } });
    await app.close();
  });

  it('a session over the limit (maxSize lowered since) can still shrink, move and end, while still over it', async () => {
    // Three fields of 608 bytes (':a' and '"x…"' of 602, each with its MessagePack header): 1824
    // stored, 1216 once one is deleted, both over the limit of 1000.
    const big = await appWith(
      {
        '/put': (ctx) =>
          void Object.assign(ctx.session, { a: 'x'.repeat(600), b: 'y'.repeat(600), c: 'w'.repeat(600) }),
      },
      { maxSize: 5000 },
    );
    const { cookie } = expectCookieSet((await big.run('/put')).res);
    await big.app.close();
    const { app, run } = await appWith(
      {
        '/grow': (ctx) => void (ctx.session.d = 'z'),
        '/shrink': (ctx) => void delete ctx.session.a,
        '/login': (ctx) => ctx.session.regenerate(),
        '/logout': (ctx) => void ((ctx as { session: unknown }).session = null),
      },
      { maxSize: 1000 },
    );
    assert.equal((await run('/grow', cookie)).res.status, 500, 'growth over the limit is refused');
    const shrink = await run('/shrink', cookie);
    assert.equal(shrink.res.status, 200, 'a shrink that leaves the session still over the limit is accepted');
    const login = await run('/login', cookie);
    assert.equal(login.res.status, 200, 'a move that does not grow the session is accepted');
    const moved = expectCookieSet(login.res);
    assert.deepEqual(Object.keys(await storedData(f.redis, `sess:${moved.id}`)).sort(), ['b', 'c']);
    const left = await storedSize(f.redis, `sess:${moved.id}`);
    assert.equal(left, 2 * entrySize(':b', JSON.stringify('y'.repeat(600))));
    assert.ok(left > 1000, `still over the limit (${left} bytes)`);
    const logout = await run('/logout', moved.cookie);
    assert.equal(logout.res.status, 200);
    expectCookieCleared(logout.res);
    assert.equal(await f.redis.exists(`sess:${moved.id}`), 0);
    await app.close();
  });

  it('refuses invalidate() then data one byte over the limit: nothing written, the old session kept', async () => {
    const size = entrySize(':b', JSON.stringify('x'.repeat(100))); // ':b' and '"x…x"' of 100; the header (c, t, x) uncounted
    const { app, run } = await appWith(
      {
        '/put': (ctx) => void (ctx.session.user = 'ada'),
        '/relogin': (ctx) => {
          ctx.session.invalidate();
          ctx.session.b = 'x'.repeat(Number(ctx.query.n));
        },
      },
      { maxSize: size },
    );
    const { cookie, id } = expectCookieSet((await run('/put')).res);
    const over = await run('/relogin?n=101', cookie);
    assert.equal(over.res.status, 500);
    assert.deepEqual(over.wire, ['load'], 'no replace is sent');
    expectNoCookie(over.res);
    assert.deepEqual(await storedData(f.redis, `sess:${id}`), { user: 'ada' });
    const at = await run('/relogin?n=100', cookie);
    assert.equal(at.res.status, 200, 'at the limit it is stored');
    assert.deepEqual(at.wire, ['load', 'replace']);
    expectCookieSet(at.res);
    await app.close();
  });

  it('accepts a session at the limit, the MessagePack headers of its fields counted, and refuses one byte more', async () => {
    // ':b' and '"x…x"' (104 bytes) with their MessagePack headers; the value's header (c, t, x) is
    // not counted.
    const size = entrySize(':b', JSON.stringify('x'.repeat(100)));
    const at = await appWith({ '/': (ctx) => void (ctx.session.b = 'x'.repeat(100)) }, { maxSize: size });
    const { res } = await at.run('/');
    assert.equal(res.status, 200);
    const { id } = expectCookieSet(res);
    assert.equal(await storedBytes(`sess:${id}`), size);
    await at.app.close();
    const over = await appWith({ '/': (ctx) => void (ctx.session.b = 'x'.repeat(100)) }, { maxSize: size - 1 });
    assert.equal((await over.run('/')).res.status, 500);
    await over.app.close();
  });

  it('must be a whole number of bytes', async () => {
    const { koaRedisSession } = await import('../src/index.js');
    assert.throws(() => koaRedisSession({ maxSize: 0 }), /option "maxSize" must be a whole number of bytes above 0/);
  });
});
