/**
 * Redis Cluster (3 masters + 3 replicas, private processes): the README's cost table and the concurrency
 * guarantee through an ioredis `Cluster` passed as `redis`, and a master killed under load whose
 * replica takes over.
 */
import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import type Koa from 'koa';
import { Cluster, Redis } from 'ioredis';
import { KOA_VERSIONS } from './helpers/app.js';
import { closeOpened } from './helpers/cleanup.js';
import { cookieOf, retryUnavailable, serveSession, trafficDuring } from './helpers/server.js';
import { runContract } from './helpers/contract.js';
import { storedData } from './helpers/fixture.js';
import { sessionKey } from './helpers/keys.js';
import { MultiMonitor } from './helpers/monitor.js';
import { startCluster, type RedisCluster } from './helpers/redis-cluster.js';
import { replicasCaughtUp } from './helpers/redis-server.js';
import './helpers/unhandled.js';

let cluster: RedisCluster;
let client: Cluster;
let monitor: MultiMonitor;

function connectCluster(): Cluster {
  const c = new Cluster(cluster.startupNodes, { redisOptions: { maxRetriesPerRequest: 1 } });
  c.on('error', () => undefined);
  return c;
}

/** Open the client's connection to every master, so no handshake lands inside a capture. */
async function warm(c: Cluster): Promise<void> {
  await c.ping();
  await Promise.all(c.nodes('master').map((n) => n.ping()));
}

async function onMasters<T>(fn: (node: Redis) => Promise<T>): Promise<T[]> {
  const ports = await cluster.masters();
  return Promise.all(
    ports.map(async (port) => {
      const node = new Redis(port, '127.0.0.1');
      try {
        return await fn(node);
      } finally {
        node.disconnect();
      }
    }),
  );
}

before(async () => {
  cluster = await startCluster(3, 1);
  client = connectCluster();
  await warm(client);
  monitor = await MultiMonitor.start((await cluster.masters()).map((p) => `redis://127.0.0.1:${p}`));
});
afterEach(async () => {
  await closeOpened();
  await onMasters((n) => n.flushall());
});
after(async () => {
  await closeOpened();
  await monitor?.stop();
  client?.disconnect();
  await cluster?.stop();
});

runContract(
  {
    versions: KOA_VERSIONS,
    redis: () => client,
    inspect: () => client,
    keyCount: async () => (await onMasters((n) => n.dbsize())).reduce((a, b) => a + b, 0),
    request: (send) => monitor.request(send),
    cluster: true,
  },
  'Redis Cluster',
);

const serve = (redis: Cluster, handler: (ctx: Koa.Context) => Promise<void> | void, commandTimeout = 1000) =>
  serveSession({ redis, commandTimeout }, handler);

describe('concurrency on Redis Cluster', () => {
  it('50 requests each setting a different key: all 50 survive', async () => {
    // 50 requests at once on a shared machine: a commandTimeout of 5 s, no 503 for a slow moment.
    const app = await serve(
      client,
      async (ctx) => {
        if (ctx.path === '/login') ctx.session.user = 'ada';
        else {
          await new Promise((r) => setTimeout(r, Math.random() * 40));
          ctx.session[`k${String(ctx.query.n)}`] = Number(ctx.query.n);
        }
        ctx.body = 'ok';
      },
      5000,
    );
    const login = await app.get('/login');
    assert.equal(login.status, 200, 'login');
    const cookie = (login.headers.get('set-cookie') ?? '').split(';')[0] as string;
    const id = cookie.slice(cookie.indexOf('=') + 1, cookie.lastIndexOf('.'));
    const responses = await Promise.all(Array.from({ length: 50 }, (_, n) => app.get(`/set?n=${n}`, cookie)));
    await app.close();
    assert.deepEqual(
      responses.map((r) => r.status),
      responses.map(() => 200),
    );
    const data = await storedData(client, sessionKey(id, true));
    assert.equal(Object.keys(data).filter((k) => k.startsWith('k')).length, 50);
  });
});

describe('failover on Redis Cluster', () => {
  it('a master killed under load: no crash, bounded answers, and the sessions written before are still readable', async (t) => {
    const redis = connectCluster();
    t.after(() => redis.disconnect());
    const app = await serve(redis, (ctx) => {
      if (ctx.path === '/write') ctx.session.n = ((ctx.session.n as number | undefined) ?? 0) + 1;
      ctx.body = JSON.stringify({ isNew: ctx.session.isNew, n: ctx.session.n ?? null });
    });
    await warm(redis);
    const cookies: string[] = [];
    // Before and after the fault, a 503 is a slow moment of a loaded machine (or the client still
    // following the failover), not a lost session: sent again (test/helpers/server.ts).
    const seeding = performance.now() + 60_000;
    for (let i = 0; i < 200; i++) {
      const res = await retryUnavailable(() => app.get('/write'), seeding);
      assert.equal(res.status, 200, await res.text());
      cookies.push(cookieOf(res));
    }
    // The replicas have every session before a master dies (else losing the last writes is expected).
    await Promise.all((await cluster.masters()).map((port) => replicasCaughtUp(port)));
    const check = await retryUnavailable(() => app.get('/read', cookies[0]), seeding);
    assert.deepEqual(JSON.parse(await check.text()), { isNew: false, n: 1 }, `before the kill (${cookies[0]})`);
    const { statuses, slowest } = await trafficDuring(app, cookies, async () => {
      await new Promise((r) => setTimeout(r, 300));
      const masters = await cluster.masters();
      const victim = cluster.nodes.find((n) => n.port === masters[0]);
      assert.ok(victim, `a master to kill among ${JSON.stringify(masters)}`);
      await victim.stop('SIGKILL');
      // The victim's replica takes over once the others agree it is gone (node timeout 1 s).
      const deadline = Date.now() + 30_000;
      for (;;) {
        const now = await cluster.masters();
        if (now.length === 3 && !now.includes(victim.port)) break;
        assert.ok(Date.now() < deadline, 'a replica took over');
        await new Promise((r) => setTimeout(r, 200));
      }
      await cluster.waitOk(30_000);
      await new Promise((r) => setTimeout(r, 1500));
    });

    let readable = 0;
    const reading = performance.now() + 60_000;
    for (const cookie of cookies) {
      const res = await retryUnavailable(() => app.get('/read', cookie), reading);
      if (res.status === 200 && (JSON.parse(await res.text()) as { isNew: boolean }).isNew === false) readable++;
    }
    await app.close();
    const failed = statuses.filter((s) => s !== 200).length;
    console.log(
      `cluster failover: ${statuses.length} requests during the kill (${failed} answered 503, slowest ${slowest.toFixed(0)} ms); ${readable}/200 sessions written before the kill readable after failover`,
    );
    // A floor on the traffic during the fault, else "every request answered" holds for none: this
    // phase served about 1 500 requests on an idle 2-core machine and under 200 on a loaded one, so
    // at least 50 is required, which a loaded machine still clears.
    assert.ok(statuses.length >= 50, `${statuses.length} requests during the kill (at least 50)`);
    assert.ok(statuses.every((s) => s === 200 || s === 503));
    assert.ok(slowest <= 2000, `every request answered within the bound (slowest ${slowest.toFixed(0)} ms)`);
    assert.equal(readable, 200, `${readable}/200 sessions readable after failover`);
  });
});
