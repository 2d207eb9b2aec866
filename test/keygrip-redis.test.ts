/**
 * The key rings of test/unit/keygrip.test.ts over HTTP, with a real Redis: whatever `app.keys` is
 * (secrets, or a Keygrip the application made), a session is created and read back, its CSRF token
 * accepted, an older key's cookie re-signed with the newest, and a tampered signature of any length
 * costs no Redis command.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import Keygrip from 'keygrip';
import Koa from 'koa';
import request from 'supertest';
import { csrfProtect, koaRedisSession } from '../src/index.js';
import {
  KEYS,
  expectCookieCleared,
  expectCookieSet,
  expectNoCookie,
  makeApp,
  setCookies,
  type SetCookie,
} from './helpers/app.js';
import { closeable } from './helpers/cleanup.js';
import { useRedis } from './helpers/fixture.js';
import { NEWEST, OLDER, USER_RINGS, tampered } from './helpers/rings.js';

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
  const RINGS: Array<{
    name: string;
    keys: () => string[] | Keygrip;
    older: () => string[] | Keygrip;
    sign: (data: string) => string;
    length: number;
  }> = [
    {
      name: 'app.keys = [secrets]',
      keys: () => KEYS,
      older: () => [OLDER],
      sign: (d) => new Keygrip([NEWEST]).sign(d),
      length: 27,
    },
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
      assert.deepEqual(
        wire.map((c) => c.op),
        ['load'],
      );
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
      assert.deepEqual(
        wire.map((c) => c.op),
        ['load'],
        're-signing writes nothing',
      );
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
