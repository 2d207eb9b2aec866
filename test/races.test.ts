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
import { describe, it } from 'node:test';
import Koa from 'koa';
import type { Context } from 'koa';
import fc from 'fast-check';
import {
  csrfProtect,
  koaRedisSession,
  NotInBackendError,
  SessionSizeError,
  type InvalidSessionError,
  type SessionMiddleware,
  type SessionOptions,
} from '../src/index.js';
import { KEYS } from './helpers/app.js';
import { Gates, repeat } from './helpers/gates.js';
import { sizeOf, stored as storedAt } from './helpers/stored.js';
import { type Backend, useBackends } from './helpers/backends.js';
import './helpers/unhandled.js';

/** Repetitions of each case. */
const REPS = 20;
/** Per test: generous, so a hang fails the test instead of the run (the machine is shared). */
const TEST_TIMEOUT = 240_000;
/** Data fields of a stored session's map: `:name` → JSON text. */
const DATA_PREFIX = ':';
const BIG = 60_000;

// ---------------------------------------------------------------------------------------------
// Backends (test/helpers/backends.ts)

const [single, clustered] = useBackends().backends;

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
  /** The stored session as a flat record: header numbers and map fields (test/helpers/stored.ts). */
  record: Record<string, string>;
  data: Record<string, unknown>;
  /** TTL in seconds; -1 none. */
  ttl: number;
}

function dataOf(record: Record<string, string>): Record<string, unknown> {
  const data: Record<string, unknown> = {};
  for (const [field, value] of Object.entries(record)) {
    if (field.startsWith(DATA_PREFIX)) data[field.slice(DATA_PREFIX.length)] = JSON.parse(value);
  }
  return data;
}

/** Every key, on any master, whose data fields hold `needle` (a per-repetition marker). A "moved"
 *  marker a regenerate leaves ({ m, o }) has no data fields and never counts. */
async function holding(b: Backend, needle: string): Promise<Stored[]> {
  const found: Stored[] = [];
  for (const node of b.masters()) {
    let cursor = '0';
    do {
      const [next, keys] = await node.scan(cursor, 'COUNT', 1000);
      cursor = next;
      for (const key of keys) {
        if ((await node.type(key)) !== 'string') continue; // a session is one string (src/store/layout.ts)
        const record = await storedAt(node, key);
        if (!Object.entries(record).some(([f, v]) => f.startsWith(DATA_PREFIX) && v.includes(needle))) continue;
        found.push({ key, record, data: dataOf(record), ttl: await node.ttl(key) });
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
  assert.equal(
    found.length,
    1,
    `${what}: exactly one key must hold the session, found ${JSON.stringify(found.map((s) => [s.key, s.data]))}`,
  );
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

type CookieEffect =
  | { kind: 'none' }
  | { kind: 'cleared' }
  | { kind: 'set'; id: string; header: string }
  | { kind: 'several'; raw: string[] };

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

  const send = async (
    path: string,
    tag: string,
    init: { cookie?: string; method?: string; headers?: Record<string, string> } = {},
  ): Promise<Reply> => {
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
      return send(`${opts.path ?? '/act'}?ops=${encodeURIComponent(JSON.stringify(ops))}${gate}`, tag, {
        cookie: opts.cookie,
      });
    },
    whoami: async (cookie) => {
      const r = await send('/whoami', newTag('whoami'), { cookie });
      assert.equal(r.status, 200, `a later /whoami answers 200 (got ${r.status}: ${r.body})`);
      return { status: r.status, ...(JSON.parse(r.body) as Omit<Seen, 'status'>) };
    },
    post: (cookie, token) =>
      send('/transfer', newTag('post'), { cookie, method: 'POST', headers: { 'x-csrf-token': token } }),
    close: async () => {
      gates.close();
      http.closeAllConnections();
      await new Promise((r) => http.close(r));
      await session.close();
    },
  };
}

async function withApp(
  b: Backend,
  options: SessionOptions,
  fn: (app: RaceApp) => Promise<void>,
  withCsrf = false,
): Promise<void> {
  const app = await startApp(b, options, withCsrf);
  try {
    await fn(app);
  } finally {
    await app.close();
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
async function race(
  app: RaceApp,
  racers: Racer[],
  order: string[] | 'together',
): Promise<Record<string, Reply> & { arrival: Reply[] }> {
  const gateOf = new Map(racers.map((r) => [r.name, newTag(r.name)]));
  const pending = new Map(
    racers.map((r) => [r.name, app.act(r.ops, { cookie: r.cookie, gate: gateOf.get(r.name), path: r.path })]),
  );
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
  return c.kind === 'set'
    ? `set a new id`
    : c.kind === 'several'
      ? `several Set-Cookies ${JSON.stringify(c.raw)}`
      : c.kind;
}

function expectNoCookie(r: Reply, who: string): void {
  assert.equal(
    r.cookie.kind,
    'none',
    `${who} must leave the cookie alone (no Set-Cookie), but it ${describeCookie(r.cookie)}`,
  );
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
async function login(
  app: RaceApp,
  data: Record<string, unknown>,
  extra: Op[] = [],
): Promise<{ cookie: string; id: string }> {
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
                assert.deepEqual(
                  (await app.whoami(bCookie)).data,
                  {},
                  "the cookie B's regenerate handed out leads to an empty session: the logout ended the session wherever it moved",
                );
              }
              await expectNoneHolding(b, user, 'after the logout');
            });
          });
        });
      }
    });

    describe('3. the fixation defence is never skipped silently: a regenerate() whose new cookie cannot be sent is not stored', () => {
      const cases = [
        {
          name: 'the handler throws, with cookieOnException: false',
          options: { cookieOnException: false } satisfies SessionOptions,
          path: '/act',
          ops: [['regenerate'], ['set', { user: 'ada' }], ['throw']] as Op[],
          status: 500,
        },
        {
          name: 'allowCookies(ctx) refuses cookies on this route',
          options: { allowCookies: (ctx: Context) => !ctx.path.startsWith('/cdn') } satisfies SessionOptions,
          path: '/cdn/act',
          ops: [['regenerate'], ['set', { user: 'ada' }]] as Op[],
          status: 200,
        },
      ];
      for (const c of cases) {
        it(c.name, { timeout: TEST_TIMEOUT }, async () => {
          await withApp(b, c.options, async (app) => {
            await repeat(REPS, async () => {
              const tag = marker('tag');
              const { cookie, id } = await login(app, { user: 'anon', tag });
              const keysBefore = await allKeys(b);
              const r = await app.act(c.ops, { cookie, path: c.path });
              expectStatus(r, c.status, 'the regenerating request');
              expectNoCookie(r, 'the regenerating request (its new cookie cannot be sent)');
              assert.deepEqual(
                (await app.whoami(cookie)).data,
                { user: 'anon', tag },
                'the old id still leads to the data as it was (user: anon), not to what the request wrote',
              );
              const stored = await expectOneHolding(b, tag, id, 'after the refused regenerate');
              assert.deepEqual(stored.data, { user: 'anon', tag }, "the old id's stored data is unchanged");
              assert.deepEqual(await allKeys(b), keysBefore, 'no new key exists');
              const why = reportsOf(app, r.tag);
              assert.ok(
                why.some((e) => e instanceof Error && /regenerat/i.test(e.message)),
                `onInvalid must be told that the regenerate was not stored, and why; it got ${JSON.stringify(why.map((e) => `${e.name}: ${e.message}`))}`,
              );
            });
          });
        });
      }
    });

    describe('4. adjustTimeout() vs a concurrent plain write (timeout 1200): the adjusted timeout holds', () => {
      const variants = [
        {
          name: 'adjustTimeout(0) lands, then a write of a request that loaded before it',
          seconds: 0,
          order: ['A', 'B'],
        },
        {
          name: 'adjustTimeout(30) lands, then a write of a request that loaded before it',
          seconds: 30,
          order: ['A', 'B'],
        },
        { name: 'a plain write lands, then adjustTimeout(0)', seconds: 0, order: ['B', 'A'] },
        { name: 'a plain write lands, then adjustTimeout(30)', seconds: 30, order: ['B', 'A'] },
      ];
      for (const v of variants) {
        it(v.name, { timeout: TEST_TIMEOUT }, async () => {
          await withApp(b, { timeout: 1200 }, async (app) => {
            await repeat(REPS, async () => {
              const user = marker('user');
              const { cookie, id } = await login(app, { user });
              const r = await race(
                app,
                [
                  {
                    name: 'A',
                    ops: [
                      ['set', { remember: true }],
                      ['timeout', v.seconds],
                    ],
                    cookie,
                  },
                  { name: 'B', ops: [['set', { cart: ['apple'] }]], cookie },
                ],
                v.order,
              );
              expectStatus(r.A as Reply, 200, `A (adjustTimeout(${v.seconds}))`);
              expectStatus(r.B as Reply, 200, 'B (writes cart)');
              expectNoCookie(r.A as Reply, `A (adjustTimeout(${v.seconds}))`);
              expectNoCookie(r.B as Reply, 'B (writes cart)');
              // Redis first: a later load would itself move the TTL and hide what the writes left.
              const [stored] = await holding(b, user);
              assert.ok(stored, 'the session is still stored');
              assert.deepEqual(
                stored.data,
                { user, remember: true, cart: ['apple'] },
                "both A's data and B's cart are stored",
              );
              if (v.seconds === 0) {
                assert.equal(stored.ttl, -1, `the key must not expire after adjustTimeout(0) (TTL ${stored.ttl})`);
                assert.equal(
                  stored.record.t,
                  undefined,
                  `no stored timeout t after adjustTimeout(0) (t = ${stored.record.t})`,
                );
              } else {
                assert.ok(
                  stored.ttl >= 20 && stored.ttl <= 30,
                  `the key's TTL follows adjustTimeout(30): between 20 and 30 s, got ${stored.ttl}`,
                );
                assert.equal(stored.record.t, '30', 'the stored timeout t is 30');
              }
              await expectOneHolding(b, user, id, 'after both writes');
              const seen = await app.whoami(cookie);
              assert.deepEqual(
                seen.data,
                { user, remember: true, cart: ['apple'] },
                'a later request sees both writes',
              );
              assert.equal(seen.timeout, v.seconds === 0 ? null : 30, 'a later request sees the adjusted timeout');
            });
          });
        });
      }
    });

    describe('5. emptying a session (A deletes its only key) vs a concurrent write (B sets theme)', () => {
      it("B's write lands first, then A's: the session is kept, holding theme", { timeout: TEST_TIMEOUT }, async () => {
        await withApp(b, {}, async (app) => {
          await repeat(REPS, async () => {
            const m = marker('m');
            const { cookie, id } = await login(app, { cart: [m] });
            const r = await race(
              app,
              [
                { name: 'A', ops: [['del', 'cart']], cookie },
                { name: 'B', ops: [['set', { theme: `dark ${m}` }]], cookie },
              ],
              ['B', 'A'],
            );
            expectStatus(r.B as Reply, 200, 'B (sets theme)');
            expectStatus(r.A as Reply, 200, 'A (deletes cart)');
            expectNoCookie(r.B as Reply, 'B (sets theme)');
            expectNoCookie(r.A as Reply, 'A (deletes cart, but the session still holds theme)');
            assert.deepEqual(
              (await app.whoami(cookie)).data,
              { theme: `dark ${m}` },
              'a later request sees the session, holding theme only',
            );
            const stored = await expectOneHolding(b, m, id, 'after both writes');
            assert.deepEqual(stored.data, { theme: `dark ${m}` });
          });
        });
      });

      it("A's write lands first (the session is deleted), then B's: no resurrection", {
        timeout: TEST_TIMEOUT,
      }, async () => {
        await withApp(b, {}, async (app) => {
          await repeat(REPS, async () => {
            const m = marker('m');
            const { cookie } = await login(app, { cart: [m] });
            const r = await race(
              app,
              [
                { name: 'A', ops: [['del', 'cart']], cookie },
                { name: 'B', ops: [['set', { theme: `dark ${m}` }]], cookie },
              ],
              ['A', 'B'],
            );
            expectStatus(r.A as Reply, 200, 'A (empties the session)');
            expectStatus(r.B as Reply, 200, 'B (sets theme on a session deleted meanwhile)');
            expectCleared(r.A as Reply, 'A (empties the session)');
            expectNoCookie(r.B as Reply, 'B (its session is gone)');
            assert.deepEqual((await app.whoami(cookie)).data, {}, 'the cookie leads to an empty session');
            await expectNoneHolding(b, m, "after the emptying and B's late write");
            const why = reportsOf(app, (r.B as Reply).tag);
            assert.ok(
              why.some((e) => e instanceof NotInBackendError),
              `onInvalid gets a NotInBackendError for B; it got ${JSON.stringify(why.map((e) => e.name))}`,
            );
          });
        });
      });
    });

    describe('6. maxSize bounds the session, not each request', () => {
      it('40 concurrent requests each adding a 60 000-character key: one is stored, 39 fail; the session still regenerates, shrinks and logs out', {
        timeout: TEST_TIMEOUT,
      }, async () => {
        await withApp(b, {}, async (app) => {
          await repeat(REPS, async () => {
            const user = marker('user');
            const { cookie, id } = await login(app, { user });
            const racers = Array.from({ length: 40 }, (_, i) => ({
              name: `R${i}`,
              ops: [['big', `k${i}`]] as Op[],
              cookie,
            }));
            const r = await race(app, racers, 'together');
            const statuses = racers.map((x) => (r[x.name] as Reply).status);
            assert.equal(
              statuses.filter((s) => s === 200).length,
              1,
              `exactly one request answers 200; statuses: ${JSON.stringify(statuses)}`,
            );
            assert.equal(
              statuses.filter((s) => s === 500).length,
              39,
              `the other 39 answer 500; statuses: ${JSON.stringify(statuses)}`,
            );
            for (const x of racers) {
              const reply = r[x.name] as Reply;
              expectNoCookie(reply, `request ${x.name}`);
              if (reply.status === 500) {
                const errs = app.errors.filter((e) => e.tag === reply.tag).map((e) => e.err);
                assert.ok(
                  errs.some((e) => e instanceof SessionSizeError),
                  `request ${x.name} failed with a SessionSizeError; got ${String(errs[0])}`,
                );
              }
            }
            const stored = await expectOneHolding(b, user, id, 'after the 40 writes');
            // What maxSize counts: every field of the packed map (entrySize), its `o` aside.
            const size = sizeOf(stored.record);
            assert.ok(size <= 65536, `the stored session stays within maxSize: ${size} bytes`);
            const bigKeys = Object.keys(stored.data).filter((k) => k !== 'user');
            assert.equal(bigKeys.length, 1, `one big key stored, got ${JSON.stringify(bigKeys)}`);
            const big = bigKeys[0] as string;

            const regen = await app.act([['regenerate']], { cookie });
            expectStatus(regen, 200, 'regenerate() of the full session');
            const fresh = expectNewId(regen, id, 'regenerate() of the full session');
            const seen = await app.whoami(fresh.header);
            assert.deepEqual(
              Object.keys(seen.data).sort(),
              [big, 'user'].sort(),
              'the regenerated session keeps its data',
            );
            assert.equal(seen.data.user, user);
            assert.deepEqual((await app.whoami(cookie)).data, {}, 'the old id leads to nothing after the regenerate');

            const shrink = await app.act([['del', big]], { cookie: fresh.header });
            expectStatus(shrink, 200, 'deleting the big key');
            expectNoCookie(shrink, 'deleting the big key');
            assert.deepEqual((await app.whoami(fresh.header)).data, { user });

            const out = await app.act([['logout']], { cookie: fresh.header });
            expectStatus(out, 200, 'the logout');
            expectCleared(out, 'the logout');
            assert.deepEqual((await app.whoami(fresh.header)).data, {});
            await expectNoneHolding(b, user, 'after the logout');
          });
        });
      });

      it('a session over the limit after maxSize was lowered (200 KB → 64 KiB): reads work, growth is refused, a shrink back within the limit and a logout work', {
        timeout: TEST_TIMEOUT,
      }, async () => {
        await withApp(b, { maxSize: 200_000 }, async (large) => {
          await withApp(b, {}, async (app) => {
            await repeat(REPS, async () => {
              const user = marker('user');
              const { cookie, id } = await login(large, { user }, [
                ['big', 'b0'],
                ['big', 'b1'],
              ]);
              const all = ['b0', 'b1', 'user'];
              assert.deepEqual(
                Object.keys((await app.whoami(cookie)).data).sort(),
                all,
                'the 64 KiB app reads the 120 KB session',
              );

              const grow = await app.act([['set', { more: 1 }]], { cookie });
              expectStatus(grow, 500, 'growing a session that is over maxSize');
              expectNoCookie(grow, 'growing a session that is over maxSize');
              assert.deepEqual(
                Object.keys((await app.whoami(cookie)).data).sort(),
                all,
                'the refused growth stored nothing',
              );

              const shrink = await app.act([['del', 'b0']], { cookie });
              expectStatus(shrink, 200, 'deleting one big key (back within maxSize)');
              expectNoCookie(shrink, 'deleting one big key');
              assert.deepEqual(Object.keys((await app.whoami(cookie)).data).sort(), ['b1', 'user']);
              const stored = await expectOneHolding(b, user, id, 'after shrinking');
              assert.deepEqual(Object.keys(stored.data).sort(), ['b1', 'user']);

              const out = await app.act([['logout']], { cookie });
              expectStatus(out, 200, 'the logout');
              expectCleared(out, 'the logout');
              assert.deepEqual((await app.whoami(cookie)).data, {});
              await expectNoneHolding(b, user, 'after the logout');

              // Destroyed straight away while still over the limit.
              const other = marker('user');
              const second = await login(large, { user: other }, [
                ['big', 'b0'],
                ['big', 'b1'],
              ]);
              const out2 = await app.act([['logout']], { cookie: second.cookie });
              expectStatus(out2, 200, 'the logout of a session over maxSize');
              expectCleared(out2, 'the logout of a session over maxSize');
              await expectNoneHolding(b, other, 'after the logout of a session over maxSize');
            });
          });
        });
      });

      it('a session over the limit after maxSize was lowered: a shrink that leaves it still over the limit (180 KB → 120 KB) is accepted', {
        timeout: TEST_TIMEOUT,
      }, async () => {
        await withApp(b, { maxSize: 200_000 }, async (large) => {
          await withApp(b, {}, async (app) => {
            await repeat(REPS, async () => {
              const user = marker('user');
              const { cookie, id } = await login(large, { user }, [
                ['big', 'b0'],
                ['big', 'b1'],
                ['big', 'b2'],
              ]);
              const shrink = await app.act([['del', 'b0']], { cookie });
              expectStatus(shrink, 200, 'deleting one big key (120 KB left: still over maxSize, but smaller)');
              expectNoCookie(shrink, 'deleting one big key');
              assert.deepEqual(Object.keys((await app.whoami(cookie)).data).sort(), ['b1', 'b2', 'user']);
              const stored = await expectOneHolding(b, user, id, 'after shrinking');
              assert.deepEqual(Object.keys(stored.data).sort(), ['b1', 'b2', 'user']);
              const out = await app.act([['logout']], { cookie });
              expectStatus(out, 200, 'the logout');
              expectCleared(out, 'the logout');
              await expectNoneHolding(b, user, 'after the logout');
            });
          });
        });
      });
    });

    describe('7. two concurrent first getCsrfToken() calls', () => {
      it('a later POST carrying either token passes csrfProtect()', { timeout: TEST_TIMEOUT }, async () => {
        await withApp(
          b,
          {},
          async (app) => {
            await repeat(REPS, async () => {
              const user = marker('user');
              const { cookie } = await login(app, { user });
              const r = await race(
                app,
                [
                  { name: 'A', ops: [['csrf']], cookie },
                  { name: 'B', ops: [['csrf']], cookie },
                ],
                ['A', 'B'],
              );
              expectStatus(r.A as Reply, 200, 'A (getCsrfToken)');
              expectStatus(r.B as Reply, 200, 'B (getCsrfToken)');
              expectNoCookie(r.A as Reply, 'A (getCsrfToken)');
              expectNoCookie(r.B as Reply, 'B (getCsrfToken)');
              const tokenA = (JSON.parse((r.A as Reply).body) as { token: string }).token;
              const tokenB = (JSON.parse((r.B as Reply).body) as { token: string }).token;
              const postA = await app.post(cookie, tokenA);
              expectStatus(postA, 200, "a POST carrying A's token");
              const postB = await app.post(cookie, tokenB);
              expectStatus(postB, 200, "a POST carrying B's token");
              assert.deepEqual((await app.whoami(cookie)).data, { user }, 'the session is intact');
            });
          },
          true,
        );
      });
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
      it("exactly one key holds the data, and the browser's final cookie leads to it", {
        timeout: TEST_TIMEOUT,
      }, async () => {
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
            assert.ok(
              r.B?.cookie.kind === 'none' || r.B?.cookie.kind === 'set',
              `B sets a new id or leaves the cookie alone, but it ${describeCookie((r.B as Reply).cookie)}`,
            );
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

    describe('10. flash messages on one queue', () => {
      for (const order of BOTH) {
        it(`flash('a') (A) and flash('b') (B), ${orderName(order)}: a later popFlash() returns both, in landing order`, {
          timeout: TEST_TIMEOUT,
        }, async () => {
          await withApp(b, {}, async (app) => {
            await repeat(REPS, async () => {
              const user = marker('user');
              const { cookie } = await login(app, { user });
              const r = await race(
                app,
                [
                  { name: 'A', ops: [['flash', 'a']], cookie },
                  { name: 'B', ops: [['flash', 'b']], cookie },
                ],
                [...order],
              );
              expectStatus(r.A as Reply, 200, "A (flash('a'))");
              expectStatus(r.B as Reply, 200, "B (flash('b'))");
              expectNoCookie(r.A as Reply, "A (flash('a'))");
              expectNoCookie(r.B as Reply, "B (flash('b'))");
              const pop = await app.act([['pop']], { cookie });
              expectStatus(pop, 200, 'the later popFlash()');
              assert.deepEqual(
                (JSON.parse(pop.body) as { popped: unknown[] }).popped,
                order.map((n) => n.toLowerCase()),
                'popFlash() returns both messages, in the order their writes landed',
              );
              assert.deepEqual((await app.whoami(cookie)).flash, [], 'the queue is empty after the pop');
            });
          });
        });

        it(`popFlash() of ['m1'] (A) and flash('m2') (B), ${orderName(order)}: the queue holds exactly ['m2']`, {
          timeout: TEST_TIMEOUT,
        }, async () => {
          await withApp(b, {}, async (app) => {
            await repeat(REPS, async () => {
              const user = marker('user');
              const { cookie } = await login(app, { user }, [['flash', 'm1']]);
              const r = await race(
                app,
                [
                  { name: 'A', ops: [['pop']], cookie },
                  { name: 'B', ops: [['flash', 'm2']], cookie },
                ],
                [...order],
              );
              expectStatus(r.A as Reply, 200, 'A (popFlash)');
              expectStatus(r.B as Reply, 200, "B (flash('m2'))");
              expectNoCookie(r.A as Reply, 'A (popFlash)');
              expectNoCookie(r.B as Reply, "B (flash('m2'))");
              assert.deepEqual(
                (JSON.parse((r.A as Reply).body) as { popped: unknown[] }).popped,
                ['m1'],
                'A popped what it loaded',
              );
              const seen = await app.whoami(cookie);
              assert.deepEqual(seen.flash, ['m2'], "the queue holds exactly ['m2']: m1 was shown once, m2 not lost");
              assert.deepEqual(seen.data, { user });
            });
          });
        });
      }
    });

    describe('11. regenerate() (A) vs a plain write (B)', () => {
      it("B's write lands first: the new id holds both, the old id leads to nothing", {
        timeout: TEST_TIMEOUT,
      }, async () => {
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

      it("A's regenerate lands first: B's write (to the old id) is applied nowhere", {
        timeout: TEST_TIMEOUT,
      }, async () => {
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

    describe('12. logout (A) vs regenerate() (B), both loaded before either writes, and a request on the old cookie (C) after the move, before the logout lands', () => {
      it("the logout still ends the session where it moved: C's load neither follows nor removes the marker", {
        timeout: TEST_TIMEOUT,
      }, async () => {
        await withApp(b, {}, async (app) => {
          await repeat(REPS, async () => {
            const user = marker('user');
            const { cookie, id } = await login(app, { user });
            const gateA = newTag('A');
            const gateB = newTag('B');
            const pendingA = app.act([['logout']], { cookie, gate: gateA });
            const pendingB = app.act([['regenerate']], { cookie, gate: gateB });
            try {
              await Promise.all([app.gates.reached(gateA), app.gates.reached(gateB)]);
              app.gates.release(gateB);
              const rB = await pendingB;
              expectStatus(rB, 200, 'B (regenerate)');
              const fresh = expectNewId(rB, id, 'B (regenerate)');
              assert.deepEqual((await app.whoami(cookie)).data, {}, 'C: the old cookie leads to an empty session');
              app.gates.release(gateA);
              const rA = await pendingA;
              expectStatus(rA, 200, 'A (logout)');
              expectCleared(rA, 'A (logout)');
              assert.deepEqual(
                (await app.whoami(fresh.header)).data,
                {},
                "the cookie B's regenerate handed out leads to an empty session: the logout followed the move",
              );
              await expectNoneHolding(b, user, 'after the logout');
            } finally {
              app.gates.releaseAll();
              await Promise.allSettled([pendingA, pendingB]);
            }
          });
        });
      });
    });

    describe('property: 2–4 requests with random intents, writes landing in a random order, match their serial application', () => {
      it("the data under the browser's final cookie equals the model", { timeout: TEST_TIMEOUT * 2 }, async () => {
        await withApp(b, { timeout: 1200 }, async (app) => {
          await fc.assert(
            fc.asyncProperty(scenario, async ([intents, order]) => {
              const user = marker('user');
              const preloaded = { user, p0: 'p', p1: 'p', p2: 'p', p3: 'p' };
              const { cookie, id } = await login(app, preloaded);
              const names = intents.map((_, i) => `R${i}`);
              const r = await race(
                app,
                intents.map((intent, i) => ({ name: names[i] as string, ops: opsOf(intent, i), cookie })),
                order.map((i) => names[i] as string),
              );
              for (const name of names) expectStatus(r[name] as Reply, 200, `${name}`);
              const expected = model(preloaded, intents, order);
              let jar: string | undefined = cookie;
              for (const reply of r.arrival) jar = applyCookie(jar, reply);
              const seen = await app.whoami(jar);
              if (expected.alive) {
                assert.deepEqual(
                  seen.data,
                  expected.data,
                  "the browser's final cookie leads to the serially expected data",
                );
                assert.equal(seen.timeout, expected.timeout, 'and the serially expected timeout');
                const finalId = (jar as string).slice('session='.length, (jar as string).lastIndexOf('.'));
                assert.equal(
                  finalId === id,
                  !expected.moved,
                  expected.moved ? 'the final cookie names a new id' : 'the final cookie still names the original id',
                );
                await expectOneHolding(b, user, finalId, 'afterwards');
              } else {
                assert.deepEqual(
                  seen.data,
                  {},
                  "the session was logged out: the browser's final cookie leads to an empty session",
                );
                await expectNoneHolding(b, user, 'after a logout');
              }
            }),
            { numRuns: b.cluster ? 15 : 30 },
          );
        });
      });
    });
  });
}

// ---------------------------------------------------------------------------------------------
// The property's intents and their model

type Intent =
  | { kind: 'set'; key: 'k0' | 'k1' }
  | { kind: 'del'; key: string }
  | { kind: 'logout' }
  | { kind: 'regenerate' }
  | { kind: 'timeout'; n: number };

const intent: fc.Arbitrary<Intent> = fc.oneof(
  fc.record({ kind: fc.constant('set' as const), key: fc.constantFrom('k0' as const, 'k1' as const) }),
  fc.record({ kind: fc.constant('del' as const), key: fc.constantFrom('p0', 'p1', 'p2', 'p3') }),
  fc.constant({ kind: 'logout' as const }),
  fc.constant({ kind: 'regenerate' as const }),
  fc.record({ kind: fc.constant('timeout' as const), n: fc.constantFrom(0, 30, 3600) }),
);

/** Intents, and the order (indices) in which their writes land. */
const scenario: fc.Arbitrary<[Intent[], number[]]> = fc.array(intent, { minLength: 2, maxLength: 4 }).chain((intents) =>
  fc.tuple(
    fc.constant(intents),
    fc.shuffledSubarray(
      intents.map((_, i) => i),
      { minLength: intents.length, maxLength: intents.length },
    ),
  ),
);

/** Request i's value for a `set`: distinct per request, so the last one to land is seen. */
const valueFor = (i: number) => `v${i}`;

function opsOf(x: Intent, i: number): Op[] {
  switch (x.kind) {
    case 'set':
      return [['set', { [x.key]: valueFor(i) }]];
    case 'del':
      return [['del', x.key]];
    case 'logout':
      return [['logout']];
    case 'regenerate':
      return [['regenerate']];
    case 'timeout':
      return [['timeout', x.n]];
  }
}

/**
 * The serial application of the intents in landing order. Every request loaded the original id:
 * its set, delete, adjustTimeout or regenerate applies only while the session still lives under
 * that id (not logged out, not moved); a logout ends the session wherever it moved.
 */
function model(
  preloaded: Record<string, unknown>,
  intents: Intent[],
  order: number[],
): { alive: boolean; moved: boolean; data: Record<string, unknown>; timeout: number | null } {
  const data: Record<string, unknown> = { ...preloaded };
  let alive = true;
  let moved = false;
  let timeout: number | null = 1200;
  for (const i of order) {
    const x = intents[i] as Intent;
    if (x.kind === 'logout') {
      alive = false;
      continue;
    }
    if (!alive || moved) continue;
    if (x.kind === 'set') data[x.key] = valueFor(i);
    else if (x.kind === 'del') delete data[x.key];
    else if (x.kind === 'timeout') timeout = x.n === 0 ? null : x.n;
    else moved = true;
  }
  return { alive, moved, data, timeout };
}
