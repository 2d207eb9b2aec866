/**
 * The edges of a request: responses that cannot carry a cookie (headers already sent, `ctx.respond =
 * false`, a thrown non-Error, an error replaced upstream), a Redis out of memory, and hostile or
 * extreme input. Never a hang, never an orphan key, never a value accepted that cannot come back as
 * it went in (README "When Redis fails", docs/design.md "Faults").
 */
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import type Koa from 'koa';
import { Redis } from 'ioredis';
import { koaRedisSession, type InvalidSessionError, type SessionOptions } from '../src/index.js';
import { KEYS, expectCookieSet, makeApp } from './helpers/app.js';
import { signedCookie, storedData, useRedis } from './helpers/fixture.js';
import { startRedis, type RedisServer } from './helpers/redis-server.js';
import { seed, update } from './helpers/stored.js';
import { cookieOf, serveSession, type LiveApp } from './helpers/server.js';

const f = useRedis();

/** A GET that fails the test instead of hanging it (the deadline is generous: the machine is shared). */
async function get(
  app: LiveApp,
  path: string,
  cookie?: string,
): Promise<{ status: number; text: string; setCookie: string | null }> {
  // No keep-alive: closing the server never waits on an idle connection.
  const headers: Record<string, string> = { connection: 'close', ...(cookie ? { cookie } : {}) };
  const res = await fetch(app.base + path, { headers, signal: AbortSignal.timeout(60_000) });
  return { status: res.status, text: await res.text(), setCookie: res.headers.get('set-cookie') };
}

async function serve(
  options: Partial<SessionOptions>,
  handler: (ctx: Koa.Context) => unknown,
  upstream?: Koa.Middleware,
): Promise<{ app: LiveApp; reports: InvalidSessionError[] }> {
  const reports: InvalidSessionError[] = [];
  const app = await serveSession(
    { redis: f.server.url, onInvalid: (_ctx, err) => void reports.push(err), ...options },
    async (ctx) => {
      const body = await handler(ctx);
      if (body !== undefined) ctx.body = body;
    },
    upstream,
  );
  return { app, reports };
}

/** A body that streams after the headers went out. */
function streamed(ctx: Koa.Context): void {
  ctx.status = 200;
  ctx.type = 'text/event-stream';
  ctx.res.flushHeaders();
  const body = new PassThrough();
  ctx.body = body;
  setTimeout(() => body.end('data: done\n\n'), 20);
}

async function sessionKeys(): Promise<string[]> {
  return (await f.redis.keys('sess:*')).sort();
}

describe('headers already sent: no cookie action, nothing that needs one written, no hang', () => {
  it('streamed route with a badly signed, an older-key or a dangling cookie answers in full and sets nothing', async () => {
    const { app } = await serve({}, (ctx) => (ctx.path === '/login' ? void (ctx.session.user = 'ada') : streamed(ctx)));
    try {
      const { id } = expectCookieSetFromHeader((await get(app, '/login')).setCookie);
      const cookies = [
        signedCookie(id, ['wrong-key']), // badly signed: would be cleared
        signedCookie(id, [KEYS[1] as string]), // older key: would be re-signed
        signedCookie(), // a session Redis does not have: would be cleared
      ];
      for (const cookie of cookies) {
        const res = await get(app, '/events', cookie);
        assert.equal(res.status, 200);
        assert.equal(res.text, 'data: done\n\n');
        assert.equal(res.setCookie, null);
      }
    } finally {
      await app.close();
    }
  });

  it('a new session written on a streamed route is not stored, and onInvalid says why', async () => {
    const { app, reports } = await serve({}, (ctx) => {
      ctx.session.user = 'ada';
      streamed(ctx);
    });
    try {
      const res = await get(app, '/events');
      assert.equal(res.status, 200);
      assert.equal(res.setCookie, null);
      assert.deepEqual(await sessionKeys(), []);
      assert.match(reports.map((r) => r.message).join(), /headers were already sent/);
    } finally {
      await app.close();
    }
  });

  it('ctx.respond = false: nothing that needs a cookie is written; an existing session is still patched', async () => {
    // The handler ends the response itself, so the client can see it before the session
    // middleware has written: wait for the middleware to settle, not for the response.
    let settled = Promise.resolve();
    const { app, reports } = await serve(
      {},
      (ctx) => {
        if (ctx.path === '/login') return void (ctx.session.user = 'ada');
        ctx.session.seen = true;
        ctx.respond = false;
        ctx.res.writeHead(200, { 'content-type': 'text/plain' });
        ctx.res.end('raw');
        return undefined;
      },
      (_ctx, next) => {
        const done = next();
        settled = done.catch(() => undefined);
        return done;
      },
    );
    try {
      const fresh = await get(app, '/raw');
      assert.equal(fresh.text, 'raw');
      assert.equal(fresh.setCookie, null);
      await settled;
      assert.deepEqual(await sessionKeys(), [], 'no session without its cookie');
      assert.match(reports.map((r) => r.message).join(), /ctx\.respond is false/);
      const login = await get(app, '/login');
      const { cookie, id } = expectCookieSetFromHeader(login.setCookie);
      assert.equal((await get(app, '/raw', cookie)).text, 'raw');
      await settled;
      assert.deepEqual(await storedData(f.redis, `sess:${id}`), { user: 'ada', seen: true });
    } finally {
      await app.close();
    }
  });
});

describe('a cookie an error response cannot carry', () => {
  for (const [name, thrown] of [
    ['a string', 'boom'],
    ['a number', 42], // (a thrown undefined or null Koa itself never answers: its onerror ignores them)
    ['a frozen object', Object.freeze({ status: 418, message: 'frozen' })],
  ] as const) {
    it(`the handler throws ${name}: a new session is not stored; a regenerate writes nothing`, async () => {
      const { app, reports } = await serve({}, (ctx) => {
        if (ctx.path === '/login') return void (ctx.session.user = 'anon');
        if (ctx.path === '/me') return JSON.stringify({ ...ctx.session });
        if (ctx.path === '/elevate') ctx.session.regenerate();
        ctx.session.user = 'ada';
        throw thrown;
      });
      try {
        const fresh = await get(app, '/new');
        assert.ok(fresh.status >= 400);
        assert.equal(fresh.setCookie, null);
        assert.deepEqual(await sessionKeys(), []);
        const { cookie, id } = expectCookieSetFromHeader((await get(app, '/login')).setCookie);
        const elevate = await get(app, '/elevate', cookie);
        assert.ok(elevate.status >= 400);
        assert.equal(elevate.setCookie, null);
        assert.deepEqual(await sessionKeys(), [`sess:${id}`], 'no key under a new id');
        assert.deepEqual(
          JSON.parse((await get(app, '/me', cookie)).text),
          { user: 'anon' },
          'still logged in as before, nothing written under the old id',
        );
        assert.ok(
          reports.some((r) => /cannot carry headers/.test(r.message)),
          reports.map((r) => r.message).join('; '),
        );
      } finally {
        await app.close();
      }
    });
  }

  it('an upstream middleware replaces the error: the new session whose cookie did not go out is ended', async () => {
    const wrap: Koa.Middleware = async (_ctx, next) => {
      try {
        await next();
      } catch (err) {
        throw new Error('wrapped', { cause: err }); // a new error, without the cookie headers
      }
    };
    const { app, reports } = await serve(
      {},
      (ctx) => {
        ctx.session.user = 'ada';
        throw new Error('boom');
      },
      wrap,
    );
    try {
      const res = await get(app, '/');
      assert.equal(res.status, 500);
      assert.equal(res.setCookie, null);
      // Ended once the response went out, then reported: wait for both, from the test's own clock,
      // as long as a loaded machine may take.
      const deadline = Date.now() + 30_000;
      while ((await sessionKeys()).length > 0 || !reports.some((r) => /did not reach the browser/.test(r.message))) {
        assert.ok(
          Date.now() < deadline,
          `the session whose cookie never left is ended and reported (keys: ${(await sessionKeys()).join()})`,
        );
        await new Promise((r) => setTimeout(r, 20));
      }
    } finally {
      await app.close();
    }
  });
});

describe('Redis at maxmemory with noeviction', () => {
  let oom: RedisServer;
  let admin: Redis;
  before(async () => {
    oom = await startRedis(['--maxmemory-policy', 'noeviction']);
    admin = new Redis(oom.port, '127.0.0.1');
  });
  after(async () => {
    admin.disconnect();
    await oom.stop();
  });

  it('a read still returns the session (refresh skipped and reported), a logout still deletes, a write fails', async () => {
    const reports: InvalidSessionError[] = [];
    const app = makeApp(3, { redis: oom.url, onInvalid: (_c, e) => void reports.push(e) }, (ctx) => {
      if (ctx.path === '/login') ctx.session.user = 'ada';
      else if (ctx.path === '/write') ctx.session.cart = ['x'];
      else if (ctx.path === '/logout') (ctx as { session: unknown }).session = null;
      else return JSON.stringify({ ...ctx.session });
      return undefined;
    });
    try {
      const { cookie, id } = expectCookieSet(await app.get('/login'));
      // The refresh is due (the expiry is not now + timeout), and memory is full. Ten minutes left,
      // not seconds: a loaded machine must not let the session expire before the read.
      await update(admin, `sess:${id}`, { x: Math.floor(Date.now() / 1000) + 600 });
      // Past the limit for sure: data first, then a limit below what is used.
      for (let i = 0; i < 8; i++) await admin.set(`filler:${i}`, 'x'.repeat(256 * 1024));
      await admin.config('SET', 'maxmemory', String(1024 * 1024));
      assert.match(String(await admin.set('more', 'y').catch((e: Error) => e.message)), /OOM/);
      const read = await app.get('/me', cookie);
      assert.equal(read.status, 200);
      assert.deepEqual(JSON.parse(read.text), { user: 'ada' });
      assert.ok(
        reports.some((r) => r.name === 'SessionStoreError' && /refused the expiry refresh/.test(r.message)),
        JSON.stringify(reports.map((r) => r.message)),
      );
      assert.equal((await app.get('/write', cookie)).status, 503, 'a write fails as before');
      const logout = await app.get('/logout', cookie);
      assert.equal(logout.status, 200);
      assert.equal(await admin.exists(`sess:${id}`), 0, 'the logout deleted the session');
    } finally {
      await app.close();
    }
  });
});

describe('hostile and extreme input', () => {
  it('a top-level "constructor" holding a "prototype" is refused at assignment, and dropped at load', async () => {
    const app = makeApp(3, { redis: f.server.url }, (ctx) => {
      try {
        Reflect.set(ctx.session, 'constructor', { prototype: { polluted: true } });
        return 'stored';
      } catch (err) {
        return (err as Error).message;
      }
    });
    try {
      assert.match(
        (await app.get('/')).text,
        /ctx\.session\.constructor cannot be stored in the session: a "constructor" key holding a "prototype" is refused/,
      );
      const cookie = signedCookie();
      const id = cookie.slice(8, cookie.lastIndexOf('.'));
      const now = Math.floor(Date.now() / 1000);
      await seed(f.redis, `sess:${id}`, {
        c: now,
        t: 1200,
        x: now + 1200,
        ':constructor': '{"prototype":{"polluted":true}}',
        ':a': '1',
      });
      const read = makeApp(3, { redis: f.server.url }, (ctx) => JSON.stringify(Object.keys({ ...ctx.session })));
      assert.deepEqual(JSON.parse((await read.get('/', cookie)).text), ['a']);
      await read.close();
    } finally {
      await app.close();
    }
  });

  it('keys and flash queue names that are not well-formed UTF-16 are refused with a TypeError naming them', async () => {
    const app = makeApp(3, { redis: f.server.url }, (ctx) => {
      const errors: string[] = [];
      for (const attempt of [
        () => (ctx.session['\ud800'] = 1),
        () => (ctx.session['\udc00'] = 2),
        () => ctx.session.flash('m', '\ud800'),
      ]) {
        try {
          attempt();
        } catch (err) {
          errors.push((err as Error).message);
        }
      }
      return JSON.stringify(errors);
    });
    try {
      const errors = JSON.parse((await app.get('/')).text) as string[];
      assert.equal(errors.length, 3);
      assert.match(errors[0] ?? '', /ctx\.session key "\\ud800" is not well-formed Unicode/);
      assert.match(errors[1] ?? '', /ctx\.session key "\\udc00" is not well-formed Unicode/);
      assert.match(errors[2] ?? '', /flash\(\) queue "\\ud800" is not well-formed Unicode/);
      assert.deepEqual(await sessionKeys(), []);
    } finally {
      await app.close();
    }
  });

  it('an empty signing key of any type is refused', () => {
    for (const keys of [[''], [Buffer.alloc(0)], ['ok', Buffer.alloc(0)]]) {
      assert.throws(
        () => koaRedisSession({ keys: keys as string[], redis: f.redis }),
        /non-empty array of non-empty strings or Buffers/,
      );
    }
  });

  it('a session of 70 000 keys (maxSize raised) is stored and read back', async () => {
    // commandTimeout raised: a 70 000-key write is seconds of work on a loaded machine, and the bound
    // is not what this test is about.
    const app = makeApp(3, { redis: f.server.url, maxSize: 16 * 1024 * 1024, commandTimeout: 15_000 }, (ctx) => {
      if (ctx.path === '/fill') {
        for (let i = 0; i < 70_000; i++) ctx.session[`k${i}`] = i;
        return 'filled';
      }
      if (ctx.path === '/more') ctx.session.extra = true;
      return String(Object.keys(ctx.session).length);
    });
    try {
      const fill = await app.get('/fill');
      assert.equal(fill.status, 200, fill.text);
      const { cookie } = expectCookieSet(fill);
      assert.equal((await app.get('/count', cookie)).text, '70000');
      assert.equal((await app.get('/more', cookie)).status, 200);
      assert.equal((await app.get('/count', cookie)).text, '70001');
    } finally {
      await app.close();
    }
  });

  it('an object holding "$t": undefined re-encodes to the text it was loaded from: no spurious write', async () => {
    const app = makeApp(3, { redis: f.server.url }, (ctx) => {
      if (ctx.path === '/put') ctx.session.o = { $t: undefined, a: 1 };
      return JSON.stringify(ctx.session.o);
    });
    try {
      const { cookie } = expectCookieSet(await app.get('/put'));
      await app.ready();
      const { res, wire } = await f.monitor.request(() => app.get('/read', cookie));
      assert.equal(res.text, '{"a":1}');
      assert.deepEqual(
        wire.map((c) => c.op),
        ['load'],
      );
    } finally {
      await app.close();
    }
  });
});

function expectCookieSetFromHeader(header: string | null): { cookie: string; id: string } {
  assert.ok(header, 'a Set-Cookie header');
  const cookie = cookieOf({ headers: { get: () => header } } as unknown as Response);
  return { cookie, id: cookie.slice(cookie.indexOf('=') + 1, cookie.lastIndexOf('.')) };
}
