/**
 * A user's sessions (README, "A user's sessions"): the `userKey` option's index, kept by the same
 * command as each write, and `middleware.sessions` list / revoke / revokeAll; on one private
 * redis-server and on a private 3-master Redis Cluster, where a login moves the session into its
 * user's slot.
 *
 * Run: node --import tsx --test test/users.test.ts
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Context } from 'koa';
import type { SessionOptions } from '../src/index.js';
import { expectCookieCleared, expectCookieSet, expectNoCookie, makeApp, type TestApp } from './helpers/app.js';
import { closeOpened } from './helpers/cleanup.js';
import { Gates } from './helpers/gates.js';
import { type Backend, nodeUrls, useBackends } from './helpers/backends.js';
import { MultiMonitor, type WireCommand } from './helpers/monitor.js';
import { sessionKey } from './helpers/keys.js';
import { stored } from './helpers/stored.js';
import './helpers/unhandled.js';

const { backends, started } = useBackends(closeOpened);
/** A MONITOR per back end (on Cluster, one per master), for the commands a request sent. */
const monitors = new Map<Backend, MultiMonitor>();
before(async () => {
  await started;
  for (const b of backends) monitors.set(b, await MultiMonitor.start(nodeUrls(b)));
});
after(async () => {
  for (const m of monitors.values()) await m.stop();
});

/** Every key stored, on every master. */
async function keysOf(b: Backend): Promise<string[]> {
  return (await Promise.all(b.masters().map((n) => n.keys('*')))).flat();
}

/** What `send` sent to Redis, with its result. */
function requestOn<T>(b: Backend, send: () => PromiseLike<T>): Promise<{ res: T; wire: WireCommand[] }> {
  return (monitors.get(b) as MultiMonitor).request(send);
}

for (const b of backends) {
  describe(`userKey on ${b.name}: a user index kept by each write, in the same command`, () => {
    /** The routes every test uses: login as ?user=, a write, a read, logout, regenerate. */
    function app(options: SessionOptions = {}): TestApp {
      return makeApp(
        3,
        {
          redis: b.client,
          userKey: 'userId',
          sessionInfo: (ctx: Context) => ({ agent: ctx.query.agent ?? null, path: ctx.path }),
          ...options,
        },
        async (ctx) => {
          const s = ctx.session;
          switch (ctx.path) {
            case '/anon':
              s.cart = ['apple'];
              return 'ok';
            case '/login':
              s.regenerate();
              s.userId = Number(ctx.query.user);
              return s.handle;
            case '/login-in-place':
              s.userId = Number(ctx.query.user);
              return s.handle;
            case '/write':
              s.views = ((s.views as number) ?? 0) + 1;
              return s.handle ?? 'none';
            case '/read':
              return `${String(s.userId ?? 'anonymous')} ${s.handle ?? 'none'}`;
            case '/logout':
              s.invalidate();
              return 'bye';
            case '/forget-user':
              delete s.userId;
              return 'forgot';
            case '/regenerate':
              s.regenerate();
              return s.handle;
            case '/relogin':
              s.invalidate();
              s.userId = Number(ctx.query.user);
              return s.handle;
            default:
              return 'ok';
          }
        },
      );
    }

    /** Rewrite a stored session's expiry (its header's fourth number), the rest and the TTL kept. */
    async function setExpiry(key: string, expires: number): Promise<void> {
      const value = (await b.client.getBuffer(key)) as Buffer;
      const head = value.toString('latin1').split(' ', 4);
      const rest = value.subarray(head.join(' ').length);
      head[3] = expires.toString(36);
      await b.client.set(key, Buffer.concat([Buffer.from(head.join(' '), 'latin1'), rest]), 'KEEPTTL');
    }

    /** The index key of user 7 (a test reads what is stored, by the key a session's header names). */
    async function indexOf(cookieOwnerKey: string): Promise<string> {
      const u = (await stored(b.client, cookieOwnerKey)).u;
      assert.ok(u, `${cookieOwnerKey} is in a user's index`);
      return u;
    }

    it('three browsers log in as one user: list shows three, with their info; revokeAll except this one leaves one', async () => {
      const a = app();
      const jars: Array<{ cookie: string; id: string; handle: string }> = [];
      for (const agent of ['firefox', 'chromium', 'webkit']) {
        const res = await a.get(`/login?user=7&agent=${agent}`);
        const { cookie, id } = expectCookieSet(res);
        jars.push({ cookie, id, handle: res.text });
      }
      const listed = await a.session.sessions.list(7);
      assert.equal(listed.length, 3);
      assert.deepEqual(listed.map((s) => s.handle).sort(), jars.map((j) => j.handle).sort());
      assert.deepEqual(listed.map((s) => (s.info as { agent: string }).agent).sort(), [
        'chromium',
        'firefox',
        'webkit',
      ]);
      for (const s of listed) {
        assert.equal(typeof s.created, 'number');
        assert.ok(s.expires !== null && s.expires > s.created);
        assert.equal(s.lastActive, (s.expires as number) - 1200);
      }
      assert.deepEqual(await a.session.sessions.list(8), [], 'another user has none');
      assert.deepEqual(await a.session.sessions.list('7'), [], "'7' is another user than 7");

      const [keep, ...others] = jars as [(typeof jars)[0], ...typeof jars];
      assert.equal((await a.get('/read', keep.cookie)).text, `7 ${keep.handle}`, 'ctx.session.handle names it');
      assert.equal(await a.session.sessions.revokeAll(7, { except: keep.handle }), 2);
      assert.deepEqual(
        (await a.session.sessions.list(7)).map((s) => s.handle),
        [keep.handle],
      );
      for (const other of others) {
        const res = await a.get('/read', other.cookie);
        assert.equal(res.text, 'anonymous none', 'a revoked session is a fresh one');
        expectCookieCleared(res);
        assert.deepEqual(await stored(b.client, sessionKey(other.id, b.cluster)), {});
      }
      assert.equal((await a.get('/read', keep.cookie)).text, `7 ${keep.handle}`);
      assert.equal(await a.session.sessions.revoke(7, keep.handle), 1);
      assert.equal(await a.session.sessions.revoke(7, keep.handle), 0, 'once');
      assert.equal((await a.get('/read', keep.cookie)).text, 'anonymous none');
      assert.deepEqual(await keysOf(b), [], 'no index left behind');
    });

    it('a read-only request of an indexed session costs one command, and keeps the index alive with the session', async () => {
      const a = app({ timeout: 600 });
      const { cookie, id } = expectCookieSet(await a.get('/login?user=3'));
      const index = await indexOf(sessionKey(id, b.cluster));
      await a.ready();
      // The stored expiry as if the session were last used 100 s ago: a read moves it.
      await setExpiry(sessionKey(id, b.cluster), Math.floor(Date.now() / 1000) + 500);
      await b.client.expire(index, 30);
      const { wire } = await requestOn(b, () => a.get('/read', cookie));
      assert.deepEqual(
        wire.map((c) => c.op),
        ['load'],
      );
      assert.ok((await b.client.ttl(index)) > 500, 'the refresh stretched the index with the session');
      const { wire: writes } = await requestOn(b, () => a.get('/write', cookie));
      assert.deepEqual(
        writes.map((c) => c.op),
        ['load', 'patch'],
      );
    });

    it('login in place (no regenerate), a new session logging in, and the index follows regenerate, logout and a user change', async () => {
      const a = app();
      // A session that exists before login: the write that sets the user key indexes it. On one
      // server in place (a patch); on Cluster it moves into its user's slot: two commands, a new id.
      let anon = expectCookieSet(await a.get('/anon'));
      const { res: login, wire } = await requestOn(b, () => a.get('/login-in-place?user=5', anon.cookie));
      assert.deepEqual(
        wire.map((c) => c.op),
        b.cluster ? ['load', 'handoff', 'create'] : ['load', 'patch'],
      );
      if (b.cluster) {
        const old = anon;
        anon = expectCookieSet(login);
        assert.notEqual(anon.id, old.id);
        assert.equal((await a.get('/read', old.cookie)).text, 'anonymous none', 'the old id leads nowhere');
      } else expectNoCookie(login);
      assert.equal((await a.get('/read', anon.cookie)).text, `5 ${login.text}`);
      const index5 = await indexOf(sessionKey(anon.id, b.cluster));
      assert.equal((await a.session.sessions.list(5)).length, 1);
      // A new session that logs in: one create, indexed.
      const { res: fresh, wire: created } = await requestOn(b, () => a.get('/login-in-place?user=5'));
      assert.deepEqual(
        created.map((c) => c.op),
        ['create'],
      );
      const second = expectCookieSet(fresh);
      assert.equal((await a.session.sessions.list(5)).length, 2);
      // regenerate(): the entry follows the session to its new key, the handle stays.
      const before = (await a.get('/read', second.cookie)).text;
      let moved = expectCookieSet(await a.get('/regenerate', second.cookie));
      assert.notEqual(moved.id, second.id);
      assert.equal((await a.get('/read', moved.cookie)).text, before, 'same user, same handle');
      assert.deepEqual(
        (await b.client.hvals(index5)).sort(),
        [sessionKey(anon.id, b.cluster), sessionKey(moved.id, b.cluster)].sort(),
      );
      // Logged in as another user: out of 5's index, into 6's, under a new handle.
      const six = await a.get('/login-in-place?user=6', moved.cookie);
      if (b.cluster) moved = expectCookieSet(six);
      assert.deepEqual(await b.client.hvals(index5), [sessionKey(anon.id, b.cluster)]);
      assert.equal((await a.session.sessions.list(6)).length, 1);
      assert.equal((await a.get('/read', moved.cookie)).text, `6 ${six.text}`);
      assert.notEqual(six.text, before.split(' ')[1], 'a new handle');
      // The user key removed: out of every index, the session kept.
      assert.equal((await a.get('/forget-user', moved.cookie)).text, 'forgot');
      assert.deepEqual(await a.session.sessions.list(6), []);
      assert.equal((await a.get('/read', moved.cookie)).text, 'anonymous none');
      // Logout ends the session and its entry.
      expectCookieCleared(await a.get('/logout', anon.cookie));
      assert.deepEqual(await a.session.sessions.list(5), []);
      assert.deepEqual(await b.client.exists(index5), 0, 'an empty index is removed');
    });

    it('invalidate() then login in one request: the old session ends, the new one is indexed (on Cluster: end, then create in the user slot)', async () => {
      const a = app();
      const old = expectCookieSet(await a.get('/login?user=11'));
      const { res, wire } = await requestOn(b, () => a.get('/relogin?user=12', old.cookie));
      assert.deepEqual(
        wire.map((c) => c.op),
        b.cluster ? ['load', 'end', 'create'] : ['load', 'replace'],
      );
      const fresh = expectCookieSet(res);
      assert.notEqual(fresh.id, old.id);
      assert.deepEqual(await a.session.sessions.list(11), [], 'the old session left its index');
      assert.deepEqual(
        (await a.session.sessions.list(12)).map((l) => l.handle),
        [res.text],
      );
      assert.equal((await a.get('/read', old.cookie)).text, 'anonymous none');
      assert.equal((await a.get('/read', fresh.cookie)).text, `12 ${res.text}`);
    });

    it('an invalidate() and new data that loaded before a login lands after it: the logged-in session ends too (20 runs)', async () => {
      for (let run = 0; run < 20; run++) {
        const gates = new Gates();
        const a = makeApp(3, { redis: b.client, userKey: 'userId' }, async (ctx) => {
          const s = ctx.session;
          if (ctx.path === '/anon') s.cart = ['apple'];
          else if (ctx.path === '/login') s.userId = 21;
          else if (ctx.path === '/replace') {
            await gates.arrive('replace');
            s.invalidate();
            s.cart = ['pear'];
          } else return `${String(s.userId ?? 'anonymous')} ${JSON.stringify(s.cart ?? null)}`;
          return 'ok';
        });
        const anon = expectCookieSet(await a.get('/anon'));
        const replacing = a.get('/replace', anon.cookie).then((res) => res);
        await gates.reached('replace');
        const login = await a.get('/login', anon.cookie);
        gates.release('replace');
        const replaced = await replacing;
        assert.equal(replaced.status, 200);
        const fresh = expectCookieSet(replaced);
        assert.deepEqual(await a.session.sessions.list(21), [], 'the logged-in session was ended by the invalidate()');
        assert.equal((await a.get('/read', anon.cookie)).text, 'anonymous null');
        if (b.cluster) assert.equal((await a.get('/read', expectCookieSet(login).cookie)).text, 'anonymous null');
        assert.equal((await a.get('/read', fresh.cookie)).text, 'anonymous ["pear"]');
        await a.close();
        await Promise.all(b.masters().map((n) => n.flushall()));
      }
    });

    it('sessions that ended without a script seeing it (expired, evicted) are pruned by the next list, revoke, login or write of that user', async () => {
      const a = app();
      const one = expectCookieSet(await a.get('/login?user=9'));
      const two = expectCookieSet(await a.get('/login?user=9'));
      const index = await indexOf(sessionKey(one.id, b.cluster));
      await b.client.del(sessionKey(one.id, b.cluster)); // as a TTL or an eviction would
      assert.equal(await b.client.hlen(index), 2);
      assert.equal((await a.session.sessions.list(9)).length, 1);
      assert.equal(await b.client.hlen(index), 1, 'list pruned it');
      await b.client.del(sessionKey(two.id, b.cluster));
      const three = expectCookieSet(await a.get('/login?user=9'));
      assert.equal(await b.client.hlen(index), 1, 'a login pruned the other');
      const four = expectCookieSet(await a.get('/login?user=9'));
      await b.client.del(sessionKey(three.id, b.cluster));
      assert.equal(await b.client.hlen(index), 2);
      await a.get('/write', four.cookie);
      assert.equal(await b.client.hlen(index), 1, "a write of the user's other session swept it");
      assert.equal(await a.session.sessions.revokeAll(9), 1);
      assert.deepEqual(await keysOf(b), []);
    });

    it('LRU mode (setRedisTtl off): a session past its stored expiry is not listed, and is pruned', async () => {
      const a = app({ setRedisTtl: false, timeout: 60 });
      const { id } = expectCookieSet(await a.get('/login?user=4'));
      const index = await indexOf(sessionKey(id, b.cluster));
      assert.equal(await b.client.ttl(index), -1, 'no TTL in LRU mode');
      await setExpiry(sessionKey(id, b.cluster), Math.floor(Date.now() / 1000) - 5); // past, as stored
      assert.deepEqual(await a.session.sessions.list(4), []);
      assert.equal(await b.client.exists(index), 0);
    });

    it('needs the option: sessions.* without userKey, and bad arguments, are TypeErrors', async () => {
      const plain = makeApp(3, { redis: b.client }, () => 'ok');
      await assert.rejects(plain.session.sessions.list(1), /needs the option "userKey"/);
      const a = app();
      await assert.rejects(a.session.sessions.list(null), /userId must be/);
      await assert.rejects(a.session.sessions.revoke(1, '' as string), /handle must be/);
      assert.throws(() => makeApp(3, { redis: b.client, userKey: 'id' }, () => 'ok'), /userKey/);
      assert.throws(() => makeApp(3, { redis: b.client, sessionInfo: () => ({}) }, () => 'ok'), /sessionInfo/);
      expectNoCookie(await a.get('/read'));
    });
  });
}
