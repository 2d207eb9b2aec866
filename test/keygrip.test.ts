/**
 * The key ring is built on keygrip (src/cookie.ts): its cookies and keygrip's are interchangeable, an
 * older key's cookie is re-signed with the newest, and a ring the application made itself
 * (`app.keys = new Keygrip(keys, 'sha256')`, or SHA-384/512 in hex) signs and verifies cookies and
 * CSRF tokens, a tampered signature of any of these lengths costing no Redis command.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import Keygrip from 'keygrip';
import Koa from 'koa';
import request from 'supertest';
import {
  CookieCodec,
  CUSTOM_ID_PATTERN,
  DEFAULT_ID_PATTERN,
  KeygripKeyRing,
  MAX_COOKIE_VALUE,
  WrappedKeyRing,
  defaultGenId,
  toKeyRing,
  type KeyRing,
} from '../src/cookie.js';
import { csrfProtect, koaRedisSession } from '../src/index.js';
import { KEYS, expectCookieCleared, expectCookieSet, expectNoCookie, makeApp, setCookies, type SetCookie } from './helpers/app.js';
import { closeable } from './helpers/cleanup.js';
import { useRedis } from './helpers/fixture.js';

const [NEWEST, OLDER] = KEYS as [string, string];

/** A ring that counts what is asked of it. */
function counting(ring: KeyRing): KeyRing & { signs: number; indexes: number } {
  const counted = {
    signs: 0,
    indexes: 0,
    sign: (data: string) => {
      counted.signs++;
      return ring.sign(data);
    },
    index: (data: string, digest: string) => {
      counted.indexes++;
      return ring.index(data, digest);
    },
  };
  return counted;
}

/** The same signature with its last character changed, staying in its alphabet (hex stays hex). */
function tampered(signature: string): string {
  const last = signature.at(-1) as string;
  return signature.slice(0, -1) + (last === 'a' ? 'b' : 'a');
}

/** Each ring an application may make, with the length of the signatures it makes. */
const USER_RINGS: Array<{ name: string; make: (keys: string[]) => Keygrip; length: number }> = [
  { name: "new Keygrip(keys, 'sha256')", make: (keys) => new Keygrip(keys, 'sha256'), length: 43 },
  { name: "new Keygrip(keys, 'sha512', 'hex')", make: (keys) => new Keygrip(keys, 'sha512', 'hex'), length: 128 },
  { name: "new Keygrip(keys, 'sha384', 'hex')", make: (keys) => new Keygrip(keys, 'sha384', 'hex'), length: 96 },
];

describe('the ring from a list of secrets, against keygrip', () => {
  const ids = Array.from({ length: 200 }, defaultGenId);

  it('verifies what new Keygrip(keys) signs, and keygrip verifies what it signs, key index included', () => {
    const ring = toKeyRing(KEYS, 'keys');
    assert.ok(ring instanceof KeygripKeyRing);
    const theirs = new Keygrip(KEYS);
    for (const id of ids) {
      const data = `session=${id}`;
      assert.equal(ring.sign(data), theirs.sign(data));
      assert.equal(ring.index(data, theirs.sign(data)), 0);
      assert.equal(ring.index(data, new Keygrip([OLDER]).sign(data)), 1);
      assert.equal(theirs.index(data, ring.sign(data)), 0);
      assert.equal(theirs.index(data, new KeygripKeyRing([OLDER]).sign(data)), 1);
    }
  });

  it('verifies a whole cookie made with keygrip, and keygrip one made by the ring', () => {
    const ours = new CookieCodec('session', toKeyRing(KEYS, 'keys'), DEFAULT_ID_PATTERN);
    const theirs = new CookieCodec('session', new Keygrip(KEYS), DEFAULT_ID_PATTERN);
    const older = new CookieCodec('session', new Keygrip([OLDER]), DEFAULT_ID_PATTERN);
    for (const id of ids.slice(0, 20)) {
      assert.equal(ours.encode(id), theirs.encode(id));
      assert.deepEqual(ours.decode(theirs.encode(id)), { kind: 'valid', id, keyIndex: 0 });
      assert.deepEqual(ours.decode(older.encode(id)), { kind: 'valid', id, keyIndex: 1 });
      assert.deepEqual(theirs.decode(ours.encode(id)), { kind: 'valid', id, keyIndex: 0 });
    }
  });

  it('keeps refusing empty rings and empty keys', () => {
    for (const bad of [[], [''], [Buffer.alloc(0)], ['k', ''], ['k', 1], 'k', null, {}]) {
      assert.throws(() => toKeyRing(bad, 'keys'), TypeError);
    }
  });
});

describe("a ring the application made (wrapped: its sign() first, its own index() only for other keys)", () => {
  for (const { name, make, length } of USER_RINGS) {
    it(`${name}: same answers as the ring itself, its index() asked only when the newest key did not sign`, () => {
      const own = counting(make(KEYS));
      const ring = toKeyRing(own, 'keys');
      assert.ok(ring instanceof WrappedKeyRing);
      const data = `session=${defaultGenId()}`;
      const newest = make([NEWEST]).sign(data);
      const older = make([OLDER]).sign(data);
      assert.equal(newest.length, length);
      assert.equal(ring.sign(data), newest);

      own.indexes = 0;
      assert.equal(ring.index(data, newest), 0);
      assert.equal(own.indexes, 0, 'the newest key is checked without keygrip index()');
      assert.equal(ring.index(data, older), 1);
      assert.equal(ring.index(data, tampered(newest)), -1);
      assert.equal(ring.index(data, newest.slice(1)), -1);
      assert.equal(ring.index(data, `${newest}a`), -1);
      assert.equal(ring.index(data, 'é'.repeat(length)), -1, 'same length in characters, not in bytes');
      assert.equal(own.indexes, 5);
    });
  }

  it('keeps the ring as it is when it is already one of ours', () => {
    const ring = toKeyRing(KEYS, 'keys');
    assert.equal(toKeyRing(ring, 'keys'), ring);
    const wrapped = toKeyRing(new Keygrip(KEYS, 'sha256'), 'keys');
    assert.equal(toKeyRing(wrapped, 'keys'), wrapped);
  });
});

describe('the cookie format: whatever the ring signs, garbage refused before any HMAC', () => {
  for (const { name, make, length } of USER_RINGS) {
    it(`${name}: a ${length}-character signature verifies; tampered, it is a bad signature`, () => {
      const codec = new CookieCodec('session', toKeyRing(make(KEYS), 'keys'), DEFAULT_ID_PATTERN);
      const id = defaultGenId();
      const value = codec.encode(id);
      assert.equal(value.length, 43 + 1 + length);
      assert.deepEqual(codec.decode(value), { kind: 'valid', id, keyIndex: 0 });
      assert.deepEqual(codec.decode(tampered(value)), { kind: 'invalid', reason: 'signature' });
    });
  }

  it('a 200-character custom id with a 128-character hex signature fits; one more character does not', () => {
    const codec = new CookieCodec('session', toKeyRing(new Keygrip(KEYS, 'sha512', 'hex'), 'keys'), CUSTOM_ID_PATTERN);
    const id = 'u'.repeat(200);
    const value = codec.encode(id);
    assert.equal(value.length, MAX_COOKIE_VALUE);
    assert.deepEqual(codec.decode(value), { kind: 'valid', id, keyIndex: 0 });
    assert.deepEqual(codec.decode(`u${value}`), { kind: 'invalid', reason: 'format' });
  });

  it('refuses garbage without signing or verifying anything', () => {
    const ring = counting(toKeyRing(new Keygrip(KEYS, 'sha512', 'hex'), 'keys'));
    const codec = new CookieCodec('session', ring, DEFAULT_ID_PATTERN);
    const id = defaultGenId();
    for (const garbage of [
      `${id}.${'a'.repeat(129)}`,
      `${id}.${'a'.repeat(64)}/${'a'.repeat(63)}`,
      `${id}.${'a'.repeat(64)}=`,
      `${id}.${'é'.repeat(20)}`,
      `${id}.`,
      `${id.slice(1)}.${'a'.repeat(128)}`,
      'x'.repeat(MAX_COOKIE_VALUE + 1),
    ]) {
      assert.deepEqual(codec.decode(garbage), { kind: 'invalid', reason: 'format' }, garbage);
    }
    assert.equal(ring.signs + ring.indexes, 0);
  });

  it('the ring from secrets refuses a signature of any other length than SHA-1 base64url before an HMAC', () => {
    const ring = new KeygripKeyRing(KEYS);
    const data = `session=${defaultGenId()}`;
    assert.equal(KeygripKeyRing.SIGNATURE_LENGTH, ring.sign(data).length);
    assert.equal(ring.index(data, new Keygrip(KEYS, 'sha256').sign(data)), -1);
    assert.equal(ring.index(data, new Keygrip(KEYS, 'sha1', 'hex').sign(data)), -1);
  });
});

describe('over HTTP, with a real Redis', () => {
  const f = useRedis();

  /** An app whose `app.keys` is `keys`, with csrfProtect(): GET /login stores a user and answers
   *  the CSRF token, GET /me answers the session, POST /x is guarded. */
  function keygripApp(keys: string[] | Keygrip) {
    const koa = new Koa();
    koa.keys = keys;
    koa.silent = true;
    const session = koaRedisSession({ redis: f.server.url });
    const close = closeable(() => session.close());
    koa.use(session);
    koa.use(csrfProtect());
    koa.use((ctx) => {
      if (ctx.path === '/login') {
        ctx.session.user = 'ada';
        ctx.body = ctx.session.getCsrfToken();
      } else if (ctx.path === '/me') {
        ctx.body = { id: ctx.session.id, isNew: ctx.session.isNew, user: ctx.session.user ?? null };
      } else {
        ctx.body = 'done';
      }
    });
    const agent = request(koa.callback());
    return {
      get: (path: string, cookie?: string) => (cookie ? agent.get(path).set('Cookie', cookie) : agent.get(path)),
      post: (path: string, cookie: string, token?: string) => {
        const req = agent.post(path).set('Cookie', cookie);
        return token === undefined ? req : req.set('X-CSRF-Token', token);
      },
      ready: () => session.redis.ping(),
      close,
    };
  }

  /** Each `app.keys`: the ring, the older key alone in the same form, the newest key's signature. */
  const RINGS: Array<{ name: string; keys: () => string[] | Keygrip; older: () => string[] | Keygrip; sign: (data: string) => string; length: number }> = [
    { name: 'app.keys = [secrets]', keys: () => KEYS, older: () => [OLDER], sign: (d) => new Keygrip([NEWEST]).sign(d), length: 27 },
    ...USER_RINGS.map(({ name, make, length }) => ({
      name: `app.keys = ${name}`,
      keys: () => make(KEYS),
      older: () => make([OLDER]),
      sign: (d: string) => make([NEWEST]).sign(d),
      length,
    })),
  ];

  for (const { name, keys, older: olderKeys, sign, length } of RINGS) {
    it(`${name}: a session is created, read back with its cookie, and its CSRF token accepted`, async () => {
      const app = keygripApp(keys());
      await app.ready();
      const login = await app.get('/login');
      assert.equal(login.status, 200);
      const { cookie, id } = expectCookieSet(login);
      assert.equal(cookie, `session=${id}.${sign(`session=${id}`)}`);
      assert.equal(cookie.length - 'session='.length - id.length - 1, length);

      const { res: me, wire } = await f.monitor.request(() => app.get('/me', cookie));
      assert.deepEqual(me.body, { id, isNew: false, user: 'ada' });
      assert.deepEqual(wire.map((c) => c.op), ['load']);
      expectNoCookie(me);

      const token = login.text;
      assert.equal((await app.post('/x', cookie, token)).status, 200, 'the session token');
      assert.equal((await app.post('/x', cookie, tampered(token))).status, 403, 'a tampered token');
      assert.equal((await app.post('/x', cookie)).status, 403, 'no token');
      await app.close();
    });

    it(`${name}: a tampered ${length}-character signature is a fresh session without a Redis command`, async () => {
      const app = keygripApp(keys());
      await app.ready();
      const { cookie } = expectCookieSet(await app.get('/login'));
      const { res, wire } = await f.monitor.request(() => app.get('/me', tampered(cookie)));
      assert.equal(res.status, 200);
      assert.equal(res.body.isNew, true);
      assert.equal(res.body.user, null);
      assert.deepEqual(wire, []);
      expectCookieCleared(res);
      await app.close();
    });

    it(`${name}: a cookie signed with the older key is accepted and re-signed with the newest`, async () => {
      const older = keygripApp(olderKeys());
      await older.ready();
      const { cookie: old, id } = expectCookieSet(await older.get('/login'));
      await older.close();

      const app = keygripApp(keys());
      await app.ready();
      const { res, wire } = await f.monitor.request(() => app.get('/me', old));
      assert.deepEqual(res.body, { id, isNew: false, user: 'ada' });
      assert.deepEqual(wire.map((c) => c.op), ['load'], 're-signing writes nothing');
      const { cookie } = expectCookieSet(res);
      assert.equal(cookie, `session=${id}.${sign(`session=${id}`)}`);
      const again = await app.get('/me', cookie);
      assert.deepEqual(again.body, { id, isNew: false, user: 'ada' });
      expectNoCookie(again);
      await app.close();
    });
  }

  it('a session made under app.keys = new Keygrip(keys) is read under app.keys = keys, and the other way round', async () => {
    for (const [writer, reader] of [
      [new Keygrip(KEYS), KEYS],
      [KEYS, new Keygrip(KEYS)],
    ] as Array<[string[] | Keygrip, string[] | Keygrip]>) {
      const a = keygripApp(writer);
      const { cookie, id } = expectCookieSet(await a.get('/login'));
      await a.close();
      const b = keygripApp(reader);
      const res = await b.get('/me', cookie);
      assert.deepEqual(res.body, { id, isNew: false, user: 'ada' });
      expectNoCookie(res);
      await b.close();
    }
  });

  it('with makeApp: an older key cookie made by keygrip is re-signed, attributes kept', async () => {
    const seed = makeApp(3, { redis: f.server.url, keys: [OLDER] }, (ctx) => {
      ctx.session.n = 1;
    });
    const { id } = expectCookieSet(await seed.get('/'));
    await seed.close();
    const app = makeApp(3, { redis: f.server.url }, (ctx) => String(ctx.session.n));
    const res = await app.get('/', `session=${id}.${new Keygrip([OLDER]).sign(`session=${id}`)}`);
    assert.equal(res.text, '1');
    const set = expectCookieSet(res);
    assert.equal(set.cookie, `session=${id}.${new Keygrip(KEYS).sign(`session=${id}`)}`);
    const { attributes } = setCookies(res)[0] as SetCookie;
    assert.equal(attributes.path, '/');
    assert.equal(attributes.httponly, true);
    assert.equal(attributes.samesite, 'lax');
    await app.close();
  });
});
