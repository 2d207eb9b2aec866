/**
 * Races of a user's sessions (README, "A user's sessions"; docs/design.md, "Concurrency"): revokes
 * against writes in flight, a logout against a login that moves the session into its user's Redis
 * Cluster slot (handoff.lua, then create.lua), and two logins of one session as two users. Controlled
 * interleavings, as in test/races.test.ts: every handler waits at a named gate once its session is
 * loaded (test/helpers/gates.ts), and where a request sends two commands (a handoff and its create,
 * a logout and its tombstone) each command can be held at a gate of its own, so every order of the
 * commands themselves is run. No sleeps. Each case is repeated REPS times, on one private
 * redis-server and on a private 3-master Redis Cluster.
 *
 * After each race the test scans every key on every master and checks what the indexes and the
 * sessions say of each other (an index entry names a session indexed there under that handle, a
 * session holding the user key is named by its user's index), and that `sessions.list()` agrees.
 *
 * Then hostile input: odd user key values, odd prefixes, odd `sessionInfo`, LRU mode and
 * `absoluteTimeout`.
 *
 * Run: node --import tsx --test test/users-races.test.ts
 */
import assert from 'node:assert/strict';
import { AsyncLocalStorage } from 'node:async_hooks';
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import calculateSlot from 'cluster-key-slot';
import Koa from 'koa';
import type { Context } from 'koa';
import type { Cluster } from 'ioredis';
import {
  koaRedisSession,
  type InvalidSessionError,
  type SessionMiddleware,
  type SessionOptions,
} from '../src/index.js';
import { readMap, unpackSession } from '../src/store/layout.js';
import { KEYS } from './helpers/app.js';
import { Gates, repeat } from './helpers/gates.js';
import { type Backend, useBackends } from './helpers/backends.js';
import './helpers/unhandled.js';

/** Repetitions of each race. */
const REPS = 20;
/** Per test: generous, so a hang fails the test instead of the run (the machine is shared). */
const TEST_TIMEOUT = 240_000;
const PREFIX = 'sess:';

// ---------------------------------------------------------------------------------------------
// Backends (test/helpers/backends.ts)

const [single, clustered] = useBackends().backends;

// ---------------------------------------------------------------------------------------------
// Keys, as the store names them (src/store/commands.ts)

function sessionKey(b: Backend, id: string, prefix = PREFIX): string {
  return b.cluster ? `${prefix}{${id.slice(0, 8)}}${id.slice(8)}` : prefix + id;
}

/** The index key of a user, from the user key's value as stored (its JSON text). */
function indexKey(b: Backend, text: string, prefix = PREFIX): string {
  const hash = createHash('sha256').update(text).digest('base64url').slice(0, 27);
  return b.cluster ? `${prefix}user:{${hash.slice(0, 8)}}${hash.slice(8)}` : `${prefix}user:${hash}`;
}

// ---------------------------------------------------------------------------------------------
// What Redis holds

interface Snapshot {
  /** Sessions by key: header numbers (`c`, `t`, `x`), the index key `u`, and every map field. */
  sessions: Map<string, Record<string, string>>;
  /** Markers a move left: key → the key it leads to (and `x` for a move into another slot). */
  markers: Map<string, { m: string; x?: string }>;
  tombstones: string[];
  /** User indexes: key → { handle: session key }. */
  indexes: Map<string, Record<string, string>>;
  /** Anything else (what no script writes). */
  other: string[];
  /** TTL of every key, seconds (-1: none). */
  ttl: Map<string, number>;
}

async function snapshot(b: Backend): Promise<Snapshot> {
  const snap: Snapshot = {
    sessions: new Map(),
    markers: new Map(),
    tombstones: [],
    indexes: new Map(),
    other: [],
    ttl: new Map(),
  };
  for (const node of b.masters()) {
    let cursor = '0';
    do {
      const [next, keys] = await node.scan(cursor, 'COUNT', 1000);
      cursor = next;
      for (const key of keys) {
        snap.ttl.set(key, await node.ttl(key));
        const type = await node.type(key);
        if (type === 'hash') {
          snap.indexes.set(key, await node.hgetall(key));
          continue;
        }
        if (type !== 'string') {
          snap.other.push(`${key} (${type})`);
          continue;
        }
        const value = (await node.getBuffer(key)) as Buffer;
        if (value.toString('latin1') === 'e ') {
          snap.tombstones.push(key);
          continue;
        }
        if (value.subarray(0, 2).toString('latin1') === 'm ') {
          const fields = readMap(value, 2);
          const map: Record<string, string> = {};
          for (let i = 0; i + 1 < fields.length; i += 2) map[fields[i] as string] = fields[i + 1] as string;
          snap.markers.set(key, { m: map.m as string, ...(map.x ? { x: map.x } : {}) });
          continue;
        }
        try {
          const s = unpackSession(value);
          const record: Record<string, string> = { c: String(s.created) };
          if (s.timeout !== null) record.t = String(s.timeout);
          if (s.expires !== null) record.x = String(s.expires);
          if (s.index !== null) record.u = s.index;
          for (let i = 0; i + 1 < s.fields.length; i += 2) record[s.fields[i] as string] = s.fields[i + 1] as string;
          snap.sessions.set(key, record);
        } catch {
          snap.other.push(`${key} (undecodable)`);
        }
      }
    } while (cursor !== '0');
  }
  return snap;
}

function describeSnapshot(snap: Snapshot): string {
  return JSON.stringify(
    {
      sessions: [...snap.sessions],
      markers: [...snap.markers],
      tombstones: snap.tombstones,
      indexes: [...snap.indexes],
      other: snap.other,
    },
    null,
    1,
  );
}

/**
 * The indexes and the sessions agree: a session holding the user key is in its user's index (named
 * by its header, under its handle), a session in an index holds that user, and every index entry
 * names such a session. Nothing but sessions, markers, tombstones and indexes is stored.
 */
function expectConsistent(b: Backend, snap: Snapshot, what: string, prefix = PREFIX): void {
  const problems: string[] = [];
  for (const [key, s] of snap.sessions) {
    const user = s[':userId'];
    if (user === undefined) {
      if (s.u !== undefined) problems.push(`${key} holds no user but is indexed in ${s.u}`);
      continue;
    }
    const ix = indexKey(b, user, prefix);
    if (s.u !== ix) problems.push(`${key} holds user ${user} but its header names index ${s.u}, not ${ix}`);
    if (!s.h) problems.push(`${key} holds user ${user} but has no handle`);
    else if (snap.indexes.get(ix)?.[s.h] !== key)
      problems.push(`${key} (user ${user}, handle ${s.h}) is not named by its index ${ix}`);
  }
  for (const [ix, entries] of snap.indexes) {
    for (const [handle, key] of Object.entries(entries)) {
      const s = snap.sessions.get(key);
      if (!s) problems.push(`index ${ix} names ${handle} → ${key}, where no session is`);
      else if (s.u !== ix || s.h !== handle)
        problems.push(`index ${ix} names ${handle} → ${key}, a session of index ${s.u} with handle ${s.h}`);
    }
  }
  for (const [key, { m }] of snap.markers) {
    if (b.cluster && !snap.markers.get(key)?.x && calculateSlot(key) !== calculateSlot(m))
      problems.push(`marker ${key} leads to ${m} in another slot without saying so (x)`);
  }
  if (snap.other.length > 0) problems.push(`foreign keys: ${snap.other.join(', ')}`);
  assert.deepEqual(problems, [], `${what}: the indexes and the sessions must agree\n${describeSnapshot(snap)}`);
}

/** The keys of sessions whose data holds `needle`. */
function holding(snap: Snapshot, needle: string): string[] {
  const keys: string[] = [];
  for (const [key, s] of snap.sessions) {
    if (Object.entries(s).some(([f, v]) => f.startsWith(':') && v.includes(needle))) keys.push(key);
  }
  return keys;
}

/** After a logout or revoke: no session holds `needle`, and no marker leads to a session. */
function expectGone(snap: Snapshot, needle: string, what: string): void {
  assert.deepEqual(holding(snap, needle), [], `${what}: no key may hold the session's data under any id`);
  for (const [key, { m }] of snap.markers) {
    assert.ok(!snap.sessions.has(m), `${what}: the marker ${key} still leads to a session (${m})`);
  }
}

// ---------------------------------------------------------------------------------------------
// The app under test

type Op =
  | ['set', Record<string, unknown>]
  | ['del', string]
  | ['logout']
  | ['regenerate']
  /** s.userId = user: a login in place (on Cluster the session moves into its user's slot) */
  | ['login', unknown]
  /** s.userId.<key> = value: the user key's value mutated in place */
  | ['nested', string, unknown]
  /** s.userId = a value JSON cannot carry in a query (SPECIAL_USERS) */
  | ['special', string];

/** User key values that are no JSON, built alike by the app and the test. */
const SPECIAL_USERS: Record<string, () => unknown> = {
  date: () => new Date(0),
  map: () => new Map<unknown, unknown>([['org', 1]]),
  bigint: () => 12345678901234567890n,
  nan: () => Number.NaN,
  negativeZero: () => -0,
};

type CookieEffect = { kind: 'none' } | { kind: 'cleared' } | { kind: 'set'; id: string; header: string };

interface Reply {
  tag: string;
  status: number;
  body: string;
  cookie: CookieEffect;
}

/** A command of the store that a test can hold at a gate: a handoff's two halves, a logout's two. */
type Label = 'handoff' | 'create' | 'end' | 'tombstone' | 'patch' | 'rotate';

interface RaceApp {
  session: SessionMiddleware;
  gates: Gates;
  reports: Array<{ tag: string; err: InvalidSessionError }>;
  errors: Array<{ tag: string; err: unknown }>;
  /** Hold the next command `label` of the request tagged `tag` at the gate `${tag}:${label}`; once it
   *  answered, `${tag}:${label}:done` is reached. */
  hold(tag: string, label: Label): void;
  /** Every command each request sent, by its tag. */
  sent: Map<string, Label[]>;
  act(ops: Op[], opts?: { cookie?: string; gate?: string; tag?: string; agent?: string }): Promise<Reply>;
  whoami(cookie: string | undefined): Promise<{ data: Record<string, unknown>; handle: string | null; reply: Reply }>;
  close(): Promise<void>;
}

let tags = 0;
const newTag = (name: string) => `${name}-${++tags}`;
const marker = (what: string) => `${what}-${randomBytes(8).toString('hex')}`;

function cookieEffect(res: Response): CookieEffect {
  const ours = res.headers.getSetCookie().filter((c) => c.startsWith('session='));
  if (ours.length === 0) return { kind: 'none' };
  assert.equal(ours.length, 1, `one Set-Cookie for the session at most: ${JSON.stringify(ours)}`);
  const value = (ours[0] as string).slice('session='.length).split(';')[0] as string;
  if (value === '') return { kind: 'cleared' };
  return { kind: 'set', id: value.slice(0, value.lastIndexOf('.')), header: `session=${value}` };
}

function runOp(ctx: Context, op: Op): void {
  const s = ctx.session;
  switch (op[0]) {
    case 'set':
      for (const [k, v] of Object.entries(op[1])) s[k] = v;
      break;
    case 'del':
      delete s[op[1]];
      break;
    case 'logout':
      s.invalidate();
      break;
    case 'regenerate':
      s.regenerate();
      break;
    case 'login':
      s.userId = op[1];
      break;
    case 'nested':
      (s.userId as Record<string, unknown>)[op[1]] = op[2];
      break;
    case 'special':
      s.userId = (SPECIAL_USERS[op[1]] as () => unknown)();
      break;
  }
}

/** The store's script methods on the client, by the label a test holds them under. */
const SCRIPT_METHODS: Record<string, (args: unknown[]) => Label> = {
  ksmHandoffV1Buffer: () => 'handoff',
  ksmCreateV1: () => 'create',
  ksmEndV3: (args) => (args[1] === 'tombstone' ? 'tombstone' : 'end'),
  ksmPatchV5: () => 'patch',
  ksmRotateV5: () => 'rotate',
};

async function startApp(b: Backend, options: SessionOptions = {}): Promise<RaceApp> {
  const gates = new Gates();
  const reports: RaceApp['reports'] = [];
  const errors: RaceApp['errors'] = [];
  const held = new Set<string>();
  const sent = new Map<string, Label[]>();
  const request = new AsyncLocalStorage<string>();
  const tagOf = (ctx: Context) => String(ctx.query.tag ?? '');
  const app = new Koa();
  app.keys = KEYS;
  app.silent = true;
  app.use(async (ctx, next) => {
    try {
      await request.run(tagOf(ctx), next);
    } catch (err) {
      errors.push({ tag: tagOf(ctx), err });
      throw err;
    }
  });
  const session: SessionMiddleware = koaRedisSession({
    redis: b.client,
    prefix: PREFIX,
    userKey: 'userId',
    commandTimeout: 60_000, // a command held at a gate is not a timeout
    ...options,
    onInvalid: (ctx, err) => {
      reports.push({ tag: tagOf(ctx), err });
    },
  });
  // The store defined its scripts on the client (ioredis defineCommand): wrap them, so that a test
  // can hold one request's command at a gate. The next app's store defines them afresh.
  const client = b.client as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>;
  const originals = new Map<string, (...args: unknown[]) => Promise<unknown>>();
  for (const [method, label] of Object.entries(SCRIPT_METHODS)) {
    const original = client[method] as (...args: unknown[]) => Promise<unknown>;
    originals.set(method, original);
    client[method] = async (...args: unknown[]) => {
      const tag = request.getStore();
      const name = `${tag}:${label(args)}`;
      if (tag !== undefined) sent.set(tag, [...(sent.get(tag) ?? []), label(args)]);
      if (!held.delete(name)) return original.apply(b.client, args);
      await gates.arrive(name);
      try {
        return await original.apply(b.client, args);
      } finally {
        void gates.arrive(`${name}:done`);
      }
    };
  }
  app.use(session);
  app.use(async (ctx) => {
    if (ctx.path === '/whoami') {
      // A bigint user key is no JSON: written as text.
      const replacer = (_: string, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v);
      ctx.type = 'json';
      ctx.body = JSON.stringify({ data: { ...ctx.session }, handle: ctx.session.handle }, replacer);
      return;
    }
    const gate = ctx.query.gate;
    if (typeof gate === 'string') await gates.arrive(gate);
    const ops = JSON.parse(String(ctx.query.ops ?? '[]')) as Op[];
    for (const op of ops) runOp(ctx, op);
    ctx.body = { handle: ops.some((op) => op[0] === 'logout') ? null : ctx.session.handle };
  });
  const http: Server = createServer(app.callback());
  await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
  const base = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;

  const send = async (path: string, tag: string, cookie?: string, agent?: string): Promise<Reply> => {
    const headers: Record<string, string> = {};
    if (cookie) headers.cookie = cookie;
    if (agent) headers['user-agent'] = agent;
    const url = `${base}${path}${path.includes('?') ? '&' : '?'}tag=${encodeURIComponent(tag)}`;
    const res = await fetch(url, { headers, signal: AbortSignal.timeout(60_000) });
    return { tag, status: res.status, body: await res.text(), cookie: cookieEffect(res) };
  };

  return {
    session,
    gates,
    reports,
    errors,
    sent,
    hold: (tag, label) => void held.add(`${tag}:${label}`),
    act: (ops, opts = {}) => {
      const tag = opts.tag ?? newTag('req');
      const gate = opts.gate ? `&gate=${encodeURIComponent(opts.gate)}` : '';
      return send(`/act?ops=${encodeURIComponent(JSON.stringify(ops))}${gate}`, tag, opts.cookie, opts.agent);
    },
    whoami: async (cookie) => {
      const reply = await send('/whoami', newTag('whoami'), cookie);
      assert.equal(reply.status, 200, `a later /whoami answers 200 (got ${reply.status}: ${reply.body})`);
      const { data, handle } = JSON.parse(reply.body) as { data: Record<string, unknown>; handle: string | null };
      return { data, handle, reply };
    },
    close: async () => {
      gates.close();
      for (const [method, original] of originals) client[method] = original;
      http.closeAllConnections();
      await new Promise((r) => http.close(r));
      await session.close();
    },
  };
}

async function withApp(b: Backend, options: SessionOptions, fn: (app: RaceApp) => Promise<void>): Promise<void> {
  const app = await startApp(b, options);
  try {
    await fn(app);
  } finally {
    await app.close();
  }
}

function expectStatus(r: Reply, status: number, who: string): void {
  assert.equal(r.status, status, `${who} answers ${status} (got ${r.status}: ${r.body.slice(0, 300)})`);
}

function expectNoCookie(r: Reply, who: string): void {
  assert.equal(r.cookie.kind, 'none', `${who} must leave the cookie alone, but it did: ${r.cookie.kind}`);
}

function expectNewCookie(r: Reply, who: string): { id: string; header: string } {
  assert.equal(r.cookie.kind, 'set', `${who} must set a cookie, but it did: ${r.cookie.kind}`);
  return r.cookie as { id: string; header: string };
}

/** A session holding `data` (stored at once): its cookie, id and handle. */
async function logIn(app: RaceApp, data: Record<string, unknown>, agent?: string) {
  const r = await app.act([['set', data]], { agent });
  expectStatus(r, 200, 'the login');
  const { id, header } = expectNewCookie(r, 'the login');
  return { cookie: header, id, handle: (JSON.parse(r.body) as { handle: string | null }).handle };
}

/** An anonymous session (no user key) whose id, on Cluster, is outside `user`'s slot, so that giving
 *  it that user moves it (a handoff). */
async function anonymous(b: Backend, app: RaceApp, data: Record<string, unknown>, users: unknown[]) {
  for (let tries = 0; tries < 20; tries++) {
    const s = await logIn(app, data);
    const slot = calculateSlot(sessionKey(b, s.id));
    if (!b.cluster || users.every((u) => calculateSlot(indexKey(b, JSON.stringify(u))) !== slot)) return s;
  }
  throw new Error(`no session outside the slots of ${JSON.stringify(users)}: pick other users`);
}

/** `list()` agrees with what is stored: the handles of the live sessions holding `user`. */
async function expectListed(b: Backend, app: RaceApp, user: unknown, what: string): Promise<string[]> {
  const snap = await snapshot(b);
  const stored = [...snap.sessions.values()]
    .filter((s) => s[':userId'] === JSON.stringify(user))
    .map((s) => s.h as string)
    .sort();
  const listed = (await app.session.sessions.list(user)).map((s) => s.handle).sort();
  assert.deepEqual(listed, stored, `${what}: list(${JSON.stringify(user)}) shows exactly the stored sessions`);
  return listed;
}

interface Racer {
  name: string;
  ops: Op[];
  cookie?: string;
}

/**
 * Start every racer and wait until each has loaded its session (is at its handler's gate); then
 * run `steps` in order. A step is a racer's name (release its handler, await its response: its
 * write has landed), `name:label` (release that racer's held command, await its answer: `hold` it
 * first, in `holds`), or a function (run between two steps, e.g. a revoke). Every gate is opened in
 * `finally`; the responses are awaited.
 */
async function race(
  app: RaceApp,
  racers: Racer[],
  steps: Array<string | (() => Promise<void>)>,
  holds: Array<[string, Label]> = [],
): Promise<Record<string, Reply>> {
  const tagOf = new Map(racers.map((r) => [r.name, newTag(r.name)]));
  const tag = (name: string) => tagOf.get(name) as string;
  for (const [name, label] of holds) app.hold(tag(name), label);
  const pending = new Map(
    racers.map((r) => [r.name, app.act(r.ops, { cookie: r.cookie, gate: tag(r.name), tag: tag(r.name) })]),
  );
  const replies: Record<string, Reply> = {};
  try {
    await Promise.all(racers.map((r) => app.gates.reached(tag(r.name))));
    // With commands held, every handler goes on at once: each stops at its first held command.
    if (holds.length > 0) for (const r of racers) app.gates.release(tag(r.name));
    for (const step of steps) {
      if (typeof step === 'function') {
        await step();
        continue;
      }
      const [name, label] = step.split(':') as [string, string | undefined];
      if (label === undefined) {
        app.gates.release(tag(name));
        replies[name] = await (pending.get(name) as Promise<Reply>);
        continue;
      }
      const gate = `${tag(name)}:${label}`;
      await app.gates.reached(gate);
      app.gates.release(gate);
      await app.gates.reached(`${gate}:done`);
    }
    for (const r of racers) replies[r.name] ??= await (pending.get(r.name) as Promise<Reply>);
    return replies;
  } finally {
    app.gates.releaseAll();
    await Promise.allSettled(pending.values());
  }
}

/** The old and every new cookie lead to a fresh session (no data, no handle), and say so. */
async function expectFresh(app: RaceApp, cookies: Array<string | undefined>, what: string): Promise<void> {
  for (const cookie of cookies) {
    if (cookie === undefined) continue;
    const seen = await app.whoami(cookie);
    assert.deepEqual(seen.data, {}, `${what}: ${cookie.slice(0, 20)}… leads to a fresh session`);
    assert.equal(seen.handle, null, `${what}: a fresh session has no handle`);
  }
}

// ---------------------------------------------------------------------------------------------
// The races

for (const b of [single, clustered]) {
  describe(`user index races on ${b.name}`, { timeout: TEST_TIMEOUT * 30 }, () => {
    describe('(a) revoke vs a write in flight of the revoked session (loaded before the revoke)', () => {
      // What the request in flight does; `moves` says whether it hands out a new cookie when it
      // lands first.
      const writes: Array<{ name: string; ops: Op[]; keepsUser: boolean }> = [
        { name: 'a plain write', ops: [['set', { views: 1 }]], keepsUser: true },
        { name: 'regenerate()', ops: [['set', { views: 1 }], ['regenerate']], keepsUser: true },
        { name: 'the same user set again', ops: [['login', 7]], keepsUser: true },
        { name: 'a login as another user', ops: [['login', 8]], keepsUser: false },
        { name: 'the user key deleted', ops: [['del', 'userId']], keepsUser: false },
      ];
      for (const w of writes) {
        for (const how of ['revoke', 'revokeAll'] as const) {
          it(`${how} lands, then ${w.name}: not resurrected, the next request is fresh, the index is clean`, {
            timeout: TEST_TIMEOUT,
          }, async () => {
            await withApp(b, {}, async (app) => {
              await repeat(REPS, async () => {
                const needle = marker('secret');
                const s = await logIn(app, { userId: 7, needle });
                const other = await logIn(app, { userId: 7, other: marker('other') });
                let ended = -1;
                const r = await race(
                  app,
                  [{ name: 'W', ops: w.ops, cookie: s.cookie }],
                  [
                    async () => {
                      ended =
                        how === 'revoke'
                          ? await app.session.sessions.revoke(7, s.handle as string)
                          : await app.session.sessions.revokeAll(7, { except: other.handle });
                    },
                    'W',
                  ],
                );
                assert.equal(ended, 1, `${how} ended one session`);
                expectStatus(r.W as Reply, 200, `the write (${w.name})`);
                expectNoCookie(r.W as Reply, `the write (${w.name}), landing after the revoke`);
                const snap = await snapshot(b);
                expectGone(snap, needle, 'after the revoke');
                expectConsistent(b, snap, 'after the revoke');
                await expectFresh(app, [s.cookie], 'the revoked cookie');
                assert.deepEqual(await expectListed(b, app, 7, 'after the revoke'), [other.handle]);
                assert.deepEqual(await expectListed(b, app, 8, 'after the revoke'), []);
                await app.session.sessions.revokeAll(7);
                assert.deepEqual((await snapshot(b)).indexes.size, 0, 'no index left once all are revoked');
              });
            });
          });
        }
        if (w.keepsUser) {
          it(`${w.name} lands, then revoke: the session ends wherever it is`, { timeout: TEST_TIMEOUT }, async () => {
            await withApp(b, {}, async (app) => {
              await repeat(REPS, async () => {
                const needle = marker('secret');
                const s = await logIn(app, { userId: 7, needle });
                const r = await race(app, [{ name: 'W', ops: w.ops, cookie: s.cookie }], ['W']);
                expectStatus(r.W as Reply, 200, `the write (${w.name})`);
                const handle = (JSON.parse((r.W as Reply).body) as { handle: string }).handle;
                assert.equal(handle, s.handle, 'the session keeps its handle');
                assert.equal(await app.session.sessions.revoke(7, s.handle as string), 1);
                const snap = await snapshot(b);
                expectGone(snap, needle, 'after the revoke');
                expectConsistent(b, snap, 'after the revoke');
                assert.equal(snap.indexes.size, 0, 'the index went with its last session');
                const moved = (r.W as Reply).cookie.kind === 'set' ? (r.W as Reply).cookie : null;
                await expectFresh(app, [s.cookie, moved?.kind === 'set' ? moved.header : undefined], 'after it');
              });
            });
          });
        }
      }
    });

    describe('(b) revoke vs regenerate() in flight of the same session', () => {
      for (const order of ['revoke first', 'regenerate first'] as const) {
        it(`${order}: no key leads to the session, the index is clean`, { timeout: TEST_TIMEOUT }, async () => {
          await withApp(b, {}, async (app) => {
            await repeat(REPS, async () => {
              const needle = marker('secret');
              const s = await logIn(app, { userId: 7, needle });
              let ended = -1;
              const revoke = async () => {
                ended = await app.session.sessions.revoke(7, s.handle as string);
              };
              const r = await race(
                app,
                [{ name: 'R', ops: [['set', { more: needle }], ['regenerate']], cookie: s.cookie }],
                order === 'revoke first' ? [revoke, 'R'] : ['R', revoke],
              );
              assert.equal(ended, 1, 'the revoke ended the session');
              expectStatus(r.R as Reply, 200, 'the regenerate');
              let moved: string | undefined;
              if (order === 'revoke first') expectNoCookie(r.R as Reply, 'the regenerate after the revoke');
              else moved = expectNewCookie(r.R as Reply, 'the regenerate before the revoke').header;
              const snap = await snapshot(b);
              expectGone(snap, needle, 'after both');
              expectConsistent(b, snap, 'after both');
              assert.equal(snap.indexes.size, 0, 'no index left');
              await expectFresh(app, [s.cookie, moved], 'after both');
              assert.deepEqual(await app.session.sessions.list(7), []);
            });
          });
        });
      }
    });

    describe('(c) logout (loaded with the pre-login cookie) vs a login of the same session: the logout wins', () => {
      // On Cluster the login moves the session into its user's slot in two commands (handoff, then
      // create), and a logout that meets the handoff's marker ends the new key in a second command
      // (tombstone). Every order of the commands, each held at its gate. On one server the login is
      // one command: a patch, or a move with regenerate().
      const logins: Array<{ name: string; ops: Op[] }> = [
        { name: 'login in place', ops: [['login', 7]] },
        { name: 'login with regenerate()', ops: [['regenerate'], ['login', 7]] },
      ];
      // Each of the four commands held at its gate (the orders that reach all of them).
      const EVERY_COMMAND: Array<[string, Label]> = [
        ['L', 'handoff'],
        ['L', 'create'],
        ['O', 'end'],
        ['O', 'tombstone'],
      ];
      const orders: Array<{ name: string; steps: string[]; holds: Array<[string, Label]>; loginCookie: boolean }> =
        b.cluster
          ? [
              {
                name: "logout's end, then the handoff (finds nothing)",
                steps: ['O:end', 'L:handoff'],
                holds: [
                  ['L', 'handoff'],
                  ['O', 'end'],
                ],
                loginCookie: false,
              },
              {
                name: "handoff, logout's end, logout's tombstone, then create (refused)",
                steps: ['L:handoff', 'O:end', 'O:tombstone', 'L:create'],
                holds: EVERY_COMMAND,
                loginCookie: false,
              },
              {
                name: "handoff, logout's end, create, then logout's tombstone",
                steps: ['L:handoff', 'O:end', 'L:create', 'O:tombstone'],
                holds: EVERY_COMMAND,
                loginCookie: true,
              },
              {
                name: "handoff, create, logout's end, then logout's tombstone",
                steps: ['L:handoff', 'L:create', 'O:end', 'O:tombstone'],
                holds: EVERY_COMMAND,
                loginCookie: true,
              },
            ]
          : [
              { name: 'the logout lands, then the login', steps: ['O', 'L'], holds: [], loginCookie: false },
              { name: 'the login lands, then the logout', steps: ['L', 'O'], holds: [], loginCookie: true },
            ];
      for (const login of logins) {
        for (const order of orders) {
          it(`${login.name}: ${order.name}`, { timeout: TEST_TIMEOUT }, async () => {
            await withApp(b, {}, async (app) => {
              await repeat(REPS, async () => {
                const needle = marker('cart');
                const s = await anonymous(b, app, { cart: needle }, [7]);
                const r = await race(
                  app,
                  [
                    { name: 'L', ops: login.ops, cookie: s.cookie },
                    { name: 'O', ops: [['logout']], cookie: s.cookie },
                  ],
                  order.steps,
                  order.holds,
                );
                expectStatus(r.L as Reply, 200, 'the login');
                expectStatus(r.O as Reply, 200, 'the logout');
                assert.equal((r.O as Reply).cookie.kind, 'cleared', 'the logout clears the cookie');
                let loginCookie: string | undefined;
                // A login in place on one server keeps its id: no cookie either way.
                if (order.loginCookie && (b.cluster || login.ops[0]?.[0] === 'regenerate'))
                  loginCookie = expectNewCookie(r.L as Reply, 'the login, landing first').header;
                else expectNoCookie(r.L as Reply, 'the login');
                const snap = await snapshot(b);
                expectGone(snap, needle, 'after the logout');
                expectConsistent(b, snap, 'after the logout');
                assert.equal(snap.indexes.size, 0, 'no index left');
                assert.deepEqual(
                  [...snap.markers.keys()],
                  [],
                  'no marker is left: the logout ended every key of the chain',
                );
                for (const t of snap.tombstones)
                  assert.ok((snap.ttl.get(t) ?? -1) > 0, `the tombstone ${t} expires (TTL ${snap.ttl.get(t)})`);
                if (b.cluster) {
                  const tag = [...app.sent.keys()].find((k) => k.startsWith('L-')) as string;
                  assert.ok(app.sent.get(tag)?.includes('handoff'), 'the login was a handoff');
                  app.sent.clear();
                }
                assert.deepEqual(await app.session.sessions.list(7), []);
                await expectFresh(app, [s.cookie, loginCookie], 'after the logout');
              });
            });
          });
        }
      }
    });

    it('(c) a logout loaded before a login, and a change of user after it, lands last: it ends the session across both moves', {
      timeout: TEST_TIMEOUT,
    }, async () => {
      // On Cluster each login moves the session into its user's slot: old → 7's slot → 8's slot,
      // two markers flagged `x`; the logout must follow both.
      await withApp(b, {}, async (app) => {
        await repeat(REPS, async (rep) => {
          const [seven, eight] = [2000 + 2 * rep, 2001 + 2 * rep];
          const needle = marker('cart');
          const s = await anonymous(b, app, { cart: needle }, [seven, eight]);
          let cookies: Array<string | undefined> = [];
          const r = await race(
            app,
            [{ name: 'O', ops: [['logout']], cookie: s.cookie }],
            [
              async () => {
                const first = await app.act([['login', seven]], { cookie: s.cookie });
                expectStatus(first, 200, `the login as ${seven}`);
                const c1 = first.cookie.kind === 'set' ? first.cookie.header : s.cookie;
                const second = await app.act([['login', eight]], { cookie: c1 });
                expectStatus(second, 200, `the change to ${eight}`);
                cookies = [c1, second.cookie.kind === 'set' ? second.cookie.header : c1];
              },
              'O',
            ],
          );
          expectStatus(r.O as Reply, 200, 'the logout');
          const snap = await snapshot(b);
          expectGone(snap, needle, 'after the logout');
          expectConsistent(b, snap, 'after the logout');
          assert.equal(snap.indexes.size, 0, 'no index left');
          await expectFresh(app, [s.cookie, ...cookies], 'after the logout');
        });
      });
    });

    describe('(d) two concurrent logins of one session as two users', () => {
      const logins: Array<{ name: string; ops: (user: number) => Op[] }> = [
        { name: 'in place', ops: (user) => [['login', user]] },
        { name: 'with regenerate()', ops: (user) => [['regenerate'], ['login', user]] },
      ];
      const starts = [
        { name: 'an anonymous session', logged: false },
        { name: "a third user's session", logged: true },
      ];
      const orders: Array<{ name: string; steps: string[]; holds: Array<[string, Label]> }> = [
        { name: "A's write lands, then B's", steps: ['A', 'B'], holds: [] },
        { name: "B's write lands, then A's", steps: ['B', 'A'], holds: [] },
      ];
      if (b.cluster)
        orders.push({
          name: "A's handoff, B's handoff, then A's create",
          steps: ['A:handoff', 'B:handoff', 'A:create'],
          holds: [
            ['A', 'handoff'],
            ['A', 'create'],
            ['B', 'handoff'],
          ],
        });
      for (const start of starts) {
        for (const login of logins) {
          for (const order of orders) {
            it(`from ${start.name}, ${login.name}: ${order.name}`, { timeout: TEST_TIMEOUT }, async () => {
              await withApp(b, {}, async (app) => {
                await repeat(REPS, async (rep) => {
                  // Users of this repetition alone: A logs in as `one`, B as `two`.
                  const [one, two, third] = [1000 + 3 * rep, 1001 + 3 * rep, 1002 + 3 * rep];
                  const needle = marker('cart');
                  const data = start.logged ? { userId: third, cart: needle } : { cart: needle };
                  const s = await anonymous(b, app, data, [one, two]);
                  const r = await race(
                    app,
                    [
                      { name: 'A', ops: login.ops(one), cookie: s.cookie },
                      { name: 'B', ops: login.ops(two), cookie: s.cookie },
                    ],
                    order.steps,
                    order.holds,
                  );
                  expectStatus(r.A as Reply, 200, 'A (login as 1)');
                  expectStatus(r.B as Reply, 200, 'B (login as 2)');
                  const snap = await snapshot(b);
                  expectConsistent(b, snap, 'after both logins');
                  const found = holding(snap, needle);
                  assert.equal(found.length, 1, `one session holds the data: ${describeSnapshot(snap)}`);
                  const stored = snap.sessions.get(found[0] as string) as Record<string, string>;
                  const winner = stored[':userId'];
                  assert.ok(
                    winner === `${one}` || winner === `${two}`,
                    `the session belongs to A's or B's user, not ${winner}`,
                  );
                  const listed = [await expectListed(b, app, one, 'A'), await expectListed(b, app, two, 'B')];
                  assert.deepEqual(
                    listed.map((l) => l.length),
                    winner === `${one}` ? [1, 0] : [0, 1],
                  );
                  assert.deepEqual(await app.session.sessions.list(third), [], 'the third user has no session');
                  // The browser's final cookie: the last one set, else the old one.
                  const last = [r.A as Reply, r.B as Reply].filter((x) => x.cookie.kind === 'set').pop();
                  const cookie = last?.cookie.kind === 'set' ? last.cookie.header : s.cookie;
                  const seen = await app.whoami(cookie);
                  if (seen.handle !== null) {
                    assert.equal(String(seen.data.userId), winner, 'the final cookie leads to the stored user');
                    assert.equal(seen.handle, stored.h, 'and its handle is the listed one');
                  }
                });
              });
            });
          }
        }
      }
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Hostile input

/** Rewrite header numbers of the session at `key` (`c` created, `x` expiry), keeping the rest (the
 *  index part too) and the TTL: what a test does instead of waiting. */
async function rewriteHeader(b: Backend, key: string, numbers: { c?: number; x?: number }): Promise<void> {
  const value = (await b.client.getBuffer(key)) as Buffer;
  const spaces: number[] = [];
  for (let i = 0; spaces.length < 4; i++) if (value[i] === 0x20) spaces.push(i);
  const head = value
    .subarray(0, spaces[3] as number)
    .toString('latin1')
    .split(' ');
  if (numbers.c !== undefined) head[1] = numbers.c.toString(36);
  if (numbers.x !== undefined) head[3] = numbers.x.toString(36);
  const next = Buffer.concat([Buffer.from(head.join(' '), 'latin1'), value.subarray(spaces[3] as number)]);
  await b.client.set(key, next, 'KEEPTTL');
}

const now = () => Math.floor(Date.now() / 1000);

/** Whether the indexes of two users are on one Cluster master. */
function sameMaster(b: Backend, one: unknown, two: unknown): boolean {
  const slots = (b.client as Cluster).slots;
  const master = (user: unknown) => slots[calculateSlot(indexKey(b, JSON.stringify(user)))]?.[0];
  return master(one) === master(two);
}

for (const b of [single, clustered]) {
  describe(`user index, hostile input on ${b.name}`, { timeout: TEST_TIMEOUT * 10 }, () => {
    /** Log a session in as `user` (in place: on Cluster a handoff), then a fresh browser logs in as
     *  `user` too (a create), one regenerates, one logs out: each step checked against what is
     *  stored and what list() shows. */
    async function lifecycle(app: RaceApp, login: Op, user: unknown, prefix = PREFIX): Promise<void> {
      const first = await logIn(app, { cart: marker('cart') });
      const r = await app.act([login], { cookie: first.cookie });
      expectStatus(r, 200, 'the login in place');
      const handle = (JSON.parse(r.body) as { handle: string }).handle;
      assert.equal(typeof handle, 'string', 'the login names the session');
      const cookie = r.cookie.kind === 'set' ? r.cookie.header : first.cookie;
      const fresh = await app.act([login]);
      expectStatus(fresh, 200, 'a fresh session logging in');
      const freshCookie = expectNewCookie(fresh, 'a fresh session logging in').header;
      expectConsistent(b, await snapshot(b), 'after both logins', prefix);
      assert.equal((await app.session.sessions.list(user)).length, 2, 'list() shows both');
      assert.equal((await app.whoami(cookie)).handle, handle, 'the session keeps its handle');
      const moved = await app.act([['regenerate']], { cookie });
      const movedCookie = expectNewCookie(moved, 'the regenerate').header;
      assert.equal((await app.whoami(movedCookie)).handle, handle, 'a regenerate keeps the handle');
      expectConsistent(b, await snapshot(b), 'after the regenerate', prefix);
      assert.equal((await app.act([['logout']], { cookie: movedCookie })).cookie.kind, 'cleared');
      assert.equal((await app.session.sessions.list(user)).length, 1, 'list() shows the other one');
      assert.equal(await app.session.sessions.revokeAll(user), 1);
      await expectFresh(app, [movedCookie, freshCookie], 'after the logout and the revoke');
      const snap = await snapshot(b);
      assert.deepEqual([...snap.sessions.keys(), ...snap.indexes.keys()], [], 'nothing is left but markers');
    }

    describe('user key values with odd characters, of odd types', () => {
      const values: Array<[string, unknown]> = [
        ['spaces and a colon', 'a b: c'],
        ['non-ASCII and an emoji', 'üser 🙂'],
        ['braces (a hash tag in a key)', '{user}'],
        ['reversed braces', '}{'],
        ['a NUL', 'a\u0000b'],
        ['a 10 000-character string', 'x'.repeat(10_000)],
        ['an object', { id: 1, org: 'acme' }],
        ['an array', [1, 'two']],
        ['a large number', 1e21],
        ['false', false],
        ['an empty string', ''],
      ];
      for (const [name, value] of values) {
        it(name, { timeout: TEST_TIMEOUT }, async () => {
          await withApp(b, {}, (app) => lifecycle(app, ['login', value], value));
        });
      }
      for (const name of Object.keys(SPECIAL_USERS)) {
        it(`a value JSON cannot hold: ${name}`, { timeout: TEST_TIMEOUT }, async () => {
          await withApp(b, {}, (app) => lifecycle(app, ['special', name], (SPECIAL_USERS[name] as () => unknown)()));
        });
      }
    });

    it('an object user key mutated in place (detectChanges): the session moves to the new user', {
      timeout: TEST_TIMEOUT,
    }, async () => {
      await withApp(b, {}, async (app) => {
        await repeat(5, async (rep) => {
          const before = { id: rep, org: 'a' };
          // On Cluster a new user whose index is on another master than the old one's.
          let after = { id: rep, org: 'b' };
          for (let i = 0; b.cluster && sameMaster(b, before, after); i++) after = { id: rep, org: `b${i}` };
          const s = await logIn(app, { cart: marker('cart') });
          const r = await app.act([['login', before]], { cookie: s.cookie });
          expectStatus(r, 200, 'the login');
          const cookie = r.cookie.kind === 'set' ? r.cookie.header : s.cookie;
          const m = await app.act([['nested', 'org', after.org]], { cookie });
          expectStatus(m, 200, 'the write that changes the user in place');
          const finalCookie = m.cookie.kind === 'set' ? m.cookie.header : cookie;
          expectConsistent(b, await snapshot(b), 'after the change in place');
          assert.equal((await app.session.sessions.list(before)).length, 0, 'out of the old user');
          assert.equal((await app.session.sessions.list(after)).length, 1, 'in the new user');
          assert.deepEqual((await app.whoami(finalCookie)).data.userId, after);
        });
      });
    });

    describe('a prefix with spaces or non-ASCII', () => {
      for (const prefix of ['my sess: ', 'séss🙂:']) {
        it(JSON.stringify(prefix), { timeout: TEST_TIMEOUT }, async () => {
          await withApp(b, { prefix }, (app) => lifecycle(app, ['login', 7], 7, prefix));
        });
      }
    });

    describe('sessionInfo returning odd values, or throwing', () => {
      class Agent {
        name = 'x';
      }
      const circular: Record<string, unknown> = {};
      circular.self = circular;
      const infos: Array<[string, () => unknown]> = [
        ['a Date and a Map inside', () => ({ at: new Date(0), seen: new Map([[1, 2]]) })],
        ['a class instance', () => new Agent()],
        ['a function value', () => ({ f: () => 1 })],
        ['a circular object', () => circular],
        ['a symbol key and value', () => ({ [Symbol('s')]: 1, s: Symbol('t') })],
        ['null', () => null],
        ['a string', () => 'agent'],
        ['a number', () => 42],
        [
          'a throwing getter',
          () => ({
            get boom() {
              throw new Error('getter');
            },
          }),
        ],
        [
          'a Proxy that throws',
          () =>
            new Proxy(
              {},
              {
                ownKeys() {
                  throw new Error('proxy');
                },
              },
            ),
        ],
        [
          'it throws',
          () => {
            throw new Error('sessionInfo failed');
          },
        ],
        [
          'it throws a non-Error',
          () => {
            throw 'a string';
          },
        ],
        ['200 KB of user agent', () => ({ agent: 'a'.repeat(200_000) })],
      ];
      for (const [name, info] of infos) {
        it(name, { timeout: TEST_TIMEOUT }, async () => {
          await withApp(b, { sessionInfo: info as (ctx: Context) => Record<string, unknown> }, async (app) => {
            // A login in place (a patch, or a handoff on Cluster), and a fresh session's login (a create).
            const needle = marker('cart');
            const s = await anonymous(b, app, { cart: needle }, [7]);
            const before = await snapshot(b);
            for (const [what, cookie] of [
              ['a login in place', s.cookie],
              ['a fresh session logging in', undefined],
            ] as const) {
              const r = await app.act([['login', 7]], { cookie });
              assert.ok(
                r.status === 200 || r.status === 500,
                `${what} answers 200 or a clean 500 (got ${r.status}: ${r.body.slice(0, 200)})`,
              );
              const snap = await snapshot(b);
              expectConsistent(b, snap, what);
              if (r.status === 500) {
                expectNoCookie(r, `${what}, failed`);
                assert.deepEqual(
                  [...snap.sessions.keys()].sort(),
                  [...before.sessions.keys()].sort(),
                  `${what}, failed: no session stored or lost`,
                );
                assert.equal(snap.indexes.size, 0, `${what}, failed: indexed nowhere`);
              }
            }
            const listed = await app.session.sessions.list(7);
            assert.equal(listed.length, (await snapshot(b)).indexes.size === 0 ? 0 : listed.length);
            for (const l of listed)
              assert.ok(
                l.info === null ||
                  typeof l.info === 'object' ||
                  typeof l.info === 'string' ||
                  typeof l.info === 'number',
              );
            const kept = await app.whoami(s.cookie);
            assert.ok(kept.reply.status === 200, 'the first browser still gets an answer');
          });
        });
      }
    });

    describe('LRU mode (setRedisTtl: false)', () => {
      it('a login (on Cluster a handoff) gives neither the session nor its index a Redis TTL', {
        timeout: TEST_TIMEOUT,
      }, async () => {
        await withApp(b, { setRedisTtl: false, timeout: 60 }, async (app) => {
          const s = await anonymous(b, app, { cart: marker('cart') }, [7]);
          const r = await app.act([['login', 7]], { cookie: s.cookie });
          expectStatus(r, 200, 'the login');
          const snap = await snapshot(b);
          expectConsistent(b, snap, 'after the login');
          for (const key of [...snap.sessions.keys(), ...snap.indexes.keys()])
            assert.equal(snap.ttl.get(key), -1, `${key} has no Redis TTL in LRU mode (TTL ${snap.ttl.get(key)})`);
        });
      });

      it('a session past its stored expiry: the load that ends it takes it out of its index too', {
        timeout: TEST_TIMEOUT,
      }, async () => {
        await withApp(b, { setRedisTtl: false, timeout: 60 }, async (app) => {
          const s = await logIn(app, { userId: 7, cart: marker('cart') });
          const other = await logIn(app, { userId: 7, cart: marker('cart') });
          await rewriteHeader(b, sessionKey(b, s.id), { x: now() - 5 });
          await rewriteHeader(b, sessionKey(b, other.id), { x: now() - 5 });
          assert.deepEqual(await app.session.sessions.list(7), [], 'an expired session is not listed');
          assert.equal((await snapshot(b)).indexes.size, 0, 'and the index is pruned');
          await expectFresh(app, [s.cookie, other.cookie], 'expired');
          const third = await logIn(app, { userId: 7, cart: marker('cart') });
          await rewriteHeader(b, sessionKey(b, third.id), { x: now() - 5 });
          await expectFresh(app, [third.cookie], 'expired, loaded before any list()');
          const snap = await snapshot(b);
          expectConsistent(b, snap, 'after the load ended it');
          assert.equal(snap.indexes.size, 0, 'no index is left without a TTL in LRU mode');
          assert.equal(await app.session.sessions.revoke(7, third.handle as string), 0);
        });
      });
    });

    describe('absoluteTimeout', () => {
      for (const what of ['a load', 'a write', 'list()', 'revokeAll()'] as const) {
        it(`a session past it is ended by ${what}, and its index with it`, { timeout: TEST_TIMEOUT }, async () => {
          await withApp(b, { absoluteTimeout: 3600, timeout: 600 }, async (app) => {
            const s = await logIn(app, { userId: 7, cart: marker('cart') });
            const key = sessionKey(b, s.id);
            assert.equal((await app.session.sessions.list(7)).length, 1);
            // A write's own load would end it: the write's request loads first, then it is aged.
            if (what !== 'a write') await rewriteHeader(b, key, { c: now() - 4000 });
            if (what === 'a load') await expectFresh(app, [s.cookie], 'past its absolute timeout');
            if (what === 'a write') {
              const r = await race(
                app,
                [{ name: 'W', ops: [['set', { views: 1 }]], cookie: s.cookie }],
                [async () => rewriteHeader(b, key, { c: now() - 4000 }), 'W'],
              );
              expectStatus(r.W as Reply, 200, 'the write');
              expectNoCookie(r.W as Reply, 'the write of a session past its absolute timeout');
            }
            if (what === 'list()') assert.deepEqual(await app.session.sessions.list(7), []);
            if (what === 'revokeAll()') assert.equal(await app.session.sessions.revokeAll(7), 0);
            const snap = await snapshot(b);
            expectConsistent(b, snap, `after ${what}`);
            assert.equal(snap.indexes.size, 0, 'no index left');
          });
        });
      }
    });
  });
}
