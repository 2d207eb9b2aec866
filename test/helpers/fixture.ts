/**
 * One private Redis per test file, a MONITOR on it, a client to look at what is stored, and a
 * flush between tests. Any unhandled rejection fails the run (./unhandled.ts).
 */
import assert from 'node:assert/strict';
import { after, afterEach, before } from 'node:test';
import Keygrip from 'keygrip';
import { Redis, type Cluster } from 'ioredis';
import { CookieCodec, DEFAULT_ID_PATTERN, defaultGenId } from '../../src/cookie.js';
import { DATA_PREFIX } from '../../src/payload.js';
import { stored } from './stored.js';
import { KEYS } from './app.js';
import { closeOpened } from './cleanup.js';
import { Monitor } from './monitor.js';
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
