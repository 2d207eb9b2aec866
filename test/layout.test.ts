/**
 * The stored form under damage (docs/design.md, "Storage"): whatever sits under a session key, the
 * scripts answer, never hang or raise, and Redis stays available; a retried rotate is never taken for
 * a replay. Found by a review that tried to break the string layout.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DeserializationError, PayloadLegacyError, type InvalidSessionError } from '../src/index.js';
import { header, packSession } from '../src/store/layout.js';
import { patchLua, rotateLua } from '../src/store/scripts.generated.js';
import { makeApp, expectCookieCleared } from './helpers/app.js';
import { signedCookie, useRedis } from './helpers/fixture.js';
import { stored } from './helpers/stored.js';

const f = useRedis();
const now = () => Math.floor(Date.now() / 1000);

/** One request with `cookie` after `prepare`; what onInvalid was told and the response. */
async function load(cookie: string, options: Record<string, unknown> = {}) {
  const seen: InvalidSessionError[] = [];
  const app = makeApp(
    3,
    { redis: f.server.url, commandTimeout: 5000, onInvalid: (_ctx, err) => seen.push(err), ...options },
    (ctx) => JSON.stringify({ isNew: ctx.session.isNew }),
  );
  try {
    return { res: await app.get('/', cookie), seen };
  } finally {
    await app.close();
  }
}

const keyOf = (cookie: string) => `sess:${cookie.slice(8, cookie.lastIndexOf('.'))}`;

describe('a previous-layout hash with numbers 0.1 never wrote', () => {
  for (const [field, value] of [
    ['x', '-5'],
    ['x', 'inf'],
    ['t', 'nan'],
    ['t', '1.5'],
    ['c', '-1'],
    ['c', '1e300'],
  ] as const) {
    it(`${field} = ${value}: legacy, deleted, and Redis answers others meanwhile`, async () => {
      const cookie = signedCookie();
      const key = keyOf(cookie);
      await f.redis.hset(key, { c: now(), v: 1, t: 1200, x: now() + 1200, ':user': '"ada"', [field]: value });
      const { res, seen } = await load(cookie);
      assert.equal(res.status, 200);
      assert.equal(JSON.parse(res.text).isNew, true);
      assert.ok(seen[0] instanceof PayloadLegacyError, `a PayloadLegacyError, got ${String(seen[0])}`);
      assert.equal(await f.redis.exists(key), 0);
      assert.equal(await f.redis.ping(), 'PONG');
    });
  }
});

describe('a damaged value under a session key', () => {
  it('a marker whose map is not MessagePack is foreign: deleted as legacy, and a logout through it ends it', async () => {
    const cookie = signedCookie();
    const key = keyOf(cookie);
    await f.redis.set(key, Buffer.from([0x6d, 0x20, 0xc1, 0xff, 0x00]));
    const { res, seen } = await load(cookie);
    assert.equal(res.status, 200);
    assert.ok(seen[0] instanceof PayloadLegacyError);
    assert.equal(await f.redis.exists(key), 0);
  });

  it('a session header over a truncated map is an undecodable payload: a 500 naming no key, or a fresh session with deserializedFailsNew', async () => {
    const cookie = signedCookie();
    const key = keyOf(cookie);
    const whole = packSession(header(now(), 1200, now() + 1200), [':user', '"ada"', ':cart', '[1,2,3]']);
    await f.redis.set(key, whole.subarray(0, whole.length - 4), 'EX', 1200);
    const strict = await load(cookie);
    assert.equal(strict.res.status, 500);
    const relaxed = await load(cookie, { deserializedFailsNew: true });
    assert.equal(relaxed.res.status, 200);
    assert.equal(JSON.parse(relaxed.res.text).isNew, true);
    expectCookieCleared(relaxed.res);
    assert.ok(relaxed.seen[0] instanceof DeserializationError, String(relaxed.seen[0]));
    assert.equal((relaxed.seen[0] as DeserializationError).key, '');
    assert.match(String((relaxed.seen[0] as Error).message), /cannot be unpacked/);
  });

  it('a write to a session whose map is damaged answers gone, never a script error', async () => {
    const whole = packSession(header(now(), 1200, now() + 1200), [':user', '"ada"']);
    await f.redis.set('sess:damaged', whole.subarray(0, whole.length - 3));
    const intent = [now(), '1', 65536, '', '0', 0, 1, 'WRITER01a', -1, ':user', '"bob"'];
    assert.equal(await f.redis.eval(patchLua, 1, 'sess:damaged', ...intent), -1);
  });
});

describe('an id drawn again after a collision', () => {
  for (const [when, last] of [
    ['one operation later', 'WRITER018'],
    ['more operations later than a session remembers', 'WRITER01zz'],
  ] as const) {
    it(`a replace whose second draw is a session this writer patched ${when} answers 0 (draw again), never 'done'`, async () => {
      const o = (op: string) => ['o', `${op}=1`];
      await f.redis.set(
        'sess:bob',
        packSession(header(now(), 1200, now() + 1200), [':user', '"bob"', ...o('WRITER012')]),
      );
      await f.redis.set('sess:alice', packSession(header(now(), 1200, now() + 1200), [':user', '"alice"', ...o(last)]));
      const value = packSession(header(now(), 1200, now() + 1200), [':user', '"bob2"', ...o('WRITER017')]);
      // An older operation of the same writer than alice's last, which never ran there: not a replay.
      assert.equal(await f.redis.eval(rotateLua, 2, 'sess:bob', 'sess:alice', 'replace', 1200, 'WRITER017', value), 0);
      assert.equal((await stored(f.redis, 'sess:alice'))[':user'], '"alice"');
      assert.equal(
        (await stored(f.redis, 'sess:bob'))[':user'],
        '"bob"',
        'the old session is not ended by an attempt that stored nothing',
      );
    });
  }
});
