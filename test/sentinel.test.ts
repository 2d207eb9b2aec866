/**
 * Redis Sentinel (one master, one replica, three sentinels, private processes): the README's cost table
 * through ioredis in Sentinel mode, and a forced failover under load.
 */
import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { closeOpened } from './helpers/cleanup.js';
import { cookieOf, retryUnavailable, serveSession, trafficDuring } from './helpers/server.js';
import { runContract } from './helpers/contract.js';
import { Monitor } from './helpers/monitor.js';
import { MASTER_NAME, startSentinel, type RedisSentinel } from './helpers/redis-sentinel.js';
import { replicasCaughtUp } from './helpers/redis-server.js';
import './helpers/unhandled.js';

const SENTINEL_TRAFFIC = new Set(['ping', 'info', 'publish', 'subscribe', 'client', 'role']);

let sentinel: RedisSentinel;
let client: Redis;
let monitor: Monitor;

function connectSentinel(): Redis {
  const c = new Redis({ sentinels: sentinel.sentinelNodes, name: MASTER_NAME, maxRetriesPerRequest: 1 });
  c.on('error', () => undefined);
  return c;
}

before(async () => {
  sentinel = await startSentinel();
  client = connectSentinel();
  await client.ping();
  monitor = await Monitor.start(sentinel.master.url);
});
afterEach(async () => {
  await closeOpened();
  await client.flushall();
});
after(async () => {
  await closeOpened();
  await monitor?.stop();
  client?.disconnect();
  await sentinel?.stop();
});

runContract(
  {
    versions: [3],
    redis: () => client,
    inspect: () => client,
    keyCount: () => client.dbsize(),
    // The sentinels' own health checks (PING, INFO, hello PUBLISH every second) reach the master's
    // MONITOR too; the session middleware sends none of these.
    request: async (send) => {
      const { res, wire } = await monitor.request(send);
      return { res, wire: wire.filter((c) => !SENTINEL_TRAFFIC.has(c.op)) };
    },
  },
  'Redis Sentinel',
);

describe('failover with Redis Sentinel', () => {
  it('a forced failover under load: no crash, bounded answers, and the sessions written before are still readable', async (t) => {
    const redis = connectSentinel();
    t.after(() => redis.disconnect());
    const app = await serveSession({ redis, commandTimeout: 1000 }, (ctx) => {
      if (ctx.path === '/write') ctx.session.n = ((ctx.session.n as number | undefined) ?? 0) + 1;
      ctx.body = JSON.stringify({ isNew: ctx.session.isNew });
    });
    const get = app.get;

    // Before and after the failover, a 503 is a slow moment of a loaded machine (or the client still
    // following the new master), not a lost session: sent again (test/helpers/server.ts).
    const cookies: string[] = [];
    const seeding = performance.now() + 60_000;
    for (let i = 0; i < 200; i++) {
      const res = await retryUnavailable(() => get('/write'), seeding);
      assert.equal(res.status, 200);
      cookies.push(cookieOf(res));
    }
    await replicasCaughtUp(sentinel.master.port); // the replica has every session before the failover

    let before = 0;
    const { statuses, slowest } = await trafficDuring(app, cookies, async () => {
      await new Promise((r) => setTimeout(r, 300));
      before = await sentinel.currentMasterPort();
      const admin = new Redis(sentinel.sentinels[0]?.port as number, '127.0.0.1');
      try {
        await admin.call('SENTINEL', 'FAILOVER', MASTER_NAME);
      } finally {
        admin.disconnect();
      }
      const deadline = Date.now() + 30_000;
      while ((await sentinel.currentMasterPort()) === before) {
        assert.ok(Date.now() < deadline, 'the sentinels promoted the replica');
        await new Promise((r) => setTimeout(r, 100));
      }
      await new Promise((r) => setTimeout(r, 2000));
    });

    let readable = 0;
    const reading = performance.now() + 60_000;
    for (const cookie of cookies) {
      const res = await retryUnavailable(() => get('/read', cookie), reading);
      if (res.status === 200 && (JSON.parse(await res.text()) as { isNew: boolean }).isNew === false) readable++;
    }
    await app.close();
    const failed = statuses.filter((s) => s !== 200).length;
    console.log(
      `sentinel failover: master ${before} → ${await sentinel.currentMasterPort()}; ${statuses.length} requests during it (${failed} answered 503, slowest ${slowest.toFixed(0)} ms); ${readable}/200 sessions written before readable after`,
    );
    // A floor on the traffic during the fault, else "every request answered" holds for none: this
    // phase served 1 600 to 2 900 requests on an idle 2-core machine and a small fraction of that on
    // a loaded one, so at least 50 is required, which a loaded machine still clears.
    assert.ok(statuses.length >= 50, `${statuses.length} requests during the failover (at least 50)`);
    assert.ok(statuses.every((s) => s === 200 || s === 503));
    assert.ok(slowest <= 2000, `every request answered within the bound (slowest ${slowest.toFixed(0)} ms)`);
    assert.equal(readable, 200, `${readable}/200 sessions readable after failover`);
  });
});
