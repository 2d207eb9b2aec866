/**
 * The README's cost table ("What each request costs") as a table, and a runner that plays it on any Redis set-up (one server, a Cluster):
 * the exact commands each request sent, its Set-Cookie headers, and what is stored afterwards.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Cluster, Redis } from 'ioredis';
import type { Context } from 'koa';
import type { SessionOptions } from '../../src/index.js';
import { expectCookieCleared, expectCookieSet, expectNoCookie, makeApp, type KoaVersion } from './app.js';
import { signedCookie, storedData } from './fixture.js';
import { sessionKey } from './keys.js';
import { isSession, seed } from './stored.js';
import type { WireCommand } from './monitor.js';

/** Where the table runs. */
export interface ContractEnv {
  /** Koa majors to run on. */
  versions: readonly KoaVersion[];
  /** The `redis` option for the middleware. */
  redis(): SessionOptions['redis'];
  /** A client to prepare and inspect stored data with. */
  inspect(): Redis | Cluster;
  /** How many keys the whole set-up holds. */
  keyCount(): Promise<number>;
  /** Keys carry the Cluster hash tag (test/helpers/keys.ts). */
  cluster?: boolean;
  /** Send one request, returning the commands it caused. */
  request<T>(send: () => PromiseLike<T>): Promise<{ res: T; wire: WireCommand[] }>;
}

const SEED = { user: 'ada', cart: { items: ['apple'] }, views: 1 };

type Prepare = 'none' | 'seeded' | 'garbage' | 'bad-signature' | 'missing-key' | 'expired' | 'legacy' | 'undecodable';

interface Row {
  /** describe() text: the request. */
  request: string;
  /** it() text: what it costs. */
  costs: string;
  prepare: Prepare;
  options?: Omit<SessionOptions, 'redis'>;
  handler: (ctx: Context) => unknown;
  /** Client commands on the wire (script calls by script name). */
  redis: string[];
  cookie: 'none' | 'set' | 'cleared' | 'new-id';
  status?: number;
  /** Data stored under the request's resulting session key, or null for no key at all. */
  stored?: Record<string, unknown> | null;
  /** Keys left in Redis after the request. */
  keys?: number;
}

const ROWS: Row[] = [
  {
    request: 'no cookie; session untouched',
    costs: 'sends nothing',
    prepare: 'none',
    handler: () => 'hi',
    redis: [],
    cookie: 'none',
    keys: 0,
  },
  {
    request: 'no cookie; session only read',
    costs: 'sends nothing',
    prepare: 'none',
    handler: (ctx) => String(ctx.session.user),
    redis: [],
    cookie: 'none',
    keys: 0,
  },
  {
    request: 'no cookie; data set then removed',
    costs: 'sends nothing and creates no key',
    prepare: 'none',
    handler: (ctx) => {
      ctx.session.a = 1;
      delete ctx.session.a;
    },
    redis: [],
    cookie: 'none',
    keys: 0,
  },
  {
    request: 'badly signed cookie; session read',
    costs: 'sends nothing and clears the cookie',
    prepare: 'bad-signature',
    handler: (ctx) => String(ctx.session.user),
    redis: [],
    cookie: 'cleared',
    keys: 1,
  },
  {
    request: 'garbage cookie; session untouched',
    costs: 'sends nothing and clears the cookie',
    prepare: 'garbage',
    handler: () => 'hi',
    redis: [],
    cookie: 'cleared',
    keys: 0,
  },
  {
    request: 'no cookie; data written',
    costs: 'sends one create with data and TTL, and sets the cookie',
    prepare: 'none',
    handler: (ctx) => {
      ctx.session.user = 'grace';
    },
    redis: ['create'],
    cookie: 'set',
    stored: { user: 'grace' },
  },
  {
    request: 'valid cookie; session only read',
    costs: 'sends the load only',
    prepare: 'seeded',
    handler: (ctx) => String(ctx.session.user),
    redis: ['load'],
    cookie: 'none',
    stored: SEED,
  },
  {
    request: 'valid cookie; session untouched',
    costs: 'sends the load only',
    prepare: 'seeded',
    handler: () => 'hi',
    redis: ['load'],
    cookie: 'none',
    stored: SEED,
  },
  {
    request: 'valid cookie; top-level data changed',
    costs: 'sends the load and one patch',
    prepare: 'seeded',
    handler: (ctx) => {
      ctx.session.views = 2;
    },
    redis: ['load', 'patch'],
    cookie: 'none',
    stored: { ...SEED, views: 2 },
  },
  {
    request: 'valid cookie; nested data mutated',
    costs: 'sends the load and one patch',
    prepare: 'seeded',
    handler: (ctx) => {
      (ctx.session.cart as { items: string[] }).items.push('pear');
    },
    redis: ['load', 'patch'],
    cookie: 'none',
    stored: { ...SEED, cart: { items: ['apple', 'pear'] } },
  },
  {
    request: 'valid cookie; a key deleted',
    costs: 'sends the load and one patch',
    prepare: 'seeded',
    handler: (ctx) => {
      delete ctx.session.cart;
    },
    redis: ['load', 'patch'],
    cookie: 'none',
    stored: { user: 'ada', views: 1 },
  },
  {
    request: 'valid cookie; values assigned equal to the loaded ones',
    costs: 'sends the load only',
    prepare: 'seeded',
    handler: (ctx) => {
      ctx.session.user = 'ada';
      ctx.session.cart = { items: ['apple'] };
      ctx.session.views = 1;
    },
    redis: ['load'],
    cookie: 'none',
    stored: SEED,
  },
  {
    request: 'valid cookie; invalidate()',
    costs: 'sends the load and one end (the delete that follows moves), and clears the cookie',
    prepare: 'seeded',
    handler: (ctx) => {
      ctx.session.invalidate();
    },
    redis: ['load', 'end'],
    cookie: 'cleared',
    keys: 0,
  },
  {
    request: 'valid cookie; emptied with invalidateEmptySession',
    costs: 'sends the load and one patch, which deletes the session left empty, and clears the cookie',
    prepare: 'seeded',
    handler: (ctx) => {
      for (const key of Object.keys(ctx.session)) delete ctx.session[key];
    },
    redis: ['load', 'patch'],
    cookie: 'cleared',
    keys: 0,
  },
  {
    request: 'valid cookie; invalidate() then write',
    costs: 'sends the load and one replace, and sets a new cookie',
    prepare: 'seeded',
    handler: (ctx) => {
      ctx.session.invalidate();
      ctx.session.user = 'eve';
    },
    redis: ['load', 'replace'],
    cookie: 'new-id',
    stored: { user: 'eve' },
    keys: 1,
  },
  {
    request: 'valid cookie; regenerate()',
    costs: 'sends the load and one move, and sets a new cookie with the data kept',
    prepare: 'seeded',
    handler: (ctx) => {
      ctx.session.regenerate();
      ctx.session.views = 5;
    },
    redis: ['load', 'move'],
    cookie: 'new-id',
    stored: { ...SEED, views: 5 },
    keys: 2, // the session, and the marker at the old id
  },
  {
    request: 'valid cookie; key missing',
    costs: 'sends the load only and clears the cookie',
    prepare: 'missing-key',
    handler: (ctx) => String(ctx.session.user),
    redis: ['load'],
    cookie: 'cleared',
    keys: 0,
  },
  {
    request: 'valid cookie; payload expired',
    costs: 'sends the load only, which removes the key, and clears the cookie',
    prepare: 'expired',
    handler: (ctx) => String(ctx.session.user),
    redis: ['load'],
    cookie: 'cleared',
    keys: 0,
  },
  {
    request: 'valid cookie; legacy payload',
    costs: 'sends the load only, which removes the key, and clears the cookie',
    prepare: 'legacy',
    handler: (ctx) => String(ctx.session.user),
    redis: ['load'],
    cookie: 'cleared',
    keys: 0,
  },
  {
    request: 'valid cookie; undecodable payload with deserializedFailsNew',
    costs: 'sends the load only and clears the cookie',
    prepare: 'undecodable',
    options: { deserializedFailsNew: true },
    handler: (ctx) => String(ctx.session.user),
    redis: ['load'],
    cookie: 'cleared',
  },
  {
    request: 'valid cookie; undecodable payload without deserializedFailsNew',
    costs: 'sends the load only, fails with 500 and leaves the cookie alone',
    prepare: 'undecodable',
    handler: (ctx) => String(ctx.session.user),
    redis: ['load'],
    cookie: 'none',
    status: 500,
  },
  {
    request: 'no cookie; data written; allowCookies false',
    costs: 'sends nothing and creates no key',
    prepare: 'none',
    options: { allowCookies: () => false },
    handler: (ctx) => {
      ctx.session.user = 'bot';
    },
    redis: [],
    cookie: 'none',
    keys: 0,
  },
  {
    request: 'valid cookie; data changed; allowCookies false',
    costs: 'sends the load and one patch, and no cookie',
    prepare: 'seeded',
    options: { allowCookies: () => false },
    handler: (ctx) => {
      ctx.session.views = 9;
    },
    redis: ['load', 'patch'],
    cookie: 'none',
    stored: { ...SEED, views: 9 },
  },
];

/** Bring Redis and the cookie into the row's starting state; returns the Cookie header and key. */
async function prepare(
  env: ContractEnv,
  version: KoaVersion,
  kind: Prepare,
  options: SessionOptions,
): Promise<{ cookie?: string; key?: string }> {
  const redis = env.inspect();
  const now = Math.floor(Date.now() / 1000);
  switch (kind) {
    case 'none':
      return {};
    case 'garbage':
      return { cookie: 'session=%%%garbage%%%' };
    case 'bad-signature': {
      // A real session exists, but the cookie's signature is wrong: Redis must not be asked.
      const seeded = await prepare(env, version, 'seeded', options);
      return { cookie: `${seeded.cookie?.slice(0, -3)}AAA`, key: seeded.key };
    }
    case 'seeded': {
      const app = makeApp(version, { ...options, allowCookies: undefined, redis: env.redis() }, (ctx) => {
        Object.assign(ctx.session, SEED);
      });
      const res = await app.get('/');
      await app.close();
      const { cookie, id } = expectCookieSet(res);
      return { cookie, key: sessionKey(id, env.cluster) };
    }
    case 'missing-key': {
      const cookie = signedCookie();
      return { cookie, key: sessionKey(cookie.slice(8, cookie.lastIndexOf('.')), env.cluster) };
    }
    case 'expired':
    case 'legacy':
    case 'undecodable': {
      const cookie = signedCookie();
      const key = sessionKey(cookie.slice(8, cookie.lastIndexOf('.')), env.cluster);
      if (kind === 'expired') await seed(redis, key, { c: now - 100, t: 50, x: now - 50, ':user': '"old"' });
      if (kind === 'legacy') await redis.set(key, JSON.stringify({ m: { user: 'old' }, c: now }));
      if (kind === 'undecodable') await seed(redis, key, { c: now, t: 1200, x: now + 1200, ':user': '{not json' });
      return { cookie, key };
    }
  }
}

export function runContract(env: ContractEnv, label: string): void {
  for (const version of env.versions) {
    describe(`the cost table on Koa ${version}, ${label}`, () => {
      for (const row of ROWS) {
        describe(row.request, () => {
          it(row.costs, async () => {
            const options: SessionOptions = { ...row.options, redis: env.redis() };
            const start = await prepare(env, version, row.prepare, options);
            const app = makeApp(version, options, row.handler);
            await app.ready();
            const { res, wire } = await env.request(() => app.get('/', start.cookie));
            await app.close();
            const response = res;

            assert.deepEqual(
              wire.map((c) => c.op),
              row.redis,
              'Redis commands on the wire',
            );
            for (const c of wire) if (start.key && c.op === 'load') assert.equal(c.key, start.key);
            assert.equal(response.status, row.status ?? 200);

            let key = start.key;
            if (row.cookie === 'none') expectNoCookie(response);
            else if (row.cookie === 'cleared') expectCookieCleared(response);
            else {
              const { id } = expectCookieSet(response);
              if (row.cookie === 'new-id') {
                assert.notEqual(sessionKey(id, env.cluster), start.key, 'a new id');
                // A regenerate leaves a marker (`m`, the new key) at the old id for a concurrent logout.
                assert.equal(
                  await isSession(env.inspect(), start.key as string),
                  false,
                  'no session under the old key',
                );
              }
              key = sessionKey(id, env.cluster);
            }
            if (row.stored !== undefined) {
              if (row.stored === null) assert.equal(await env.inspect().exists(key as string), 0);
              else assert.deepEqual(await storedData(env.inspect(), key as string), row.stored);
            }
            if (row.stored && row.stored !== null) {
              const ttl = await env.inspect().ttl(key as string);
              assert.ok(ttl > 1190 && ttl <= 1200, `TTL follows the timeout (got ${ttl})`);
            }
            if (row.keys !== undefined) assert.equal(await env.keyCount(), row.keys, 'keys left in Redis');
          });
        });
      }
    });
  }
}
