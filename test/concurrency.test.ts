/**
 * No lost updates (docs/design.md, "Concurrency"): concurrent requests of one session that change different keys all
 * survive, whatever their interleaving; the same key: last writer wins; a logout stays a logout.
 * Where the order matters, handlers stop at barriers the test opens: no timing is assumed.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type Koa from 'koa';
import { closeable } from './helpers/cleanup.js';
import { serveSession } from './helpers/server.js';
import { storedData, useRedis } from './helpers/fixture.js';
import { isSession } from './helpers/stored.js';

const f = useRedis();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// commandTimeout 5 s: 50 requests at once on a shared machine, no 503 for a slow moment.
const serve = (handler: (ctx: Koa.Context) => Promise<void>) =>
  serveSession({ redis: f.server.url, commandTimeout: 5000 }, handler);

/** A point a handler waits at (its session already loaded) until the test opens it. */
interface Barrier {
  /** Resolves once a handler is waiting here. */
  reached: Promise<void>;
  /** Let the waiting handler go on. */
  open(): void;
  /** For the handler: announce arrival, then wait to be let through. */
  wait(): Promise<void>;
}
function barrier(): Barrier {
  let arrive!: () => void;
  let open!: () => void;
  const reached = new Promise<void>((r) => (arrive = r));
  const opened = new Promise<void>((r) => (open = r));
  // Opened by the after hooks at the latest (with the apps they close), so a test that failed before
  // opening it leaves no handler waiting and no server that cannot close.
  closeable(async () => open());
  return { reached, open, wait: () => (arrive(), opened) };
}

async function login(app: {
  get: (p: string) => Promise<globalThis.Response>;
}): Promise<{ cookie: string; id: string }> {
  const res = await app.get('/login');
  assert.equal(res.status, 200, 'login');
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

  it('every interleaving of two writers on different keys keeps both', async () => {
    const gates = new Map<string, Barrier>();
    const app = await serve(async (ctx) => {
      if (ctx.path === '/login') ctx.session.base = 0;
      else {
        ctx.session[String(ctx.query.key)] = Number(ctx.query.value);
        await gates.get(String(ctx.query.key))?.wait();
      }
      ctx.body = 'ok';
    });
    // Redis runs each command whole, so the interleavings are the orders of the two loads (L) and
    // the two writes (W), each load before its own write: these six. A step waits until it is done.
    const orders = ['La Wa Lb Wb', 'Lb Wb La Wa', 'La Lb Wa Wb', 'La Lb Wb Wa', 'Lb La Wa Wb', 'Lb La Wb Wa'];
    const values: Record<string, number> = { a: 1, b: 2 };
    for (const order of orders) {
      for (const key of ['a', 'b']) gates.set(key, barrier());
      const { cookie, id } = await login(app);
      const pending = new Map<string, Promise<globalThis.Response>>();
      for (const [step, key] of order.split(' ').map((s) => [s[0], s.slice(1)] as const)) {
        const gate = gates.get(key) as Barrier;
        if (step === 'L') {
          pending.set(key, app.get(`/w?key=${key}&value=${values[key]}`, cookie));
          await gate.reached;
        } else {
          gate.open();
          assert.equal((await pending.get(key))?.status, 200, `${order}: ${key} answered`);
        }
      }
      assert.deepEqual(await storedData(f.redis, `sess:${id}`), { base: 0, a: 1, b: 2 }, order);
    }
    await app.close();
  });

  it('two writers of the same key: the one that finishes last wins', async () => {
    const gates: Record<string, Barrier> = { red: barrier(), blue: barrier() };
    const app = await serve(async (ctx) => {
      if (ctx.path === '/login') ctx.session.color = 'none';
      else {
        ctx.session.color = String(ctx.query.color);
        await gates[String(ctx.query.color)]?.wait();
      }
      ctx.body = 'ok';
    });
    const { cookie, id } = await login(app);
    // Both load the session, then blue finishes, then red.
    const red = app.get('/w?color=red', cookie);
    const blue = app.get('/w?color=blue', cookie);
    await Promise.all([gates.red?.reached, gates.blue?.reached]);
    gates.blue?.open();
    const blueRes = await blue;
    gates.red?.open();
    const redRes = await red;
    await app.close();
    assert.deepEqual([blueRes.status, redRes.status], [200, 200]);
    assert.deepEqual(await storedData(f.redis, `sess:${id}`), { color: 'red' });
  });

  it('a slow write does not resurrect a session logged out meanwhile', async () => {
    const gate = barrier();
    const app = await serve(async (ctx) => {
      if (ctx.path === '/login') ctx.session.user = 'ada';
      else if (ctx.path === '/logout') ctx.session.invalidate();
      else {
        ctx.session.cart = ['apple'];
        await gate.wait();
      }
      ctx.body = 'ok';
    });
    const { cookie, id } = await login(app);
    const slow = app.get('/slow', cookie);
    await gate.reached; // loaded, its write still to come
    const logout = await app.get('/logout', cookie);
    gate.open();
    const slowRes = await slow;
    await app.close();
    assert.equal(logout.status, 200);
    assert.equal(slowRes.status, 200);
    assert.equal(slowRes.headers.get('set-cookie'), null, 'the slow response leaves the cookie to the logout');
    assert.equal(await f.redis.exists(`sess:${id}`), 0, 'logout wins');
    assert.equal(await f.redis.dbsize(), 0);
  });

  it('regenerate() keeps what a concurrent request wrote to the session meanwhile', async () => {
    const gate = barrier();
    const app = await serve(async (ctx) => {
      if (ctx.path === '/login') ctx.session.user = 'ada';
      else if (ctx.path === '/cart') ctx.session.cart = ['apple'];
      else {
        await gate.wait(); // loaded before the cart was written, regenerates after
        ctx.session.regenerate();
        ctx.session.role = 'admin';
      }
      ctx.body = 'ok';
    });
    const { cookie, id } = await login(app);
    const slow = app.get('/elevate', cookie);
    await gate.reached;
    const cart = await app.get('/cart', cookie);
    gate.open();
    const res = await slow;
    await app.close();
    assert.deepEqual([cart.status, res.status], [200, 200]);
    const fresh = (res.headers.get('set-cookie') ?? '').split(';')[0] as string;
    const newId = fresh.slice(fresh.indexOf('=') + 1, fresh.lastIndexOf('.'));
    assert.notEqual(newId, id);
    assert.equal(await isSession(f.redis, `sess:${id}`), false, 'no session under the old id');
    assert.deepEqual(await storedData(f.redis, `sess:${newId}`), { user: 'ada', cart: ['apple'], role: 'admin' });
  });

  it('regenerate() does not resurrect a session logged out meanwhile', async () => {
    const gate = barrier();
    const app = await serve(async (ctx) => {
      if (ctx.path === '/login') ctx.session.user = 'ada';
      else if (ctx.path === '/logout') ctx.session.invalidate();
      else {
        await gate.wait();
        ctx.session.regenerate();
      }
      ctx.body = 'ok';
    });
    const { cookie } = await login(app);
    const slow = app.get('/elevate', cookie);
    await gate.reached;
    const logout = await app.get('/logout', cookie);
    gate.open();
    const res = await slow;
    await app.close();
    assert.deepEqual([logout.status, res.status], [200, 200]);
    assert.equal(res.headers.get('set-cookie'), null, 'no new session cookie');
    assert.equal(await f.redis.dbsize(), 0, 'logout wins');
  });
});
