/**
 * Options are validated at koaRedisSession() time with a message naming the option (README
 * "Options"); a missing key ring fails at creation when the app is given, else at the first request.
 * No Redis: every client here is lazy and is never asked to connect, and it points at a port nobody
 * listens on, so a regression that did connect would reach no Redis at all (the options' effects on
 * the wire and on what is stored are in test/options.test.ts).
 */
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import Koa from 'koa';
import request from 'supertest';
import { koaRedisSession, type SessionOptions } from '../../src/index.js';
import { freePort } from '../helpers/redis-server.js';

let closedPort: number;
before(async () => {
  closedPort = await freePort();
});

describe('option validation', () => {
  const cases: Array<[string, unknown, RegExp]> = [
    ['an unknown option', { tiemout: 5 }, /unknown option "tiemout"/],
    ['timeout that is not a whole number', { timeout: 1.5 }, /option "timeout" must be a whole number/],
    ['a negative timeout', { timeout: -1 }, /option "timeout"/],
    [
      'timeoutTrigger >= timeout',
      { timeout: 100, timeoutTrigger: 100 },
      /option "timeoutTrigger" must be less than timeout \(100\)/,
    ],
    ['timeoutTrigger without timeout', { timeout: 0, timeoutTrigger: 10 }, /option "timeoutTrigger"/],
    ['setRedisTtl not a boolean', { setRedisTtl: 'yes' }, /option "setRedisTtl" must be a boolean/],
    ['detectChanges not a boolean', { detectChanges: 1 }, /option "detectChanges"/],
    ['deserializedFailsNew not a boolean', { deserializedFailsNew: 'true' }, /option "deserializedFailsNew"/],
    ['invalidateEmptySession not a boolean', { invalidateEmptySession: null }, /option "invalidateEmptySession"/],
    ['cookieOnException not a boolean', { cookieOnException: 0 }, /option "cookieOnException"/],
    ['allowCookies not a function', { allowCookies: true }, /option "allowCookies" must be a function/],
    ['onInvalid not a function', { onInvalid: 'log' }, /option "onInvalid" must be a function/],
    ['genId not a function', { genId: 'uuid' }, /option "genId" must be a function/],
    ['a serializer without parse', { serializer: { stringify: JSON.stringify } }, /option "serializer"/],
    ['an empty prefix type', { prefix: 5 }, /option "prefix" must be a string/],
    ['an empty contextKey', { contextKey: '' }, /option "contextKey"/],
    ['empty keys', { keys: [] }, /option "keys" must be a non-empty array/],
    ['keys of the wrong type', { keys: 'secret' }, /option "keys" must be an array/],
    ['a redis URL of another scheme', { redis: 'http://localhost' }, /option "redis" must be a redis:\/\//],
    ['a redis option of the wrong type', { redis: 6379 }, /option "redis"/],
    ['an unknown cookie attribute', { cookie: { maxage: 5 } }, /unknown option "cookie.maxage"/],
    ['a bad cookie name', { cookie: { name: 'my session' } }, /option "cookie.name"/],
    ['a cookie maxAge of zero', { cookie: { maxAge: 0 } }, /option "cookie.maxAge" must be a number of milliseconds/],
    ['a bad sameSite', { cookie: { sameSite: 'loose' } }, /option "cookie.sameSite"/],
    ['sameSite none without secure', { cookie: { sameSite: 'none', secure: false } }, /option "cookie.sameSite"/],
    ['partitioned without secure', { cookie: { partitioned: true, secure: false } }, /option "cookie.partitioned"/],
    ['a bad priority', { cookie: { priority: 'urgent' } }, /option "cookie.priority"/],
    ['a cookie path without a slash', { cookie: { path: 'app' } }, /option "cookie.path"/],
    // null is a value, not "the default": only the options whose type takes null take it.
    ['a null prefix', { prefix: null }, /option "prefix" must be a string, got null/],
    ['a null maxSize', { maxSize: null }, /option "maxSize" must be a whole number of bytes above 0, got null/],
    ['a null serializer', { serializer: null }, /option "serializer" must be an object/],
    ['a null onRedisError', { onRedisError: null }, /option "onRedisError"/],
    ['a null cookie name', { cookie: { name: null } }, /option "cookie.name"/],
    ['a null cookie sameSite', { cookie: { sameSite: null } }, /option "cookie.sameSite"/],
  ];
  for (const [what, options, message] of cases) {
    it(`rejects ${what}`, () => {
      assert.throws(
        () => koaRedisSession(options as SessionOptions),
        (err: Error) => err instanceof TypeError && message.test(err.message),
      );
    });
  }

  it('rejects an app without keys at creation when the app is given', () => {
    const app = new Koa();
    assert.throws(
      () => koaRedisSession({ redis: { lazyConnect: true, port: closedPort } }, app),
      /no signing keys; set option "keys" or app.keys/,
    );
  });

  it('fails the first request with the same message when no keys exist at all', async (t) => {
    const app = new Koa();
    app.silent = true;
    const mw = koaRedisSession({ redis: { lazyConnect: true, port: closedPort } });
    t.after(() => mw.close());
    let seen: unknown;
    app.use(async (ctx, next) => {
      try {
        await next();
      } catch (err) {
        seen = err;
        ctx.status = 500;
      }
    });
    app.use(mw);
    await request(app.callback()).get('/');
    assert.match(String(seen), /no signing keys/);
  });
});
