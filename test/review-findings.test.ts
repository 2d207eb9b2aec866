/**
 * What an adversarial review of the concurrency rewrite found, kept as regressions: a stale pop
 * taking an equal message flashed after it loaded, the stored size drifting with values encoded to
 * '', a replay recognised only within the last few operations, and a Cluster prefix with a "{".
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Context } from 'koa';
import { Cluster } from 'ioredis';
import { KEYS, makeApp, expectCookieSet } from './helpers/app.js';
import { useRedis } from './helpers/fixture.js';
import { Gates } from './helpers/gates.js';
import { startCluster } from './helpers/redis-cluster.js';
import { packedSize, stored, storedSize } from './helpers/stored.js';
import { entrySize } from '../src/store/layout.js';
import { patchLua } from '../src/store/scripts.generated.js';
import { koaRedisSession, type Serializer } from '../src/index.js';
import Koa from 'koa';
import request from 'supertest';

const fx = useRedis();

describe('flash: a pop racing a pop (ABA on the queue text)', () => {
  it('a message flashed after the first pop is not taken by the second, stale pop', async () => {
    const gates = new Gates();
    const app = makeApp(3, { redis: fx.server.url }, async (ctx: Context) => {
      const s = ctx.session as any;
      switch (ctx.path) {
        case '/flash':
          s.user ??= 'ada'; // the session holds more than the queue: a pop does not end it
          s.flash('Saved!');
          return 'ok';
        case '/popA':
        case '/popB': {
          const got = s.popFlash();
          await gates.arrive(ctx.path);
          return JSON.stringify(got);
        }
        case '/pop':
          return JSON.stringify(s.popFlash());
      }
      return 'ok';
    });
    try {
      await app.ready();
      const { cookie } = expectCookieSet(await app.get('/flash'));
      const a = app.get('/popA', cookie).then((r) => r);
      const b = app.get('/popB', cookie).then((r) => r);
      await gates.reached('/popA');
      await gates.reached('/popB');
      gates.release('/popA');
      assert.equal((await a).text, '["Saved!"]');
      // A later request flashes the same text again (the user saved a second time)...
      await app.get('/flash', cookie);
      // ...then the stale pop of B lands: it loaded "Saved!" before A took it.
      gates.release('/popB');
      assert.equal((await b).text, '["Saved!"]');
      const d = await app.get('/pop', cookie);
      assert.equal(d.text, '["Saved!"]', 'the second "Saved!" flash was removed by a pop that never saw it');
    } finally {
      gates.close();
      await app.close();
    }
  });
});

describe('size accounting with a serializer that encodes to the empty string', () => {
  // A legal custom serializer: strings stored raw (only strings in this session).
  const raw: Serializer = { stringify: (v) => String(v), parse: (t) => t };
  it('the size the scripts measure stays equal to the fields stored, and a small session is never refused', async () => {
    const app = makeApp(3, { redis: fx.server.url, serializer: raw, maxSize: 200 }, (ctx: Context) => {
      const s = ctx.session as any;
      if (ctx.path === '/empty') s.a = '';
      if (ctx.path === '/x') s.a = 'x';
      if (ctx.path === '/init') s.user = 'u';
      return 'ok';
    });
    try {
      await app.ready();
      const { cookie, id } = expectCookieSet(await app.get('/init'));
      let last = 200;
      for (let i = 0; i < 150; i++) {
        await app.get('/empty', cookie);
        last = (await app.get('/x', cookie)).status;
        if (last !== 200) break;
      }
      // The size (no longer kept in a field `s`) is measured from the packed map on every write:
      // after 300 writes it is still what the two small fields take.
      const size = await storedSize(fx.redis, `sess:${id}`);
      const measured = await packedSize(fx.redis, `sess:${id}`);
      const expected = entrySize(':user', 'u') + entrySize(':a', 'x');
      assert.deepEqual(
        { size, measured, status: last },
        { size: expected, measured: expected, status: 200 },
        `size drifted: fields=${size}, packed=${measured}, expected ${expected}; a small session refused as over maxSize 200?`,
      );
    } finally {
      await app.close();
    }
  });
});

describe('operation-id replay window', () => {
  it("a replay after other writers' writes is still recognised: no stale overwrite", async () => {
    const app = makeApp(3, { redis: fx.server.url }, (ctx: Context) => {
      (ctx.session as any).a = 0;
      return 'ok';
    });
    try {
      await app.ready();
      const { id } = expectCookieSet(await app.get('/'));
      const key = `sess:${id}`;
      const patch = (op: string, value: string) =>
        fx.redis.eval(
          patchLua,
          1,
          key,
          Math.floor(Date.now() / 1000),
          '1',
          1e6,
          '',
          '0',
          0,
          1,
          op,
          -1,
          '',
          '',
          '',
          '',
          ':a',
          value,
        );
      assert.equal(await patch('AAAAAAAA000001', '1'), 1); // the write whose reply was lost
      for (let i = 2; i <= 5; i++) assert.equal(await patch(`BBBBBBBB00000${i}`, String(i * 10)), 1); // other processes
      assert.equal(await patch('AAAAAAAA000001', '1'), 1); // ioredis resends it on reconnect
      assert.equal((await stored(fx.redis, key))[':a'], '50', 'the replayed write overwrote newer data');
    } finally {
      await app.close();
    }
  });
});

describe('Cluster: a prefix holding "{" without a usable hash tag', () => {
  it('regenerate() works with prefix "sess{"', { timeout: 120_000 }, async () => {
    const cluster = await startCluster(3, 0);
    const client = new Cluster(cluster.startupNodes, { redisOptions: { maxRetriesPerRequest: 1 } });
    try {
      const app = new Koa();
      app.keys = KEYS;
      app.silent = true;
      const errors: unknown[] = [];
      app.on('error', (e) => errors.push(e));
      // The client connects to the fresh Cluster during the first request, which counts against
      // commandTimeout: generous, as a loaded machine may take more than the default second.
      app.use(koaRedisSession({ redis: client, prefix: 'sess{', commandTimeout: 10_000 }));
      app.use((ctx) => {
        const s = ctx.session as any;
        if (ctx.path === '/login') s.regenerate();
        s.n = (s.n ?? 0) + 1;
        ctx.body = 'ok';
      });
      const cb = app.callback();
      const first = await request(cb).get('/');
      assert.equal(first.status, 200);
      const cookie = String(first.headers['set-cookie']).split(';')[0] as string;
      const login = await request(cb).get('/login').set('Cookie', cookie);
      assert.equal(login.status, 200, `regenerate failed: ${login.status} ${String((errors[0] as Error)?.message)}`);
      assert.throws(
        () => koaRedisSession({ redis: client, prefix: 'a{}' }),
        /option "prefix" "a\{\}" defeats Redis Cluster hash tags/,
      );
    } finally {
      client.disconnect();
      await cluster.stop();
    }
  });
});
