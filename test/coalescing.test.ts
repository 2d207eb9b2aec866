/**
 * Write coalescing: the commands of requests running in one event-loop turn leave in one socket
 * write (one per node on a Redis Cluster), and Redis reads them in one go. The commands themselves,
 * their order and the one-command contract are unchanged (MONITOR). Requests are started through
 * Koa's own callback, all in one synchronous loop, so "one turn" is exact rather than a matter of
 * network timing. A client that autopipelines is never corked.
 */
import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import Koa from 'koa';
import { Cluster, Redis } from 'ioredis';
import { defaultGenId } from '../src/cookie.js';
import { koaRedisSession } from '../src/index.js';
import { KEYS } from './helpers/app.js';
import { signedCookie, useRedis } from './helpers/fixture.js';
import { inProcess, type InProcessResponse } from './helpers/in-process.js';
import { sessionKey } from './helpers/keys.js';
import { seed as store } from './helpers/stored.js';
import { packSession } from '../src/store/layout.js';
import { MultiMonitor } from './helpers/monitor.js';
import { moveSlot, nodeName, startCluster, type RedisCluster } from './helpers/redis-cluster.js';

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
  const stream = client.stream as unknown as {
    _write: (...a: unknown[]) => unknown;
    _writev: (chunks: unknown[], cb: unknown) => unknown;
  };
  const write = stream._write.bind(stream);
  const writev = stream._writev.bind(stream);
  stream._write = (...a) => (counts.push(1), write(...a));
  stream._writev = (chunks, cb) => (counts.push(chunks.length), writev(chunks, cb));
  return counts;
}

/** How often this client's socket is corked from now on. */
function countCorks(client: Redis): { count: number } {
  const counter = { count: 0 };
  const stream = client.stream;
  const cork = stream.cork.bind(stream);
  stream.cork = () => {
    counter.count++;
    cork();
  };
  return counter;
}

/** Once the turn is over, no socket of these clients is left corked. */
async function assertNothingCorked(clients: Redis[]): Promise<void> {
  await new Promise((resolve) => setImmediate(resolve));
  for (const c of clients)
    assert.equal(c.stream?.writableCorked ?? 0, 0, `${c.options.host}:${c.options.port} left corked`);
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
    await store(f.redis, `sess:${id}`, { c: 1, t: 1200, x: Math.floor(Date.now() / 1000) + 1200, ':n': 0 }, 1200);
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
    assert.deepEqual(
      responses.map((r) => [r.status, r.body]),
      cookies.map(() => [200, '0']),
    );
    assert.deepEqual(
      wire.map((c) => c.op).filter((op) => op !== 'info'),
      cookies.map(() => 'load'),
    );
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
        assert.deepEqual(
          responses.map((r) => r.body),
          cookies.map((_, i) => (i === 0 ? '2' : '1')),
        );
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
    const [responses, own] = await Promise.all([
      Promise.all(cookies.map((c) => call('/write', c))),
      Promise.all([client.set('app:key', 'v'), client.get('app:key')]),
    ]);
    assert.deepEqual(own, ['OK', 'v']);
    assert.deepEqual(
      responses.map((r) => [r.status, r.body]),
      cookies.map(() => [200, '1']),
    );
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
    assert.deepEqual(
      responses.map((r) => r.status),
      responses.map(() => 200),
    );
    const ids = new Set(responses.map((r) => r.setCookie[0]?.split(';')[0]));
    assert.equal(ids.size, 10);
  });

  it('a client that autopipelines (enableAutoPipelining) is never corked: ioredis batches the turn itself', async () => {
    for (const redis of [
      { host: '127.0.0.1', port: f.server.port, enableAutoPipelining: true },
      new Redis(f.server.url, { enableAutoPipelining: true }),
    ]) {
      const { call, session } = makeApp({ redis });
      if (redis instanceof Redis) opened.push({ close: async () => redis.disconnect() });
      await session.redis.ping();
      const cookies = await seed(20);
      await call('/write', cookies[0]);
      const corks = countCorks(session.redis as Redis);
      const writes = countWrites(session.redis as Redis);
      const responses = await Promise.all(cookies.map((c) => call('/write', c)));
      assert.deepEqual(
        responses.map((r) => r.body),
        cookies.map((_, i) => (i === 0 ? '2' : '1')),
      );
      assert.equal(corks.count, 0);
      assert.ok(writes.length <= 4, `autopipelined: ${writes.length} socket writes for 40 commands`);
      await f.redis.flushall();
    }
  });
});

/** Commands per socket write, on each master of a Cluster client from now on, by node. */
function countWritesPerNode(c: Cluster): Map<string, number[]> {
  return new Map(c.nodes('master').map((node) => [nodeName(node), countWrites(node)]));
}

describe('write coalescing on Redis Cluster (3 masters)', () => {
  let cluster: RedisCluster;
  let client: Cluster;

  /** A client of the test's own, disconnected after it (the shared one is closed by `after`). */
  function connectCluster(options: { enableAutoPipelining?: boolean } = {}, closeAfterTest = true): Cluster {
    const c = new Cluster(cluster.startupNodes, { ...options, redisOptions: { maxRetriesPerRequest: 1 } });
    c.on('error', () => undefined);
    if (closeAfterTest) opened.push({ close: async () => c.disconnect() });
    return c;
  }

  /** Connected to every master, so no handshake lands inside a measured turn. */
  async function warm(c: Cluster): Promise<void> {
    await c.ping();
    await Promise.all(c.nodes('master').map((n) => n.ping()));
  }

  /** The master (host:port) a key's slot maps to in this client's slot table. */
  async function masterOf(c: Cluster, key: string): Promise<string> {
    const slot = Number(await c.call('CLUSTER', 'KEYSLOT', key));
    return c.slots[slot]?.[0] as string;
  }

  /** Store `n` sessions (data n = 0), drawing ids until `accept` takes their master: their cookies and keys. */
  async function seedOn(
    c: Cluster,
    n: number,
    accept: (master: string) => boolean,
    id = () => defaultGenId(),
  ): Promise<{ cookies: string[]; keys: string[] }> {
    const cookies: string[] = [];
    const keys: string[] = [];
    while (cookies.length < n) {
      const sid = id();
      const key = sessionKey(sid, true);
      if (!accept(await masterOf(c, key))) continue;
      await store(c, key, { c: 1, t: 1200, x: Math.floor(Date.now() / 1000) + 1200, ':n': 0 }, 1200);
      cookies.push(signedCookie(sid));
      keys.push(key);
    }
    return { cookies, keys };
  }

  before(async () => {
    cluster = await startCluster(3, 0);
    client = connectCluster({}, false);
    await warm(client);
  });
  afterEach(async () => {
    await Promise.all(client.nodes('master').map((n) => n.flushall()));
  });
  after(async () => {
    client?.disconnect();
    await cluster?.stop();
  });

  it('20 concurrent loads of sessions on one node: 20 loads on the wire, carried by one socket write to that node', async () => {
    const { call, session } = makeApp({ redis: client });
    const target = nodeName(client.nodes('master')[0] as Redis);
    const { cookies } = await seedOn(client, 20, (m) => m === target);
    await call('/read', cookies[0]); // each script is sent by EVAL once per connection
    const monitor = await MultiMonitor.start((await cluster.masters()).map((p) => `redis://127.0.0.1:${p}`));
    try {
      const writes = countWritesPerNode(session.redis as Cluster);
      let responses: InProcessResponse[] = [];
      const { wire } = await monitor.request(async () => {
        responses = await Promise.all(cookies.map((c) => call('/read', c)));
      });
      assert.deepEqual(
        Object.fromEntries(writes),
        Object.fromEntries([...writes.keys()].map((k) => [k, k === target ? [20] : []])),
      );
      assert.deepEqual(
        responses.map((r) => [r.status, r.body]),
        cookies.map(() => [200, '0']),
      );
      assert.deepEqual(
        wire.map((c) => c.op),
        cookies.map(() => 'load'),
      );
    } finally {
      await monitor.stop();
    }
    await assertNothingCorked(client.nodes('all'));
  });

  it('30 concurrent reads, then writes, spread over the 3 masters: one socket write per node for the loads, one per node for the patches', async () => {
    const { call } = makeApp({ redis: client });
    const masters = client.nodes('master').map(nodeName);
    const perNode = await Promise.all(masters.map((m) => seedOn(client, 10, (owner) => owner === m)));
    const cookies = perNode.flatMap((p) => p.cookies);
    for (const p of perNode) await call('/write', p.cookies[0]); // the scripts reach every node once
    const writes = countWritesPerNode(client);
    const responses = await Promise.all(cookies.map((c) => call('/write', c)));
    assert.deepEqual(
      responses.map((r) => r.body),
      cookies.map((_, i) => (i % 10 === 0 ? '2' : '1')),
    );
    assert.deepEqual(Object.fromEntries(writes), Object.fromEntries(masters.map((m) => [m, [10, 10]])));
    await assertNothingCorked(client.nodes('all'));
  });

  it('a slot migrated under the client: corked commands follow ASK, then MOVED, and every socket is uncorked', async () => {
    const c = connectCluster();
    await warm(c);
    const { call } = makeApp({ redis: c });
    // 20 sessions in one slot: their ids share the 8 characters that form the hash tag.
    const { cookies, keys } = await seedOn(
      c,
      20,
      () => true,
      () => `AskMoved${defaultGenId().slice(8)}`,
    );
    const slot = Number(await c.call('CLUSTER', 'KEYSLOT', keys[0] as string));
    const move = await moveSlot(c, slot);
    const { source, target } = move;
    await move.begin();
    await move.migrate(keys.slice(0, 10));

    // Half the keys moved: the source answers those with ASK, the rest itself.
    let askings = 0;
    const asking = target.asking.bind(target);
    target.asking = ((...args: Parameters<Redis['asking']>) => (askings++, asking(...args))) as Redis['asking'];
    const asked = await Promise.all(cookies.map((cookie) => call('/read', cookie)));
    assert.deepEqual(
      asked.map((r) => [r.status, r.body]),
      cookies.map(() => [200, '0']),
    );
    assert.ok(askings >= 10, `${askings} ASKING sent to the importing node`);
    await assertNothingCorked(c.nodes('all'));

    await move.migrate(keys.slice(10));
    await move.finish();
    // The slot now belongs to the target; the client's table still names the source: MOVED.
    assert.equal(c.slots[slot]?.[0], nodeName(source));
    const moved = await Promise.all(cookies.map((cookie) => call('/write', cookie)));
    assert.deepEqual(
      moved.map((r) => [r.status, r.body]),
      cookies.map(() => [200, '1']),
    );
    assert.equal(c.slots[slot]?.[0], nodeName(target));
    await assertNothingCorked(c.nodes('all'));
  });

  it('new sessions created in a slot being migrated (ASK), then moved (MOVED): each stored once, on the new owner, byte for byte', async () => {
    // A create's SET … NX goes as one frame of ours (src/store/commands.ts, FramedCommand): ioredis
    // must resend that same frame after ASKING, and to the node MOVED names.
    const c = connectCluster();
    await warm(c);
    const ids = [`CreateAk${defaultGenId().slice(8)}`, `CreateAk${defaultGenId().slice(8)}`];
    const { call } = makeApp({ redis: c, genId: () => ids.shift() as string });
    const slot = Number(await c.call('CLUSTER', 'KEYSLOT', sessionKey(ids[0] as string, true)));
    const move = await moveSlot(c, slot);
    const { source, target } = move;
    const storedOnTarget = async (cookie: string, migrating: boolean): Promise<void> => {
      const key = sessionKey(cookie.slice(cookie.indexOf('=') + 1, cookie.lastIndexOf('.')), true);
      // A migrating source answers ASK for a key it does not hold; the importing node serves it after ASKING.
      // Not on the source: it answers ASK (migrating, the key is not there) or MOVED (moved) for it.
      await assert.rejects(source.exists(key), migrating ? /^ReplyError: ASK / : /^ReplyError: MOVED /);
      // The importing node serves a key of the slot only after ASKING, on the same connection.
      const replies = (await (migrating ? target.pipeline().asking() : target.pipeline())
        .getBuffer(key)
        .exec()) as Array<[unknown, Buffer]>;
      const value = replies.at(-1)?.[1] as Buffer;
      const head = /^2 \w+ \w+ \w+ /.exec(value.toString('latin1'))?.[0] as string;
      assert.ok(value.equals(packSession(head, [':n', '1'], false)), `${key}: the value packSession writes`);
      assert.equal((await call('/read', cookie)).body, '1');
    };
    await move.begin();
    const asked = await call('/write');
    assert.equal(asked.status, 200);
    await storedOnTarget(asked.setCookie[0]?.split(';')[0] as string, true);

    await move.finish();
    assert.equal(c.slots[slot]?.[0], nodeName(source), "the client's table still names the source");
    const moved = await call('/write');
    assert.equal(moved.status, 200);
    await storedOnTarget(moved.setCookie[0]?.split(';')[0] as string, false);
    assert.equal(c.slots[slot]?.[0], nodeName(target));
    await assertNothingCorked(c.nodes('all'));
  });

  it("a node's socket dropped while our commands sit corked in it: every request answered, nothing left corked", async () => {
    const c = connectCluster();
    await warm(c);
    // The loads wait for the reconnect and are sent again: on a loaded machine that may take more
    // than a second or two, and it is not a timeout this test is about.
    const { call } = makeApp({ redis: c, commandTimeout: 10_000 });
    const victim = c.nodes('master')[0] as Redis;
    const { cookies } = await seedOn(c, 20, (m) => m === nodeName(victim));
    await call('/read', cookies[0]);
    const stream = victim.stream;
    const pending = Promise.all(cookies.map((cookie) => call('/read', cookie)));
    // Only microtasks run here, so the turn (and its cork) lasts until the loads are buffered.
    for (let i = 0; i < 1000 && stream.writableLength === 0; i++) await Promise.resolve();
    assert.ok(stream.writableCorked > 0 && stream.writableLength > 0, 'the loads sit in the corked socket');
    stream.destroy();
    const responses = await pending;
    assert.deepEqual(
      responses.map((r) => [r.status, r.body]),
      cookies.map(() => [200, '0']),
    );
    assert.equal(stream.writableCorked, 0);
    await assertNothingCorked(c.nodes('all'));
  });

  it('a Cluster client that is not ready yet: the first requests wait in its queue, are answered, and nothing is left corked', async () => {
    const { cookies } = await seedOn(client, 10, () => true);
    const c = connectCluster(); // not connected: status "wait", then "connecting"
    // The wait for the connection counts against commandTimeout: a loaded machine may take more than
    // the default second to connect to the Cluster, and that is no 503 this test is about.
    const { call } = makeApp({ redis: c, commandTimeout: 10_000 });
    assert.notEqual(c.status, 'ready');
    const responses = await Promise.all([
      ...cookies.map((cookie) => call('/read', cookie)),
      ...Array.from({ length: 10 }, () => call('/write')),
    ]);
    assert.deepEqual(
      responses.map((r) => [r.status, r.body]),
      [...cookies.map(() => [200, '0']), ...cookies.map(() => [200, '1'])],
    );
    await assertNothingCorked(c.nodes('all'));
  });

  it('a Cluster client that autopipelines (enableAutoPipelining) is never corked', async () => {
    const c = connectCluster({ enableAutoPipelining: true });
    await warm(c);
    const { call } = makeApp({ redis: c });
    const masters = c.nodes('master');
    const perNode = await Promise.all(masters.map((m) => seedOn(c, 10, (owner) => owner === nodeName(m))));
    const cookies = perNode.flatMap((p) => p.cookies);
    for (const p of perNode) await call('/write', p.cookies[0]);
    const corks = masters.map(countCorks);
    const responses = await Promise.all(cookies.map((cookie) => call('/write', cookie)));
    assert.deepEqual(
      responses.map((r) => r.body),
      cookies.map((_, i) => (i % 10 === 0 ? '2' : '1')),
    );
    assert.deepEqual(
      corks.map((k) => k.count),
      [0, 0, 0],
    );
  });
});
