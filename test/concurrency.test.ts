/**
 * No lost updates (SPEC §6): concurrent requests of one session that change different keys all
 * survive, whatever their interleaving; the same key: last writer wins; a logout stays a logout.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type Koa from 'koa';
import fc from 'fast-check';
import { serveSession } from './helpers/server.js';
import { storedData, useRedis } from './helpers/fixture.js';

const f = useRedis();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const serve = (handler: (ctx: Koa.Context) => Promise<void>) => serveSession({ redis: f.server.url }, handler);

async function login(app: { get: (p: string) => Promise<globalThis.Response> }): Promise<{ cookie: string; id: string }> {
  const res = await app.get('/login');
  const cookie = (res.headers.get('set-cookie') ?? '').split(';')[0] as string;
  return { cookie, id: cookie.slice(cookie.indexOf('=') + 1, cookie.lastIndexOf('.')) };
}

describe('concurrent requests on one session', () => {
  it('50 requests each setting a different key, with random delays: all 50 keys survive', async () => {
    const app = await serve(async (ctx) => {
      if (ctx.path === '/login') {
        ctx.session.user = 'ada';
      } else {
        const n = Number(ctx.query.n);
        await sleep(Math.random() * 50);
        ctx.session[`k${n}`] = n;
        await sleep(Math.random() * 50);
      }
      ctx.body = 'ok';
    });
    const { cookie, id } = await login(app);
    const responses = await Promise.all(Array.from({ length: 50 }, (_, n) => app.get(`/set?n=${n}`, cookie)));
    await app.close();
    assert.ok(responses.every((r) => r.status === 200));
    const data = await storedData(f.redis, `sess:${id}`);
    const kept = Array.from({ length: 50 }, (_, n) => data[`k${n}`] === n).filter(Boolean).length;
    assert.equal(kept, 50, `kept ${kept} of 50`);
    assert.equal(data.user, 'ada');
  });

  it('any interleaving of two writers on different keys keeps both (property)', async () => {
    const app = await serve(async (ctx) => {
      if (ctx.path === '/login') ctx.session.base = 0;
      else {
        await sleep(Number(ctx.query.before));
        ctx.session[String(ctx.query.key)] = Number(ctx.query.value);
        await sleep(Number(ctx.query.after));
      }
      ctx.body = 'ok';
    });
    await fc.assert(
      fc.asyncProperty(fc.tuple(fc.nat(20), fc.nat(20), fc.nat(20), fc.nat(20)), async ([b1, a1, b2, a2]) => {
        const { cookie, id } = await login(app);
        await Promise.all([
          app.get(`/w?key=a&value=1&before=${b1}&after=${a1}`, cookie),
          app.get(`/w?key=b&value=2&before=${b2}&after=${a2}`, cookie),
        ]);
        const data = await storedData(f.redis, `sess:${id}`);
        assert.deepEqual(data, { base: 0, a: 1, b: 2 });
      }),
      { numRuns: 25 },
    );
    await app.close();
  });

  it('two writers of the same key: the one that finishes last wins', async () => {
    const app = await serve(async (ctx) => {
      if (ctx.path === '/login') ctx.session.color = 'none';
      else {
        ctx.session.color = String(ctx.query.color);
        await sleep(Number(ctx.query.wait));
      }
      ctx.body = 'ok';
    });
    const { cookie, id } = await login(app);
    await Promise.all([app.get('/w?color=red&wait=80', cookie), app.get('/w?color=blue&wait=5', cookie)]);
    await app.close();
    assert.deepEqual(await storedData(f.redis, `sess:${id}`), { color: 'red' });
  });

  it('a slow write does not resurrect a session logged out meanwhile', async () => {
    const app = await serve(async (ctx) => {
      if (ctx.path === '/login') ctx.session.user = 'ada';
      else if (ctx.path === '/logout') ctx.session.invalidate();
      else {
        ctx.session.cart = ['apple'];
        await sleep(60);
      }
      ctx.body = 'ok';
    });
    const { cookie, id } = await login(app);
    const slow = app.get('/slow', cookie);
    await sleep(15);
    const logout = await app.get('/logout', cookie);
    const slowRes = await slow;
    await app.close();
    assert.equal(logout.status, 200);
    assert.equal(slowRes.status, 200);
    assert.equal(slowRes.headers.get('set-cookie'), null, 'the slow response leaves the cookie to the logout');
    assert.equal(await f.redis.exists(`sess:${id}`), 0, 'logout wins');
    assert.equal(await f.redis.dbsize(), 0);
  });

  it('regenerate() keeps what a concurrent request wrote to the session meanwhile', async () => {
    const app = await serve(async (ctx) => {
      if (ctx.path === '/login') ctx.session.user = 'ada';
      else if (ctx.path === '/cart') ctx.session.cart = ['apple'];
      else {
        await sleep(60); // loaded before the cart was written, regenerates after
        ctx.session.regenerate();
        ctx.session.role = 'admin';
      }
      ctx.body = 'ok';
    });
    const { cookie, id } = await login(app);
    const slow = app.get('/elevate', cookie);
    await sleep(15);
    await app.get('/cart', cookie);
    const res = await slow;
    await app.close();
    const fresh = (res.headers.get('set-cookie') ?? '').split(';')[0] as string;
    const newId = fresh.slice(fresh.indexOf('=') + 1, fresh.lastIndexOf('.'));
    assert.notEqual(newId, id);
    assert.equal(await f.redis.hexists(`sess:${id}`, 'v'), 0, 'no session under the old id');
    assert.deepEqual(await storedData(f.redis, `sess:${newId}`), { user: 'ada', cart: ['apple'], role: 'admin' });
  });

  it('regenerate() does not resurrect a session logged out meanwhile', async () => {
    const app = await serve(async (ctx) => {
      if (ctx.path === '/login') ctx.session.user = 'ada';
      else if (ctx.path === '/logout') ctx.session.invalidate();
      else {
        await sleep(60);
        ctx.session.regenerate();
      }
      ctx.body = 'ok';
    });
    const { cookie } = await login(app);
    const slow = app.get('/elevate', cookie);
    await sleep(15);
    await app.get('/logout', cookie);
    const res = await slow;
    await app.close();
    assert.equal(res.headers.get('set-cookie'), null, 'no new session cookie');
    assert.equal(await f.redis.dbsize(), 0, 'logout wins');
  });
});
