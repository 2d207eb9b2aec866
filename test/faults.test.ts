/**
 * Redis faults on private redis-server processes: killed under load, paused (CLIENT PAUSE, DEBUG
 * SLEEP), restarted empty. Every request answers within the bound, the process never crashes (an
 * unhandled rejection fails the run), requests work again once Redis is back without restarting the
 * app, and a write that could not be stored is reported, never reported as saved.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import Koa from 'koa';
import { Redis } from 'ioredis';
import { koaRedisSession, SessionStoreError, type InvalidSessionError, type SessionOptions } from '../src/index.js';
import { KEYS } from './helpers/app.js';
import { startRedis, type RedisServer } from './helpers/redis-server.js';
import { serveSession } from './helpers/server.js';
import './helpers/unhandled.js';

/** The command timeout: a healthy Redis answers well within it even on a loaded, shared machine,
 *  so only the faults below fail a request. */
const TIMEOUT = 1000;
/** The bound: the command timeout plus the time a loaded 2-core machine needs to answer. */
const BOUND = TIMEOUT + 1500;
/** How long Redis stops answering: longer than the bound, so a request that waited the fault out
 *  instead of timing out fails it. */
const FAULT_MS = BOUND + 1500;
/** Redis 7 refuses DEBUG unless enabled: these servers allow it (only loopback clients exist). */
const DEBUG = ['--enable-debug-command', 'yes'];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Outcome {
  status: number;
  ms: number;
  cookie: string | null;
  body: string;
}

/** The app under fault (test/helpers/server.ts): each outcome timed, each failure reported; an admin
 *  client pauses Redis in the middle of a request, and `unpaused()` waits for that pause to end. */
async function serve(options: SessionOptions, url: string) {
  const reports: InvalidSessionError[] = [];
  const admin = new Redis(url);
  admin.on('error', () => undefined);
  const app = await serveSession(
    { commandTimeout: TIMEOUT, onInvalid: (_ctx, err) => reports.push(err), ...options },
    async (ctx) => {
      if (ctx.path === '/write' || ctx.path === '/write-then-pause')
        ctx.session.n = ((ctx.session.n as number | undefined) ?? 0) + 1;
      // Redis stops answering after the load and before the write.
      if (ctx.path === '/write-then-pause') await admin.client('PAUSE', FAULT_MS, 'ALL');
      if (ctx.path === '/logout-then-pause') {
        ctx.session.invalidate();
        await admin.client('PAUSE', FAULT_MS, 'ALL');
      }
      ctx.body = JSON.stringify({ n: ctx.session.n ?? null, isNew: ctx.session.isNew });
    },
  );
  const get = async (path: string, cookie?: string): Promise<Outcome> => {
    const start = performance.now();
    const res = await app.get(path, cookie);
    const body = await res.text();
    return { status: res.status, ms: performance.now() - start, cookie: res.headers.get('set-cookie'), body };
  };
  return {
    get,
    reports,
    session: app.session,
    unpaused: () => resumed(admin),
    close: async () => {
      await app.close();
      admin.disconnect();
    },
  };
}

const cookieOf = (o: Outcome) => (o.cookie ?? '').split(';')[0] as string;

/** Wait until a CLIENT PAUSE sent by `admin` is over: Redis holds the pausing client's own next
 *  command until then (a barrier on the pause itself, not a sleep as long as it). */
async function resumed(admin: Redis): Promise<void> {
  await admin.ping();
}

/** Wait until Redis answers `client` again after a DEBUG SLEEP sent on that same connection: its
 *  next command is run only once the sleep is over. A client with a commandTimeout gives up on a
 *  PING while Redis still sleeps: ask again, until `timeoutMs` has passed on the clock. */
async function awake(client: Redis, timeoutMs = 30_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    try {
      await client.ping();
      return;
    } catch (err) {
      if (performance.now() > deadline) throw new Error(`Redis did not wake within ${timeoutMs} ms`, { cause: err });
      await sleep(50);
    }
  }
}

/** Wait until a client is connected again (ioredis reconnects with a growing delay). */
async function reconnected(client: { status: string }, timeoutMs = 10_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (client.status !== 'ready') {
    if (performance.now() > deadline)
      throw new Error(`the client did not reconnect within ${timeoutMs} ms (${client.status})`);
    await sleep(50);
  }
}

/** Fire requests continuously (a few in flight) until stopped; collect every outcome. */
function load(get: (path: string, cookie?: string) => Promise<Outcome>, cookie: string) {
  const outcomes: Outcome[] = [];
  let running = true;
  const workers = Array.from({ length: 4 }, async (_, w) => {
    while (running) outcomes.push(await get(w % 2 ? '/write' : '/read', cookie));
  });
  return {
    outcomes,
    stop: async () => {
      running = false;
      await Promise.all(workers);
      return outcomes;
    },
  };
}

function assertBounded(outcomes: Outcome[], what: string): void {
  const slowest = Math.max(...outcomes.map((o) => o.ms));
  assert.ok(slowest <= BOUND, `${what}: slowest request took ${slowest.toFixed(0)} ms (bound ${BOUND} ms)`);
  for (const o of outcomes) assert.ok(o.status === 200 || o.status === 503, `${what}: status ${o.status}`);
}

for (const policy of ['throw', 'continue'] as const) {
  for (const client of ['owned', 'passed in with ioredis defaults'] as const) {
    describe(`onRedisError '${policy}', client ${client}`, () => {
      let redis: RedisServer;
      let app: Awaited<ReturnType<typeof serve>>;
      let passed: Redis | undefined;
      before(async () => {
        redis = await startRedis(DEBUG);
        passed = client === 'owned' ? undefined : new Redis(redis.url);
        passed?.on('error', () => undefined);
        app = await serve({ redis: passed ?? redis.url, onRedisError: policy }, redis.url);
      });
      after(async () => {
        await app.close();
        passed?.disconnect();
        await redis.stop();
      });

      it('Redis killed under load: every request answers within the bound; after a restart (empty) requests work again', async () => {
        const login = await app.get('/write');
        assert.equal(login.status, 200);
        const cookie = cookieOf(login);
        const traffic = load(app.get, cookie);
        let during = 0;
        let down = false;
        try {
          await sleep(300);
          await redis.stop('SIGKILL');
          down = true;
          // Down long enough for a request sent after the kill to time out while it is down.
          await sleep(TIMEOUT + 1200);
          during = traffic.outcomes.length;
          redis = await startRedis(DEBUG, redis.port);
          down = false;
          await sleep(1500);
        } finally {
          // The workers never outlive the test, and the next tests get their Redis back even when
          // this one failed while it was down.
          await traffic.stop();
          if (down) redis = await startRedis(DEBUG, redis.port);
          // The client's reconnect delay grows while Redis is down: wait for it rather than assume
          // it came back during the traffic.
          await reconnected(app.session.redis);
        }
        const outcomes = traffic.outcomes;
        assertBounded(outcomes, 'killed');
        assert.ok(outcomes.length > during, 'requests went on after the restart');
        const failed = outcomes.filter((o) => o.status === 503).length;
        if (policy === 'throw') assert.ok(failed > 0, 'some requests failed with 503 while Redis was down');
        else {
          assert.equal(failed, 0, 'continue: no request failed');
          assert.ok(
            app.reports.some((e) => e instanceof SessionStoreError && e.command === 'load'),
            'failed loads reported',
          );
        }
        // Redis came back empty: the old cookie leads to no session; a new one works end to end.
        const after1 = await app.get('/write', cookie);
        assert.equal(after1.status, 200);
        assert.match(after1.cookie ?? '', /^session=[^;]+\./, 'a new session cookie');
        const after2 = await app.get('/write', cookieOf(after1));
        assert.deepEqual(JSON.parse(after2.body), { n: 2, isNew: false });
      });

      it('CLIENT PAUSE: requests answer within the bound, then work again', async () => {
        const first = await app.get('/write');
        const cookie = cookieOf(first);
        const admin = new Redis(redis.url);
        try {
          await admin.client('PAUSE', FAULT_MS, 'ALL');
          const outcomes = await Promise.all([app.get('/read', cookie), app.get('/write', cookie), app.get('/write')]);
          assertBounded(outcomes, 'paused');
          if (policy === 'throw') assert.ok(outcomes.every((o) => o.status === 503));
          else {
            assert.ok(outcomes.every((o) => o.status === 200));
            assert.equal(outcomes[2]?.cookie, null, 'a new session that could not be created gets no cookie');
            assert.ok(
              app.reports.some((e) => e instanceof SessionStoreError && e.command === 'create'),
              'the failed create is reported',
            );
          }
          await resumed(admin);
          const again = await app.get('/write', cookie);
          assert.equal(again.status, 200);
        } finally {
          admin.disconnect();
        }
      });

      it('DEBUG SLEEP: requests answer within the bound, then work again', async () => {
        const first = await app.get('/write');
        const cookie = cookieOf(first);
        // Sent on the app's own connection, so the requests' commands reach Redis after it however
        // late a loaded machine sends them: Redis runs one connection's commands in order.
        const client = app.session.redis as Redis;
        void client.call('DEBUG', 'SLEEP', String(FAULT_MS / 1000)).catch(() => undefined);
        const outcomes = await Promise.all([app.get('/read', cookie), app.get('/write', cookie)]);
        assertBounded(outcomes, 'sleeping');
        assert.deepEqual(
          outcomes.map((o) => o.status),
          policy === 'throw' ? [503, 503] : [200, 200],
        );
        await awake(client);
        assert.equal((await app.get('/read', cookie)).status, 200);
      });

      it('a logout whose delete fails still clears the cookie, even on the 503', async () => {
        const first = await app.get('/write');
        const res = await app.get('/logout-then-pause', cookieOf(first));
        assertBounded([res], 'logout');
        assert.equal(res.status, policy === 'throw' ? 503 : 200);
        assert.match(res.cookie ?? '', /^session=;/);
        await app.unpaused();
      });

      it('a write that cannot be stored is reported, never reported as saved', async () => {
        const first = await app.get('/write');
        const cookie = cookieOf(first);
        const before = app.reports.length;
        const res = await app.get('/write-then-pause', cookie);
        assertBounded([res], 'write');
        await app.unpaused();
        if (policy === 'throw') assert.equal(res.status, 503, 'the request fails: its change was not stored');
        else {
          assert.equal(res.status, 200);
          const report = app.reports.slice(before).find((e) => e instanceof SessionStoreError);
          assert.equal((report as SessionStoreError | undefined)?.command, 'patch');
        }
        // Redis had the command in hand when it paused, so it may still apply it afterwards: a timeout
        // says "not confirmed", never "saved". Either way the session is intact.
        const stored = JSON.parse((await app.get('/read', cookie)).body) as { n: number; isNew: boolean };
        assert.ok(stored.n === 1 || stored.n === 2);
        assert.equal(stored.isNew, false);
      });
    });
  }
}

describe('a 503 names the session store', () => {
  it('with the SessionStoreError as the error Koa sees, and the ioredis error as its cause', async (t) => {
    const redis = await startRedis();
    t.after(() => redis.stop());
    const seen: unknown[] = [];
    const app = new Koa();
    app.keys = KEYS;
    app.silent = true;
    app.on('error', (err) => seen.push(err));
    const session = koaRedisSession({ redis: redis.url, commandTimeout: TIMEOUT });
    t.after(() => session.close());
    app.use(session);
    app.use((ctx) => {
      ctx.session.a = 1;
      ctx.body = 'ok';
    });
    const server = createServer(app.callback());
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    t.after(() => server.listening && new Promise((r) => server.close(r)));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    await redis.stop();
    const res = await fetch(base);
    assert.equal(res.status, 503);
    const err = seen[0] as SessionStoreError & { status: number };
    assert.ok(err instanceof SessionStoreError);
    assert.equal(err.status, 503);
    assert.equal(err.command, 'create');
    assert.match(err.message, /^session store unavailable: create (failed|did not answer)/);
    await new Promise((r) => server.close(r));
    const start = performance.now();
    await session.close();
    assert.ok(performance.now() - start < BOUND, 'close() does not hang on a Redis that is away');
  });
});
