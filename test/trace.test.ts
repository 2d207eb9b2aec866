/**
 * Per-request traces: the `debug` option (a function, or `true` for a stderr line), the
 * `DEBUG=koa-session-machine` environment switch, and the opt-in development `X-Session-Trace`
 * header — never on by default.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { spawnSync } from 'node:child_process';
import { IncomingMessage, ServerResponse } from 'node:http';
import { Socket } from 'node:net';
import createDebug from 'debug';
import Koa from 'koa';
import request from 'supertest';
import { koaRedisSession, type SessionOptions, type SessionTrace } from '../src/index.js';
import { sessionChart } from '../src/chart-page.js';
import { closeable } from './helpers/cleanup.js';
import { expectCookieSet, makeApp } from './helpers/app.js';
import { increment } from './helpers/stored.js';
import { useRedis } from './helpers/fixture.js';

const f = useRedis();

describe('debug', () => {
  it('a function receives each request: states, events, final state, Redis commands, cookie and time', async () => {
    const traces: SessionTrace[] = [];
    const app = makeApp(3, { redis: f.server.url, debug: (t) => traces.push(t) }, (ctx) => {
      if (ctx.path === '/cart') ctx.session.cart = [...((ctx.session.cart as string[] | undefined) ?? []), 'apple'];
    });
    const { cookie, id } = expectCookieSet(await app.get('/cart'));
    await app.get('/cart', cookie);
    await increment(f.redis, `sess:${id}`, 'x', -1); // a second later: the load moves the expiry
    await app.get('/other', cookie);
    await app.close();
    assert.deepEqual(
      traces.map((t) => [t.method, t.path, t.status, t.final, t.redis, t.write, t.cookie]),
      [
        ['GET', '/cart', 200, 'persisted', ['create'], 'stored', 'set'],
        ['GET', '/cart', 200, 'persisted', ['load', 'patch'], 'stored', 'none'],
        ['GET', '/other', 200, 'refreshed', ['load'], 'none', 'none'],
      ],
    );
    // One session, one tag on every request: a keyed hash of the id, never the id.
    const tag = traces[0]?.session;
    assert.match(tag ?? '', /^[\w-]{8}$/);
    assert.ok(!id.includes(tag as string));
    assert.deepEqual(
      traces.map((t) => t.session),
      [tag, tag, tag],
    );
    assert.deepEqual(
      traces[1]?.steps.map((s) => `${s.from} -${s.event}-> ${s.to}`),
      [
        'unloaded -cookie.verified-> loading',
        'loading -load.found-> loaded.clean',
        'loaded.clean -data.written-> loaded.dirty',
        'loaded.dirty -request.ended-> patching',
        'patching -write.stored-> persisted',
      ],
    );
    assert.match(
      traces[1]?.line ?? '',
      new RegExp(
        `^GET /cart 200 \\[${tag}\\] unloaded -cookie\\.verified-> loading -load\\.found-> loaded\\.clean -data\\.written-> loaded\\.dirty -request\\.ended-> patching -write\\.stored-> persisted \\| redis: load, patch -> stored \\| cookie: none \\| \\d+\\.\\d\\d ms$`,
      ),
    );
    assert.ok((traces[0]?.ms ?? -1) >= 0);
  });

  it('true logs one line per request to stderr', async () => {
    const lines: string[] = [];
    const original = console.error;
    console.error = (line: unknown) => void lines.push(String(line));
    try {
      const app = makeApp(3, { redis: f.server.url, debug: true }, () => 'x');
      await app.get('/');
      await app.close();
    } finally {
      console.error = original;
    }
    assert.deepEqual(
      lines.map((l) => l.replace(/\d+\.\d\d ms$/, 'T ms')),
      [
        'koa-session-machine GET / 200 [no session] unloaded -cookie.missing-> new.clean -request.ended-> untouched | redis: none | cookie: none | T ms',
      ],
    );
  });

  /** Lines the `debug` package logs for one request per pattern, `debug.enable(pattern)` standing
   *  in for `DEBUG` (the package reads the variable the same way at start). */
  async function logged(pattern: string, options: SessionOptions = {}): Promise<string[]> {
    const lines: string[] = [];
    const log = createDebug.log;
    const enabled = createDebug.disable();
    createDebug.log = (...args: unknown[]) => void lines.push(args.map(String).join(' '));
    createDebug.enable(pattern);
    try {
      const app = makeApp(3, { redis: f.server.url, ...options }, () => 'x');
      await app.get('/');
      await app.close();
    } finally {
      createDebug.log = log;
      createDebug.enable(enabled);
    }
    // `*` wakes ioredis' own debug lines too: only ours count here.
    return lines.filter((l) => l.includes('koa-session-machine'));
  }

  it('DEBUG is read as the debug package reads it: its patterns, exclusions and logger', async () => {
    for (const on of ['koa-session-machine', '*', 'koa-*', 'express:*,koa-session-machine', 'koa-session-machine*']) {
      const lines = await logged(on);
      assert.equal(lines.length, 1, `DEBUG=${on} traces`);
      assert.match(
        lines[0] ?? '',
        /koa-session-machine.* GET \/ 200 \[no session\] unloaded -cookie\.missing-> /,
        `DEBUG=${on}: the debug logger's line`,
      );
    }
    for (const off of ['', 'express:*', '*,-koa-session-machine', 'koa-*,-koa-session-*', 'koa-session']) {
      assert.deepEqual(await logged(off), [], `DEBUG=${JSON.stringify(off)} does not trace`);
    }
    assert.deepEqual(await logged('*', { debug: false }), [], 'debug: false wins over DEBUG');
  });

  it('DEBUG from the environment, in a process of its own', () => {
    const run = (debug: string) =>
      spawnSync(
        process.execPath,
        [
          '--import',
          'tsx',
          '-e',
          `import('./src/trace.ts').then(async ({ Tracer }) => { process.stdout.write(String(new Tracer({ traceHeader: false }).on)); })`,
        ],
        {
          env: { ...process.env, DEBUG: debug },
          encoding: 'utf8',
        },
      ).stdout;
    assert.equal(run('koa-*'), 'true');
    assert.equal(run('*,-koa-session-machine'), 'false');
  });

  it('is off by default: no trace, no header', async () => {
    const app = makeApp(3, { redis: f.server.url }, () => 'x');
    const res = await app.get('/');
    await app.close();
    assert.equal(res.headers['x-session-trace'], undefined);
  });
});

describe('traceHeader', () => {
  it('sends the trace line in X-Session-Trace when opted in', async () => {
    const app = makeApp(3, { redis: f.server.url, traceHeader: true }, (ctx) => {
      ctx.session.a = 1;
    });
    const res = await app.get('/');
    await app.close();
    assert.match(
      String(res.headers['x-session-trace']),
      /^GET \/ 200 \[[\w-]{8}\] unloaded -cookie\.missing-> new\.clean -data\.written-> new\.dirty -request\.ended-> creating -write\.stored-> persisted \| redis: create -> stored \| cookie: set \| /,
    );
  });

  it('is refused when NODE_ENV is production', () => {
    const env = process.env.NODE_ENV;
    process.env.NODE_ENV = 'production';
    try {
      assert.throws(
        () => koaRedisSession({ traceHeader: true }),
        /option "traceHeader" must be off when NODE_ENV is production/,
      );
    } finally {
      if (env === undefined) delete process.env.NODE_ENV;
      else process.env.NODE_ENV = env;
    }
  });
});

describe('traces at the edges', () => {
  it('an error response carries X-Session-Trace too, with the status Koa answers (an unknown one is 500)', async () => {
    const app = makeApp(3, { redis: f.server.url, traceHeader: true }, (ctx) => {
      if (ctx.path === '/403') ctx.throw(403, 'no');
      const err = Object.assign(new Error('odd'), { status: 499 });
      throw err;
    });
    const forbidden = await app.get('/403');
    assert.equal(forbidden.status, 403);
    assert.match(String(forbidden.headers['x-session-trace']), /^GET \/403 403 \[no session\] /);
    const odd = await app.get('/odd');
    assert.equal(odd.status, 500);
    assert.match(String(odd.headers['x-session-trace']), /^GET \/odd 500 /);
    await app.close();
  });

  it("a listener that throws does not fail the request: its error goes to the app's error event", async () => {
    const koa = new Koa();
    koa.keys = ['k'];
    const errors: unknown[] = [];
    koa.on('error', (err) => errors.push(err));
    const session = koaRedisSession({
      redis: f.server.url,
      debug: () => {
        throw new Error('listener broke');
      },
    });
    closeable(() => session.close());
    koa.use(session);
    koa.use((ctx) => {
      ctx.session.user = 'ada';
      ctx.body = 'ok';
    });
    const res = await request(koa.callback()).get('/');
    assert.equal(res.status, 200);
    expectCookieSet(res);
    assert.equal((errors[0] as Error | undefined)?.message, 'listener broke');
  });
});

describe('sessionChart() and the session', () => {
  it('bypasses only its own URLs: an app route under the same prefix keeps its session', async () => {
    const koa = new Koa();
    koa.keys = ['k'];
    koa.silent = true;
    const session = koaRedisSession({ redis: f.server.url });
    closeable(() => session.close());
    koa.use(session);
    koa.use(sessionChart({ session }));
    koa.use((ctx) => {
      if (ctx.path === '/seed') ctx.session.user = 'ada';
      ctx.body = String(ctx.session.user ?? 'nobody');
    });
    const agent = request(koa.callback());
    const { cookie } = expectCookieSet(await agent.get('/seed'));
    assert.equal((await agent.get('/_session/admin').set('Cookie', cookie)).text, 'ada');
    assert.equal((await agent.get('/_sessionX').set('Cookie', cookie)).text, 'ada');
    await session.redis.ping();
    const wire = await f.monitor.capture(async () => {
      assert.match((await agent.get('/_session').set('Cookie', cookie)).text, /<!doctype html>/);
      assert.match((await agent.get('/_session/').set('Cookie', cookie)).text, /<!doctype html>/);
      assert.equal((await agent.get('/_session/data').set('Cookie', cookie)).status, 200);
    });
    assert.deepEqual(wire, [], 'the page and its data cost no command');
  });

  it("a bypass check that throws rejects the middleware's promise, as an async middleware's would", async () => {
    const session = koaRedisSession({ redis: f.server.url });
    closeable(() => session.close());
    sessionChart({ session });
    // An absolute-form request target Node's url.parse refuses: Koa's ctx.path throws.
    const req = new IncomingMessage(new Socket());
    req.url = 'http://[::1/';
    const ctx = new Koa().createContext(req, new ServerResponse(req));
    assert.throws(() => ctx.path, { code: 'ERR_INVALID_URL' });
    let returned: unknown;
    assert.doesNotThrow(() => {
      returned = session(ctx, async () => undefined);
    });
    assert.ok(returned instanceof Promise, 'a promise');
    await assert.rejects(returned as Promise<void>, { code: 'ERR_INVALID_URL' });
    // A bypassed request's own `next`, called directly: its throw is a rejection too.
    const chart = new Koa().createContext(
      Object.assign(new IncomingMessage(new Socket()), { url: '/_session' }),
      new ServerResponse(req),
    );
    const broken = () => {
      throw new Error('next threw');
    };
    let bypassed: unknown;
    assert.doesNotThrow(() => {
      bypassed = session(chart, broken as never);
    });
    await assert.rejects(bypassed as Promise<void>, /next threw/);
  });

  it('checks its options', () => {
    const session = koaRedisSession({ redis: f.server.url });
    closeable(() => session.close());
    for (const path of ['/', 'chart', '/chart/', '/a b'])
      assert.throws(() => sessionChart({ session, path }), /option "path" must be an absolute URL path/);
    for (const recent of [-1, 0, 2.5, Number.NaN, Number.POSITIVE_INFINITY])
      assert.throws(() => sessionChart({ session, recent }), /option "recent" must be a whole number/);
  });
});
