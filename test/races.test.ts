/**
 * Races between requests of one session, as controlled interleavings (no sleeps): every handler
 * waits at a named gate once its session is loaded; the test waits until all of them got there,
 * then releases them one at a time, awaiting each response (sent after that request's write), so
 * the order in which the writes reach Redis is fixed. Each case is repeated, and runs on one
 * private redis-server and on a private 3-master Redis Cluster.
 *
 * Each case asserts the statuses, what each Set-Cookie did (a new id, a clear, or nothing), what
 * Redis holds afterwards (found by scanning every key on every master, so a session stored under
 * any id is seen), and what a later request with each cookie handed out sees. The expected
 * behaviour is the serial one: the requests' writes applied one after the other in landing order,
 * where a write of a session that was logged out or moved to a new id meanwhile is not applied,
 * and a logout ends the session wherever it moved.
 *
 * Run: node --import tsx --test test/races.test.ts
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, afterEach, before, describe, it } from 'node:test';
import Koa from 'koa';
import type { Context } from 'koa';
import { Cluster, Redis } from 'ioredis';
import {
  csrfProtect,
  koaRedisSession,
  type InvalidSessionError,
  type SessionMiddleware,
  type SessionOptions,
} from '../src/index.js';
import { KEYS } from './helpers/app.js';
import { Gates } from './helpers/gates.js';
import { startCluster, type RedisCluster } from './helpers/redis-cluster.js';
import { startRedis, type RedisServer } from './helpers/redis-server.js';

process.on('unhandledRejection', (reason) => {
  throw reason instanceof Error ? reason : new Error(String(reason));
});

/** Repetitions of each case. */
const REPS = 20;
/** Per test: generous, so a hang fails the test instead of the run (the machine is shared). */
const TEST_TIMEOUT = 240_000;
/** Data fields of the stored hash: `:name` → JSON text. */
const DATA_PREFIX = ':';
const BIG = 60_000;

// ---------------------------------------------------------------------------------------------
// Backends

interface Backend {
  readonly name: string;
  readonly cluster: boolean;
  client: Redis | Cluster;
  /** The nodes whose keys make up the whole data set (on Cluster: every master). */
  masters(): Redis[];
}

let server: RedisServer;
let cluster: RedisCluster;
const single: Backend = {
  name: 'one redis-server',
  cluster: false,
  client: undefined as unknown as Redis,
  masters: () => [single.client as Redis],
};
const clustered: Backend = {
  name: 'Redis Cluster (3 masters)',
  cluster: true,
  client: undefined as unknown as Cluster,
  masters: () => (clustered.client as Cluster).nodes('master'),
};

before(async () => {
  server = await startRedis();
  single.client = new Redis(server.url, { maxRetriesPerRequest: 1 });
  cluster = await startCluster(3, 0);
  const c = new Cluster(cluster.startupNodes, { redisOptions: { maxRetriesPerRequest: 1 } });
  c.on('error', () => undefined);
  clustered.client = c;
  await c.ping();
  await Promise.all(c.nodes('master').map((n) => n.ping()));
});

afterEach(async () => {
  await Promise.all([single, clustered].flatMap((b) => (b.client ? b.masters().map((n) => n.flushall()) : [])));
});

after(async () => {
  single.client?.disconnect();
  clustered.client?.disconnect();
  await Promise.all([server?.stop(), cluster?.stop()]);
});

/**
 * Where the session `id` is stored. On Cluster the key carries a hash tag made of the id's first 8
 * characters, so that an id and the ids it is regenerated into share a slot.
 */
function sessionKey(id: string, cluster: boolean): string {
  return cluster ? `sess:{${id.slice(0, 8)}}${id.slice(8)}` : `sess:${id}`;
}

// ---------------------------------------------------------------------------------------------
// What Redis holds

async function allKeys(b: Backend): Promise<string[]> {
  const keys: string[] = [];
  for (const node of b.masters()) {
    let cursor = '0';
    do {
      const [next, batch] = await node.scan(cursor, 'COUNT', 1000);
      cursor = next;
      keys.push(...batch);
    } while (cursor !== '0');
  }
  return keys.sort();
}

interface Stored {
  key: string;
  hash: Record<string, string>;
  data: Record<string, unknown>;
  /** TTL in seconds; -1 none. */
  ttl: number;
}

function dataOf(hash: Record<string, string>): Record<string, unknown> {
  const data: Record<string, unknown> = {};
  for (const [field, value] of Object.entries(hash)) {
    if (field.startsWith(DATA_PREFIX)) data[field.slice(DATA_PREFIX.length)] = JSON.parse(value);
  }
  return data;
}

/** Every key, on any master, whose data fields hold `needle` (a per-repetition marker). A "moved"
 *  marker hash (only a field `m`) has no data fields and never counts. */
async function holding(b: Backend, needle: string): Promise<Stored[]> {
  const found: Stored[] = [];
  for (const node of b.masters()) {
    let cursor = '0';
    do {
      const [next, keys] = await node.scan(cursor, 'COUNT', 1000);
      cursor = next;
      for (const key of keys) {
        if ((await node.type(key)) !== 'hash') continue;
        const hash = await node.hgetall(key);
        if (!Object.entries(hash).some(([f, v]) => f.startsWith(DATA_PREFIX) && v.includes(needle))) continue;
        found.push({ key, hash, data: dataOf(hash), ttl: await node.ttl(key) });
      }
    } while (cursor !== '0');
  }
  return found;
}

async function expectNoneHolding(b: Backend, needle: string, what: string): Promise<void> {
  const found = await holding(b, needle);
  assert.deepEqual(
    found.map((s) => `${s.key} ${JSON.stringify(s.data)}`),
    [],
    `${what}: no key may hold the session's data under any id, found ${found.length}`,
  );
}

/** The one key holding `needle`; it must be the key of `id` (in the layout of this backend). */
async function expectOneHolding(b: Backend, needle: string, id: string, what: string): Promise<Stored> {
  const found = await holding(b, needle);
  assert.equal(found.length, 1, `${what}: exactly one key must hold the session, found ${JSON.stringify(found.map((s) => [s.key, s.data]))}`);
  const stored = found[0] as Stored;
  expectLayout(b, stored.key, id);
  return stored;
}

function expectLayout(b: Backend, key: string, id: string): void {
  const expected = sessionKey(id, b.cluster);
  if (key === expected) return;
  assert.fail(
    b.cluster && key === `sess:${id}`
      ? `the session is stored at ${key}, the key layout without a hash tag; expected ${expected}`
      : `the session is stored at ${key}, not at the key of the id its cookie names (${expected})`,
  );
}

// ---------------------------------------------------------------------------------------------
// The app under test

type Op =
  | ['set', Record<string, unknown>]
  | ['del', string]
  | ['big', string]
  | ['logout']
  | ['regenerate']
  | ['timeout', number]
  | ['flash', string]
  | ['pop']
  | ['csrf']
  | ['throw'];

type CookieEffect = { kind: 'none' } | { kind: 'cleared' } | { kind: 'set'; id: string; header: string } | { kind: 'several'; raw: string[] };

interface Reply {
  tag: string;
  status: number;
  body: string;
  cookie: CookieEffect;
}

interface Seen {
  status: number;
  data: Record<string, unknown>;
  timeout: number | null;
  flash: unknown[];
}

interface Report {
  tag: string;
  err: InvalidSessionError;
}

interface RaceApp {
  gates: Gates;
  reports: Report[];
  errors: Array<{ tag: string; err: unknown }>;
  act(ops: Op[], opts?: { cookie?: string; gate?: string; tag?: string; path?: string }): Promise<Reply>;
  whoami(cookie: string | undefined): Promise<Seen>;
  post(cookie: string, token: string): Promise<Reply>;
  close(): Promise<void>;
}

let tags = 0;
const newTag = (name: string) => `${name}-${++tags}`;

function cookieEffect(res: Response): CookieEffect {
  const ours = res.headers.getSetCookie().filter((c) => c.startsWith('session='));
  if (ours.length === 0) return { kind: 'none' };
  if (ours.length > 1) return { kind: 'several', raw: ours };
  const value = (ours[0] as string).slice('session='.length).split(';')[0] as string;
  if (value === '') return { kind: 'cleared' };
  return { kind: 'set', id: value.slice(0, value.lastIndexOf('.')), header: `session=${value}` };
}

function runOp(ctx: Context, op: Op, out: Record<string, unknown>): void {
  const s = ctx.session;
  switch (op[0]) {
    case 'set':
      for (const [k, v] of Object.entries(op[1])) s[k] = v;
      break;
    case 'del':
      delete s[op[1]];
      break;
    case 'big':
      s[op[1]] = 'x'.repeat(BIG);
      break;
    case 'logout':
      (ctx as unknown as { session: null }).session = null;
      break;
    case 'regenerate':
      s.regenerate();
      break;
    case 'timeout':
      s.adjustTimeout(op[1]);
      break;
    case 'flash':
      s.flash(op[1]);
      break;
    case 'pop':
      out.popped = s.popFlash();
      break;
    case 'csrf':
      out.token = s.getCsrfToken();
      break;
    case 'throw':
      throw new Error('the handler failed after regenerate()');
  }
}

async function startApp(b: Backend, options: SessionOptions = {}, withCsrf = false): Promise<RaceApp> {
  const gates = new Gates();
  const reports: Report[] = [];
  const errors: Array<{ tag: string; err: unknown }> = [];
  const tagOf = (ctx: Context) => String(ctx.query.tag ?? '');
  const app = new Koa();
  app.keys = KEYS;
  app.silent = true;
  app.use(async (ctx, next) => {
    try {
      await next();
    } catch (err) {
      errors.push({ tag: tagOf(ctx), err });
      throw err;
    }
  });
  const session: SessionMiddleware = koaRedisSession({
    redis: b.client,
    commandTimeout: 5000, // a shared machine: no 503 for a slow moment
    ...options,
    onInvalid: (ctx, err) => {
      reports.push({ tag: tagOf(ctx), err });
      options.onInvalid?.(ctx, err);
    },
  });
  app.use(session);
  if (withCsrf) app.use(csrfProtect());
  app.use(async (ctx) => {
    if (ctx.path === '/whoami') {
      ctx.body = { data: { ...ctx.session }, timeout: ctx.session.timeout, flash: ctx.session.peekFlash() };
      return;
    }
    if (ctx.method === 'POST') {
      ctx.body = { transferred: true };
      return;
    }
    const gate = ctx.query.gate;
    if (typeof gate === 'string') await gates.arrive(gate);
    const out: Record<string, unknown> = {};
    for (const op of JSON.parse(String(ctx.query.ops ?? '[]')) as Op[]) runOp(ctx, op, out);
    ctx.body = out;
  });
  const http: Server = createServer(app.callback());
  await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
  const base = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;

  const send = async (path: string, tag: string, init: { cookie?: string; method?: string; headers?: Record<string, string> } = {}): Promise<Reply> => {
    const headers: Record<string, string> = { ...init.headers };
    if (init.cookie) headers.cookie = init.cookie;
    const url = `${base}${path}${path.includes('?') ? '&' : '?'}tag=${encodeURIComponent(tag)}`;
    const res = await fetch(url, { method: init.method ?? 'GET', headers, signal: AbortSignal.timeout(60_000) });
    return { tag, status: res.status, body: await res.text(), cookie: cookieEffect(res) };
  };

  return {
    gates,
    reports,
    errors,
    act: (ops, opts = {}) => {
      const tag = opts.tag ?? opts.gate ?? newTag('req');
      const gate = opts.gate ? `&gate=${encodeURIComponent(opts.gate)}` : '';
      return send(`${opts.path ?? '/act'}?ops=${encodeURIComponent(JSON.stringify(ops))}${gate}`, tag, { cookie: opts.cookie });
    },
    whoami: async (cookie) => {
      const r = await send('/whoami', newTag('whoami'), { cookie });
      assert.equal(r.status, 200, `a later /whoami answers 200 (got ${r.status}: ${r.body})`);
      return { status: r.status, ...(JSON.parse(r.body) as Omit<Seen, 'status'>) };
    },
    post: (cookie, token) => send('/transfer', newTag('post'), { cookie, method: 'POST', headers: { 'x-csrf-token': token } }),
    close: async () => {
      gates.close();
      http.closeAllConnections();
      await new Promise((r) => http.close(r));
      await session.close();
    },
  };
}

async function withApp(b: Backend, options: SessionOptions, fn: (app: RaceApp) => Promise<void>, withCsrf = false): Promise<void> {
  const app = await startApp(b, options, withCsrf);
  try {
    await fn(app);
  } finally {
    await app.close();
  }
}

/** Run `fn` `n` times; a failure names its repetition. */
async function repeat(n: number, fn: (rep: number) => Promise<void>): Promise<void> {
  for (let rep = 0; rep < n; rep++) {
    try {
      await fn(rep);
    } catch (err) {
      if (err instanceof Error) {
        const prefix = `repetition ${rep + 1}/${n}: `;
        if (err.stack) err.stack = err.stack.replace(err.message, prefix + err.message);
        err.message = prefix + err.message;
      }
      throw err;
    }
  }
}

interface Racer {
  name: string;
  ops: Op[];
  cookie: string;
  path?: string;
}

/**
 * Start every racer, wait until each has loaded its session (is at its gate), then release them in
 * `order`, one at a time, each response awaited (its write has landed) before the next release;
 * with `together`, release all at once. Every gate is opened in `finally`.
 */
async function race(app: RaceApp, racers: Racer[], order: string[] | 'together'): Promise<Record<string, Reply> & { arrival: Reply[] }> {
  const gateOf = new Map(racers.map((r) => [r.name, newTag(r.name)]));
  const pending = new Map(racers.map((r) => [r.name, app.act(r.ops, { cookie: r.cookie, gate: gateOf.get(r.name), path: r.path })]));
  try {
    await Promise.all(racers.map((r) => app.gates.reached(gateOf.get(r.name) as string)));
    const replies = { arrival: [] as Reply[] } as Record<string, Reply> & { arrival: Reply[] };
    if (order === 'together') {
      for (const r of racers) app.gates.release(gateOf.get(r.name) as string);
      await Promise.all(
        racers.map(async (r) => {
          const reply = await (pending.get(r.name) as Promise<Reply>);
          replies[r.name] = reply;
          replies.arrival.push(reply);
        }),
      );
      return replies;
    }
    for (const name of order) {
      app.gates.release(gateOf.get(name) as string);
      const reply = await (pending.get(name) as Promise<Reply>);
      replies[name] = reply;
      replies.arrival.push(reply);
    }
    return replies;
  } finally {
    app.gates.releaseAll();
    await Promise.allSettled(pending.values());
  }
}

// ---------------------------------------------------------------------------------------------
// Assertions on responses

function expectStatus(r: Reply, status: number, who: string): void {
  assert.equal(r.status, status, `${who} answers ${status} (got ${r.status}: ${r.body.slice(0, 300)})`);
}

function describeCookie(c: CookieEffect): string {
  return c.kind === 'set' ? `set a new id` : c.kind === 'several' ? `several Set-Cookies ${JSON.stringify(c.raw)}` : c.kind;
}

function expectNoCookie(r: Reply, who: string): void {
  assert.equal(r.cookie.kind, 'none', `${who} must leave the cookie alone (no Set-Cookie), but it ${describeCookie(r.cookie)}`);
}

function expectCleared(r: Reply, who: string): void {
  assert.equal(r.cookie.kind, 'cleared', `${who} must clear the session cookie, but it ${describeCookie(r.cookie)}`);
}

/** The response set a cookie for a new id (not `oldId`); its Cookie header value. */
function expectNewId(r: Reply, oldId: string, who: string): { id: string; header: string } {
  assert.equal(r.cookie.kind, 'set', `${who} must set a cookie with a new id, but it ${describeCookie(r.cookie)}`);
  const c = r.cookie as { id: string; header: string };
  assert.notEqual(c.id, oldId, `${who} must set a NEW id, not the old one`);
  return c;
}

/** A browser's cookie after a response: set, cleared, or left alone. */
function applyCookie(jar: string | undefined, r: Reply): string | undefined {
  if (r.cookie.kind === 'set') return r.cookie.header;
  if (r.cookie.kind === 'cleared') return undefined;
  return jar;
}

function reportsOf(app: RaceApp, tag: string): InvalidSessionError[] {
  return app.reports.filter((r) => r.tag === tag).map((r) => r.err);
}

const marker = (what: string) => `${what}-${randomBytes(8).toString('hex')}`;

/** Log in: a new session holding `data`; its cookie and id. */
async function login(app: RaceApp, data: Record<string, unknown>, extra: Op[] = []): Promise<{ cookie: string; id: string }> {
  const r = await app.act([['set', data], ...extra]);
  expectStatus(r, 200, 'the login');
  assert.equal(r.cookie.kind, 'set', `the login sets the session cookie, but it ${describeCookie(r.cookie)}`);
  const c = r.cookie as { id: string; header: string };
  return { cookie: c.header, id: c.id };
}

const BOTH = [
  ['B', 'A'],
  ['A', 'B'],
] as const;
const orderName = (order: readonly string[]) => `${order[0]}'s write lands first, then ${order[1]}'s`;

// ---------------------------------------------------------------------------------------------
// The cases

for (const b of [single, clustered]) {
  describe(`races on ${b.name}`, { timeout: TEST_TIMEOUT * 20 }, () => {
    describe('1/2. logout (A) vs regenerate() (B), both loaded before either writes: the logout wins', () => {
      for (const order of BOTH) {
        it(orderName(order), { timeout: TEST_TIMEOUT }, async () => {
          await withApp(b, {}, async (app) => {
            await repeat(REPS, async () => {
              const user = marker('user');
              const { cookie, id } = await login(app, { user });
              const r = await race(
                app,
                [
                  { name: 'A', ops: [['logout']], cookie },
                  { name: 'B', ops: [['set', { role: 'admin' }], ['regenerate']], cookie },
                ],
                [...order],
              );
              expectStatus(r.A as Reply, 200, 'A (logout)');
              expectStatus(r.B as Reply, 200, 'B (regenerate)');
              expectCleared(r.A as Reply, 'A (logout)');
              let bCookie: string | undefined;
              if (order[0] === 'B') {
                // B's regenerate landed on a live session: it moved it, and says so.
                bCookie = expectNewId(r.B as Reply, id, 'B (regenerate, landing first)').header;
              } else {
                expectNoCookie(r.B as Reply, 'B (regenerate, landing after the logout: the session is gone)');
              }
              assert.deepEqual((await app.whoami(cookie)).data, {}, 'the old cookie leads to an empty session');
              if (bCookie) {
                assert.deepEqual((await app.whoami(bCookie)).data, {}, "the cookie B's regenerate handed out leads to an empty session: the logout ended the session wherever it moved");
              }
              await expectNoneHolding(b, user, 'after the logout');
            });
          });
        });
      }
    });

    describe('8. logout (A) vs a plain write (B): the logout wins, the write never resurrects the session', () => {
      for (const order of BOTH) {
        it(orderName(order), { timeout: TEST_TIMEOUT }, async () => {
          await withApp(b, {}, async (app) => {
            await repeat(REPS, async () => {
              const user = marker('user');
              const { cookie } = await login(app, { user });
              const r = await race(
                app,
                [
                  { name: 'A', ops: [['logout']], cookie },
                  { name: 'B', ops: [['set', { note: `note ${user}` }]], cookie },
                ],
                [...order],
              );
              expectStatus(r.A as Reply, 200, 'A (logout)');
              expectStatus(r.B as Reply, 200, 'B (plain write)');
              expectCleared(r.A as Reply, 'A (logout)');
              expectNoCookie(r.B as Reply, 'B (plain write)');
              assert.deepEqual((await app.whoami(cookie)).data, {}, 'the cookie leads to an empty session');
              await expectNoneHolding(b, user, 'after the logout');
            });
          });
        });
      }
    });

    describe('9. two concurrent regenerate() calls', () => {
      it("exactly one key holds the data, and the browser's final cookie leads to it", { timeout: TEST_TIMEOUT }, async () => {
        await withApp(b, {}, async (app) => {
          await repeat(REPS, async () => {
            const user = marker('user');
            const { cookie, id } = await login(app, { user });
            const r = await race(
              app,
              [
                { name: 'A', ops: [['regenerate']], cookie },
                { name: 'B', ops: [['regenerate']], cookie },
              ],
              ['A', 'B'],
            );
            expectStatus(r.A as Reply, 200, 'A (regenerate, landing first)');
            expectStatus(r.B as Reply, 200, 'B (regenerate, landing second)');
            expectNewId(r.A as Reply, id, 'A (regenerate, landing first)');
            assert.ok(r.B?.cookie.kind === 'none' || r.B?.cookie.kind === 'set', `B sets a new id or leaves the cookie alone, but it ${describeCookie((r.B as Reply).cookie)}`);
            let jar: string | undefined = cookie;
            for (const reply of r.arrival) jar = applyCookie(jar, reply);
            assert.ok(jar && jar !== cookie, "the browser's final cookie names a new id");
            assert.deepEqual((await app.whoami(jar)).data, { user }, "the browser's final cookie leads to the data");
            assert.deepEqual((await app.whoami(cookie)).data, {}, 'the old id leads to nothing');
            const finalId = jar.slice('session='.length, jar.lastIndexOf('.'));
            await expectOneHolding(b, user, finalId, 'after two regenerates');
          });
        });
      });
    });

    describe('11. regenerate() (A) vs a plain write (B)', () => {
      it("B's write lands first: the new id holds both, the old id leads to nothing", { timeout: TEST_TIMEOUT }, async () => {
        await withApp(b, {}, async (app) => {
          await repeat(REPS, async () => {
            const user = marker('user');
            const x = marker('x');
            const { cookie, id } = await login(app, { user });
            const r = await race(
              app,
              [
                { name: 'A', ops: [['regenerate']], cookie },
                { name: 'B', ops: [['set', { x }]], cookie },
              ],
              ['B', 'A'],
            );
            expectStatus(r.B as Reply, 200, 'B (sets x)');
            expectStatus(r.A as Reply, 200, 'A (regenerate)');
            expectNoCookie(r.B as Reply, 'B (sets x)');
            const fresh = expectNewId(r.A as Reply, id, 'A (regenerate)');
            assert.deepEqual((await app.whoami(fresh.header)).data, { user, x }, 'the new id holds user and x');
            assert.deepEqual((await app.whoami(cookie)).data, {}, 'the old id leads to nothing');
            const stored = await expectOneHolding(b, user, fresh.id, 'after both writes');
            assert.deepEqual(stored.data, { user, x });
          });
        });
      });

      it("A's regenerate lands first: B's write (to the old id) is applied nowhere", { timeout: TEST_TIMEOUT }, async () => {
        await withApp(b, {}, async (app) => {
          await repeat(REPS, async () => {
            const user = marker('user');
            const x = marker('x');
            const { cookie, id } = await login(app, { user });
            const r = await race(
              app,
              [
                { name: 'A', ops: [['regenerate']], cookie },
                { name: 'B', ops: [['set', { x }]], cookie },
              ],
              ['A', 'B'],
            );
            expectStatus(r.A as Reply, 200, 'A (regenerate)');
            expectStatus(r.B as Reply, 200, 'B (sets x on the id A moved away from)');
            const fresh = expectNewId(r.A as Reply, id, 'A (regenerate)');
            expectNoCookie(r.B as Reply, 'B (sets x on the id A moved away from)');
            assert.deepEqual((await app.whoami(cookie)).data, {}, 'the old cookie leads to an empty session');
            assert.deepEqual((await app.whoami(fresh.header)).data, { user }, 'the new cookie leads to user only');
            await expectNoneHolding(b, x, "B's late write");
            const stored = await expectOneHolding(b, user, fresh.id, 'after both writes');
            assert.deepEqual(stored.data, { user });
          });
        });
      });
    });
  });
}
