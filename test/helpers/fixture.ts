/**
 * One private Redis per test file, a MONITOR on it, a client to look at what is stored, and a
 * flush between tests. Any unhandled rejection fails the run (./unhandled.ts).
 */
import assert from 'node:assert/strict';
import { after, afterEach, before } from 'node:test';
import Keygrip from 'keygrip';
import { Redis, type Cluster } from 'ioredis';
import type { Context, Middleware } from 'koa';
import type { Response } from 'supertest';
import { CookieCodec, DEFAULT_ID_PATTERN, defaultGenId } from '../../src/cookie.js';
import type { SessionOptions } from '../../src/index.js';
import { DATA_PREFIX } from '../../src/payload.js';
import { stored } from './stored.js';
import { KEYS, expectCookieSet, makeApp } from './app.js';
import { closeOpened } from './cleanup.js';
import { Monitor, type WireCommand } from './monitor.js';
import { startRedis, type RedisServer } from './redis-server.js';
import './unhandled.js';

export interface Fixture {
  server: RedisServer;
  monitor: Monitor;
  /** A client for looking at and preparing stored data; its commands are outside captures. */
  redis: Redis;
}

/** Register before/after hooks that give the file its own Redis; they close the apps a failed test
 *  left open before flushing and before stopping the server. */
export function useRedis(): Fixture {
  const fixture = {} as Fixture;
  before(async () => {
    fixture.server = await startRedis();
    fixture.monitor = await Monitor.start(fixture.server.url);
    fixture.redis = new Redis(fixture.server.url);
  });
  afterEach(async () => {
    await closeOpened();
    await fixture.redis.flushall();
  });
  after(async () => {
    await closeOpened();
    // Each may be missing when the before hook failed part-way.
    fixture.redis?.disconnect();
    await fixture.monitor?.stop();
    await fixture.server?.stop();
  });
  return fixture;
}

/** `low <= value <= high`, saying which bound failed: for values that may land anywhere in a range
 *  (a second that ticked meanwhile), never only below a ceiling (which -1 would pass). */
export function assertBetween(value: number, low: number, high: number, what: string): void {
  assert.ok(value >= low && value <= high, `${what}: ${value} is not within [${low}, ${high}]`);
}

/** A TTL just set to `seconds`: at most that, and at most `slack` seconds below it (a loaded
 *  machine's delay). No TTL (-1) and no key (-2) fail. */
export async function assertTtl(redis: Redis | Cluster, key: string, seconds: number, slack = 10): Promise<void> {
  assertBetween(await redis.ttl(key), seconds - slack, seconds, `TTL of ${key}`);
}

/** The data fields of a stored session, decoded with JSON. */
export async function storedData(redis: Redis | Cluster, key: string): Promise<Record<string, unknown>> {
  const hash = await stored(redis, key);
  const data: Record<string, unknown> = {};
  for (const [field, value] of Object.entries(hash)) {
    if (field.startsWith(DATA_PREFIX)) data[field.slice(DATA_PREFIX.length)] = JSON.parse(value);
  }
  return data;
}

/** A validly signed session cookie for an id, as the middleware would send it. */
export function signedCookie(id: string = defaultGenId(), keys: string[] = KEYS, name = 'session'): string {
  return `${name}=${new CookieCodec(name, new Keygrip(keys), DEFAULT_ID_PATTERN).encode(id)}`;
}

/** A session seeded by one request, and the request under test that came with its cookie. */
export interface Seeded {
  /** The seeding response, the cookie it set (as a Cookie header), its id and its Redis key. */
  first: Response;
  cookie: string;
  id: string;
  key: string;
  /** The request under test and the commands it sent. */
  res: Response;
  wire: WireCommand[];
}

/**
 * An app (Koa 3) on the fixture's Redis: GET /seed stores `seed` in a new session; then GET / with
 * its cookie runs `handler`, captured on the wire (`withLua`: the commands scripts ran too).
 * `between(key)` runs between the two, `before` is a middleware in front of the session. The app
 * is closed before this returns.
 */
export async function afterSeed(
  f: Fixture,
  {
    seed,
    handler,
    options = {},
    before,
    withLua = false,
    between,
  }: {
    seed: Record<string, unknown>;
    handler: (ctx: Context) => unknown;
    options?: Omit<SessionOptions, 'redis'>;
    before?: Middleware;
    withLua?: boolean;
    between?: (key: string) => Promise<unknown>;
  },
): Promise<Seeded> {
  const app = makeApp(
    3,
    { ...options, redis: f.server.url },
    (ctx) => (ctx.path === '/seed' ? void Object.assign(ctx.session, seed) : handler(ctx)),
    before,
  );
  await app.ready();
  const first = await app.get('/seed');
  const { cookie, id } = expectCookieSet(first, options.cookie?.name);
  const key = `${options.prefix ?? 'sess:'}${id}`;
  await between?.(key);
  const { res, wire } = await f.monitor.request(() => app.get('/', cookie), withLua);
  await app.close();
  return { first, res, wire, cookie, id, key };
}
