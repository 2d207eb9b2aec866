/**
 * Write coalescing: the commands of requests running in one event-loop turn leave in one socket
 * write, and Redis reads them in one go. The commands themselves, their order and the one-command
 * contract are unchanged (MONITOR). Requests are started through Koa's own callback, all in one
 * synchronous loop, so "one turn" is exact rather than a matter of network timing.
 */
import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import Koa from 'koa';
import { Redis } from 'ioredis';
import { koaRedisSession } from '../src/index.js';
import { KEYS } from './helpers/app.js';
import { signedCookie, useRedis } from './helpers/fixture.js';
import { inProcess, type InProcessResponse } from './helpers/in-process.js';

const f = useRedis();
// Closed after each test, passed or failed: an open client would keep the file from exiting.
const opened: Array<{ close(): Promise<void> }> = [];
afterEach(async () => {
  await Promise.all(opened.splice(0).map((m) => m.close()));
});

/** Redis' count of socket reads (INFO stats), minus our own INFO. One write of many commands may
 *  still take Redis two reads (it counted 2 for a single 20-chunk writev on loopback); without
 *  coalescing it is one read per command. */
async function readsDuring(probe: Redis, fn: () => Promise<unknown>): Promise<number> {
  const reads = async () => Number(/total_reads_processed:(\d+)/.exec(await probe.info('stats'))?.[1]);
  const before = await reads();
  await fn();
  return (await reads()) - before - 1;
}

/** Commands per socket write on this client from now on (Node's `_writev` gets corked chunks). */
function countWrites(client: Redis): number[] {
  const counts: number[] = [];
  const stream = client.stream as unknown as { _write: (...a: unknown[]) => unknown; _writev: (chunks: unknown[], cb: unknown) => unknown };
  const write = stream._write.bind(stream);
  const writev = stream._writev.bind(stream);
  stream._write = (...a) => (counts.push(1), write(...a));
  stream._writev = (chunks, cb) => (counts.push(chunks.length), writev(chunks, cb));
  return counts;
}

function makeApp(options: Parameters<typeof koaRedisSession>[0]) {
  const app = new Koa();
  app.keys = KEYS;
  const session = koaRedisSession(options);
  opened.push(session);
  app.use(session);
  app.use((ctx) => {
    if (ctx.path === '/write') ctx.session.n = ((ctx.session.n as number | undefined) ?? 0) + 1;
    ctx.body = String(ctx.session.n ?? 'none');
  });
  return { call: inProcess(app), session };
}

async function seed(n: number): Promise<string[]> {
  const cookies: string[] = [];
  for (let i = 0; i < n; i++) {
    const cookie = signedCookie();
    const id = cookie.slice(cookie.indexOf('=') + 1, cookie.lastIndexOf('.'));
    await f.redis.hset(`sess:${id}`, 'c', 1, 'v', 1, 't', 1200, 'x', Math.floor(Date.now() / 1000) + 1200, ':n', 0);
    await f.redis.expire(`sess:${id}`, 1200);
    cookies.push(cookie);
  }
  return cookies;
}

describe('write coalescing', () => {
  it('20 concurrent reads: 20 loads on the wire, carried by one socket write', async (t) => {
    const { call, session } = makeApp({ redis: f.server.url });
    await session.redis.ping(); // connected, the scripts' first EVAL aside
    const cookies = await seed(20);
    await call('/read', cookies[0]); // each script is sent by EVAL once per connection
    const probe = new Redis(f.server.url);
    t.after(() => probe.disconnect());
    await probe.ping();
    const writes = countWrites(session.redis as Redis);
    let responses: InProcessResponse[] = [];
    const { wire } = await f.monitor.request(async () => {
      const reads = await readsDuring(probe, async () => {
        responses = await Promise.all(cookies.map((c) => call('/read', c)));
      });
      assert.ok(reads <= 2, `${reads} socket reads for 20 commands`);
    });
    assert.deepEqual(writes, [20]);
    assert.deepEqual(responses.map((r) => [r.status, r.body]), cookies.map(() => [200, '0']));
    assert.deepEqual(wire.map((c) => c.op).filter((op) => op !== 'info'), cookies.map(() => 'load'));
  });

  it('20 concurrent writes: loads in one write, then the 20 patches in one write, none lost', async (t) => {
    const { call, session } = makeApp({ redis: f.server.url });
    await session.redis.ping();
    const cookies = await seed(20);
    await call('/write', cookies[0]);
    const probe = new Redis(f.server.url);
    t.after(() => probe.disconnect());
    await probe.ping();
    const writes = countWrites(session.redis as Redis);
    const { wire } = await f.monitor.request(async () => {
      const reads = await readsDuring(probe, async () => {
        const responses = await Promise.all(cookies.map((c) => call('/write', c)));
        assert.deepEqual(responses.map((r) => r.body), cookies.map((_, i) => (i === 0 ? '2' : '1')));
      });
      assert.ok(reads <= 4, `${reads} socket reads for 40 commands`);
    });
    assert.deepEqual(writes, [20, 20]);
    assert.equal(wire.filter((c) => c.op === 'load').length, 20);
    assert.equal(wire.filter((c) => c.op === 'patch').length, 20);
  });

  it('a client passed in keeps working for its owner, in the same turn as session commands', async (t) => {
    const client = new Redis(f.server.url);
    t.after(() => client.disconnect());
    const { call } = makeApp({ redis: client });
    const cookies = await seed(5);
    const [responses, own] = await Promise.all([Promise.all(cookies.map((c) => call('/write', c))), Promise.all([client.set('app:key', 'v'), client.get('app:key')])]);
    assert.deepEqual(own, ['OK', 'v']);
    assert.deepEqual(responses.map((r) => [r.status, r.body]), cookies.map(() => [200, '1']));
  });

  it('new sessions made in one turn are created in one write, each with its own cookie', async (t) => {
    const { call, session } = makeApp({ redis: f.server.url });
    await session.redis.ping();
    await call('/write');
    const probe = new Redis(f.server.url);
    t.after(() => probe.disconnect());
    await probe.ping();
    const writes = countWrites(session.redis as Redis);
    let responses: InProcessResponse[] = [];
    const reads = await readsDuring(probe, async () => {
      responses = await Promise.all(Array.from({ length: 10 }, () => call('/write')));
    });
    assert.ok(reads <= 2, `${reads} socket reads for 10 commands`);
    assert.deepEqual(writes, [10]);
    assert.deepEqual(responses.map((r) => r.status), responses.map(() => 200));
    const ids = new Set(responses.map((r) => r.setCookie[0]?.split(';')[0]));
    assert.equal(ids.size, 10);
  });
});
