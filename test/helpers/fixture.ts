/**
 * One private Redis per test file, a MONITOR on it, a client to look at what is stored, and a
 * flush between tests. Any unhandled rejection fails the run (ioredis' test/helpers/global.ts).
 */
import { after, afterEach, before } from 'node:test';
import Keygrip from 'keygrip';
import { Redis, type Cluster } from 'ioredis';
import { CookieCodec, DEFAULT_ID_PATTERN, defaultGenId } from '../../src/cookie.js';
import { DATA_PREFIX } from '../../src/payload.js';
import { KEYS, closeLeftOpen } from './app.js';
import { Monitor } from './monitor.js';
import { startRedis, type RedisServer } from './redis-server.js';

process.on('unhandledRejection', (reason) => {
  throw reason instanceof Error ? reason : new Error(String(reason));
});

export interface Fixture {
  server: RedisServer;
  monitor: Monitor;
  /** A client for looking at and preparing stored data; its commands are outside captures. */
  redis: Redis;
}

/** Register before/after hooks that give the file its own Redis. */
export function useRedis(): Fixture {
  const fixture = {} as Fixture;
  before(async () => {
    fixture.server = await startRedis();
    fixture.monitor = await Monitor.start(fixture.server.url);
    fixture.redis = new Redis(fixture.server.url);
  });
  afterEach(async () => {
    await fixture.redis.flushall();
  });
  after(async () => {
    await closeLeftOpen();
    fixture.redis.disconnect();
    await fixture.monitor.stop();
    await fixture.server.stop();
  });
  return fixture;
}

/** The data fields of a stored session, decoded with JSON. */
export async function storedData(redis: Redis | Cluster, key: string): Promise<Record<string, unknown>> {
  const hash = await redis.hgetall(key);
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
