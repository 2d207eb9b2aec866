/**
 * Per-request traces: the `debug` option (a function, or `true` for a stderr line), the
 * `DEBUG=koa-session-machine` environment switch, and the opt-in development `X-Session-Trace`
 * header — never on by default.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { koaRedisSession, type SessionTrace } from '../src/index.js';
import { expectCookieSet, makeApp } from './helpers/app.js';
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
    await f.redis.hincrby(`sess:${id}`, 'x', -1); // a second later: the load moves the expiry
    await app.get('/other', cookie);
    await app.close();
    assert.deepEqual(
      traces.map((t) => [t.method, t.path, t.final, t.redis, t.cookie]),
      [
        ['GET', '/cart', 'persisted', ['create'], 'set'],
        ['GET', '/cart', 'persisted', ['load', 'patch'], 'none'],
        ['GET', '/other', 'refreshed', ['load'], 'none'],
      ],
    );
    assert.deepEqual(
      traces[1]?.steps.map((s) => `${s.from} -${s.event}-> ${s.to}`),
      ['unloaded -cookie.verified-> loading', 'loading -load.found-> loaded.clean', 'loaded.clean -data.written-> loaded.dirty', 'loaded.dirty -request.ended-> patching', 'patching -write.stored-> persisted'],
    );
    assert.match(
      traces[1]?.line ?? '',
      /^GET \/cart unloaded -cookie\.verified-> loading -load\.found-> loaded\.clean -data\.written-> loaded\.dirty -request\.ended-> patching -write\.stored-> persisted \| redis: load, patch \| cookie: none \| \d+\.\d\d ms$/,
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
    assert.deepEqual(lines.map((l) => l.replace(/\d+\.\d\d ms$/, 'T ms')), ['koa-session-machine GET / unloaded -cookie.missing-> new.clean -request.ended-> untouched | redis: none | cookie: none | T ms']);
  });

  it('DEBUG=koa-session-machine turns it on; debug: false turns it off again', async () => {
    const lines: string[] = [];
    const original = console.error;
    const env = process.env.DEBUG;
    console.error = (line: unknown) => void lines.push(String(line));
    process.env.DEBUG = 'express:*,koa-session-machine';
    try {
      const on = makeApp(3, { redis: f.server.url }, () => 'x');
      await on.get('/on');
      await on.close();
      const off = makeApp(3, { redis: f.server.url, debug: false }, () => 'x');
      await off.get('/off');
      await off.close();
    } finally {
      console.error = original;
      if (env === undefined) delete process.env.DEBUG;
      else process.env.DEBUG = env;
    }
    assert.equal(lines.length, 1);
    assert.match(lines[0] ?? '', /^koa-session-machine GET \/on /);
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
    assert.match(String(res.headers['x-session-trace']), /^GET \/ unloaded -cookie\.missing-> new\.clean -data\.written-> new\.dirty -request\.ended-> creating -write\.stored-> persisted \| redis: create \| cookie: set \| /);
  });

  it('is refused when NODE_ENV is production', () => {
    const env = process.env.NODE_ENV;
    process.env.NODE_ENV = 'production';
    try {
      assert.throws(() => koaRedisSession({ traceHeader: true }), /option "traceHeader" must be off when NODE_ENV is production/);
    } finally {
      if (env === undefined) delete process.env.NODE_ENV;
      else process.env.NODE_ENV = env;
    }
  });
});
