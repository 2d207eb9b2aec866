/**
 * A lost reply: the connection drops after Redis ran a write script but before its reply arrived,
 * and ioredis sends the script again once reconnected (autoResendUnfulfilledCommands, on by
 * default). Every write must be safe to run twice (docs/design.md, "Faults"): a TCP proxy between
 * the client and a private redis-server forwards the write, lets Redis run it, swallows the reply and
 * cuts the connection. Checked with a client the middleware creates, one passed in with ioredis
 * defaults, and on Redis Cluster (a proxy in front of each master, ioredis' natMap pointing at them).
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createServer, connect, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { Cluster, Redis } from 'ioredis';
import type Koa from 'koa';
import { patchLua, rotateLua } from '../src/store/scripts.generated.js';
import type { SessionOptions } from '../src/index.js';
import { cookieOf, serveSession, type LiveApp } from './helpers/server.js';
import { storedData, useRedis } from './helpers/fixture.js';
import { sessionKey } from './helpers/keys.js';
import { isSession } from './helpers/stored.js';
import { startCluster, type RedisCluster } from './helpers/redis-cluster.js';

const f = useRedis();

const sha = (lua: string) => createHash('sha1').update(lua).digest('hex');

/** A proxy to Redis that, once armed with a script's sha, forwards the next command carrying it,
 *  drops Redis' reply to it and cuts the client's connection. */
class ReplyDropper {
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  /** What marks the command: a script's sha (EVALSHA) and first line (EVAL, the first call on a
   *  connection), or a command name. */
  #armed: string[] | null = null;
  dropped = 0;

  constructor(target: number) {
    this.#server = createServer((client) => {
      const upstream = connect(target, '127.0.0.1');
      this.#sockets.add(client).add(upstream);
      let cutting = false;
      client.on('data', (chunk) => {
        if (this.#armed?.some((mark) => chunk.includes(mark))) {
          this.#armed = null;
          cutting = true;
        }
        upstream.write(chunk);
      });
      upstream.on('data', (chunk) => {
        if (!cutting) {
          client.write(chunk);
          return;
        }
        // Redis ran the script and answered: the answer is lost with the connection.
        this.dropped++;
        client.destroy();
        upstream.destroy();
      });
      const close = () => {
        client.destroy();
        upstream.destroy();
      };
      client.on('error', close).on('close', close);
      upstream.on('error', close).on('close', close);
    });
  }

  async listen(): Promise<number> {
    await new Promise<void>((r) => this.#server.listen(0, '127.0.0.1', r));
    return (this.#server.address() as AddressInfo).port;
  }

  arm(lua: string): void {
    this.#armed = [sha(lua), lua.slice(0, lua.indexOf('\n'))];
  }

  /** Arm with a plain command (a create is `SET … NX`), as RESP spells its name. */
  armCommand(name: string): void {
    this.#armed = [`\r\n${name.toLowerCase()}\r\n`, `\r\n${name.toUpperCase()}\r\n`];
  }

  async close(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    await new Promise((r) => this.#server.close(r));
  }
}

let proxy: ReplyDropper | undefined;
let port = 0;
/** Started in each suite's `before`, once the fixture's redis-server runs. */
async function startProxy(): Promise<void> {
  if (proxy) return;
  proxy = new ReplyDropper(f.server.port);
  port = await proxy.listen();
}
after(async () => {
  await proxy?.close();
});

/** The session keys holding data (markers of regenerates hold none). */
async function sessionsHolding(): Promise<Record<string, Record<string, unknown>>> {
  const out: Record<string, Record<string, unknown>> = {};
  for (const key of await f.redis.keys('sess:*')) {
    if (await isSession(f.redis, key)) out[key] = await storedData(f.redis, key);
  }
  return out;
}

const idOf = (cookie: string) => cookie.slice(cookie.indexOf('=') + 1, cookie.lastIndexOf('.'));

const clients: Array<{
  name: string;
  redis: () => SessionOptions['redis'];
  cleanup: (redis: SessionOptions['redis']) => void;
}> = [
  { name: 'a client the middleware creates', redis: () => `redis://127.0.0.1:${port}`, cleanup: () => undefined },
  {
    name: 'a client passed in with ioredis defaults',
    redis: () => {
      const client = new Redis(port, '127.0.0.1');
      client.on('error', () => undefined);
      return client;
    },
    cleanup: (redis) => (redis as Redis).disconnect(),
  },
];

/** An app on a fresh client of the given kind, both closed whatever the test does. */
async function withApp(
  c: (typeof clients)[number],
  handler: (ctx: Koa.Context) => void,
  fn: (app: LiveApp) => Promise<void>,
): Promise<void> {
  const redis = c.redis();
  try {
    const app = await serveSession({ redis, commandTimeout: 5000 }, handler);
    try {
      await fn(app);
    } finally {
      await app.close();
    }
  } finally {
    c.cleanup(redis);
  }
}

for (const c of clients) {
  describe(`a write whose reply is lost is sent again, and does what it did once (${c.name})`, () => {
    before(startProxy);
    const handler = (ctx: Koa.Context) => {
      if (ctx.path === '/login') ctx.session.user = 'ada';
      else if (ctx.path === '/elevate') {
        ctx.session.regenerate();
        ctx.session.role = 'admin';
      } else if (ctx.path === '/relogin') {
        ctx.session.invalidate();
        ctx.session.user = 'grace';
      } else if (ctx.path === '/flash') ctx.session.flash('saved');
      else if (ctx.path === '/show') ctx.body = JSON.stringify(ctx.session.peekFlash());
      else ctx.body = JSON.stringify({ ...ctx.session });
      ctx.body ??= 'ok';
    };

    it('create: one session, and the cookie leads to it', async () => {
      await withApp(c, handler, async (app) => {
        await (await app.get('/me')).text(); // connected, scripts loaded
        const before = (proxy as ReplyDropper).dropped;
        (proxy as ReplyDropper).armCommand('set');
        const res = await app.get('/login');
        assert.equal((proxy as ReplyDropper).dropped, before + 1, 'the reply was dropped');
        assert.equal(res.status, 200);
        const cookie = cookieOf(res);
        assert.deepEqual(
          await sessionsHolding(),
          { [`sess:${idOf(cookie)}`]: { user: 'ada' } },
          'one key, no second one from a redraw',
        );
        assert.deepEqual(JSON.parse(await (await app.get('/me', cookie)).text()), { user: 'ada' });
      });
    });

    it('regenerate (move): the user stays logged in under the new id, nothing orphaned', async () => {
      await withApp(c, handler, async (app) => {
        const cookie = cookieOf(await app.get('/login'));
        const before = (proxy as ReplyDropper).dropped;
        (proxy as ReplyDropper).arm(rotateLua);
        const res = await app.get('/elevate', cookie);
        assert.equal((proxy as ReplyDropper).dropped, before + 1, 'the reply was dropped');
        assert.equal(res.status, 200);
        const moved = cookieOf(res);
        assert.ok(moved, 'the new cookie is set: the replay answered "moved", not "gone"');
        assert.notEqual(idOf(moved), idOf(cookie));
        assert.deepEqual(await sessionsHolding(), { [`sess:${idOf(moved)}`]: { user: 'ada', role: 'admin' } });
        assert.deepEqual(JSON.parse(await (await app.get('/me', moved)).text()), { user: 'ada', role: 'admin' });
        assert.deepEqual(JSON.parse(await (await app.get('/me', cookie)).text()), {}, 'the old id leads nowhere');
      });
    });

    it('invalidate() then write (replace): one new session, the old one ended', async () => {
      await withApp(c, handler, async (app) => {
        const cookie = cookieOf(await app.get('/login'));
        const before = (proxy as ReplyDropper).dropped;
        (proxy as ReplyDropper).arm(rotateLua);
        const res = await app.get('/relogin', cookie);
        assert.equal((proxy as ReplyDropper).dropped, before + 1, 'the reply was dropped');
        assert.equal(res.status, 200);
        const fresh = cookieOf(res);
        assert.deepEqual(await sessionsHolding(), { [`sess:${idOf(fresh)}`]: { user: 'grace' } });
      });
    });

    it('flash (patch): the message is queued once', async () => {
      await withApp(c, handler, async (app) => {
        const cookie = cookieOf(await app.get('/login'));
        const before = (proxy as ReplyDropper).dropped;
        (proxy as ReplyDropper).arm(patchLua);
        const res = await app.get('/flash', cookie);
        assert.equal((proxy as ReplyDropper).dropped, before + 1, 'the reply was dropped');
        assert.equal(res.status, 200);
        assert.deepEqual(JSON.parse(await (await app.get('/show', cookie)).text()), ['saved']);
      });
    });
  });
}

describe('on Redis Cluster: a regenerate and a flash whose replies are lost', () => {
  let cluster: RedisCluster;
  const proxies = new Map<number, ReplyDropper>();
  let client: Cluster;
  before(async () => {
    cluster = await startCluster(3, 0);
    const natMap: Record<string, { host: string; port: number }> = {};
    for (const port of await cluster.masters()) {
      const dropper = new ReplyDropper(port);
      proxies.set(port, dropper);
      natMap[`127.0.0.1:${port}`] = { host: '127.0.0.1', port: await dropper.listen() };
    }
    client = new Cluster(
      [{ host: '127.0.0.1', port: (natMap[`127.0.0.1:${(await cluster.masters())[0]}`] as { port: number }).port }],
      { natMap },
    );
    client.on('error', () => undefined);
  });
  after(async () => {
    client?.disconnect();
    for (const p of proxies.values()) await p.close();
    await cluster?.stop();
  });

  const dropped = () => [...proxies.values()].reduce((n, p) => n + p.dropped, 0);
  const arm = (lua: string) => {
    for (const p of proxies.values()) p.arm(lua);
  };
  const disarm = () => {
    for (const p of proxies.values()) p.arm('never-sent\n');
  };

  it('the user stays logged in under the new id; the flash is queued once', { timeout: 60_000 }, async () => {
    const app = await serveSession({ redis: client, commandTimeout: 5000 }, (ctx) => {
      if (ctx.path === '/login') ctx.session.user = 'ada';
      else if (ctx.path === '/elevate') ctx.session.regenerate();
      else if (ctx.path === '/flash') ctx.session.flash('saved');
      else if (ctx.path === '/show') ctx.body = JSON.stringify(ctx.session.peekFlash());
      else ctx.body = JSON.stringify({ ...ctx.session });
      ctx.body ??= 'ok';
    });
    try {
      const cookie = cookieOf(await app.get('/login'));
      const before = dropped();
      arm(rotateLua);
      const res = await app.get('/elevate', cookie);
      disarm();
      // At least once (a connection of the cluster client may be cut more than once meanwhile).
      assert.ok(dropped() > before, 'the reply was dropped');
      assert.equal(res.status, 200);
      const moved = cookieOf(res);
      assert.ok(moved, 'the new cookie is set: the replay answered "moved"');
      assert.deepEqual(JSON.parse(await (await app.get('/me', moved)).text()), { user: 'ada' });
      assert.deepEqual(await storedData(client, sessionKey(idOf(moved), true)), { user: 'ada' });
      const beforeFlash = dropped();
      arm(patchLua);
      assert.equal((await app.get('/flash', moved)).status, 200);
      disarm();
      assert.ok(dropped() > beforeFlash, 'the reply was dropped');
      assert.deepEqual(JSON.parse(await (await app.get('/show', moved)).text()), ['saved']);
    } finally {
      await app.close();
    }
  });
});
