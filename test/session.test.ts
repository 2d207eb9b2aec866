/**
 * ctx.session as the handler sees it: plain data, reserved members, and what each member does to
 * the request's Redis command.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { inspect } from 'node:util';
import type { Context, Middleware } from 'koa';
import { RESERVED_MEMBERS } from '../src/index.js';
import { catchError, expectCookieCleared, expectCookieSet, expectNoCookie, makeApp } from './helpers/app.js';
import { afterSeed, assertBetween, assertTtl, storedData, useRedis } from './helpers/fixture.js';
import { isSession, stored } from './helpers/stored.js';

const f = useRedis();

/** Seed `{ user: 'ada', cart: { n: 1 } }`, then run handler on a second request; its commands by name. */
async function withSession(handler: (ctx: Context) => unknown, before?: Middleware) {
  const { res, wire, id, key } = await afterSeed(f, { seed: { user: 'ada', cart: { n: 1 } }, handler, before });
  return { res, wire: wire.map((c) => c.op), id, key };
}

describe('data', () => {
  it('is plain property access: keys, in, JSON, spread', async () => {
    const { res } = await withSession((ctx) =>
      JSON.stringify({
        keys: Object.keys(ctx.session),
        has: 'cart' in ctx.session,
        hasNot: 'nope' in ctx.session,
        json: JSON.parse(JSON.stringify(ctx.session)),
        spread: { ...ctx.session },
        entries: Object.entries(ctx.session).length,
      }),
    );
    assert.deepEqual(JSON.parse(res.text), {
      keys: ['user', 'cart'],
      has: true,
      hasNot: false,
      json: { user: 'ada', cart: { n: 1 } },
      spread: { user: 'ada', cart: { n: 1 } },
      entries: 2,
    });
  });

  it('shows data only in util.inspect', async () => {
    const { res } = await withSession((ctx) => inspect(ctx.session));
    assert.equal(res.text, "{ user: 'ada', cart: { n: 1 } }");
  });

  // Nested changes are found by re-encoding, at the end, every object value the handler was handed,
  // however it got hold of it; an object it never saw is as loaded and is not re-encoded.
  const handedOut: Array<[string, (s: Record<string, unknown>) => { n: number }]> = [
    ['a property read', (s) => s.cart as { n: number }],
    ['a spread', (s) => ({ ...s }).cart as { n: number }],
    ['Object.values', (s) => Object.values(s)[1] as { n: number }],
    ['Object.entries', (s) => (Object.entries(s)[1] as [string, { n: number }])[1]],
    ['Object.assign', (s) => Object.assign({}, s).cart as { n: number }],
    ['Object.getOwnPropertyDescriptor', (s) => Object.getOwnPropertyDescriptor(s, 'cart')?.value as { n: number }],
    ['Reflect.get', (s) => Reflect.get(s, 'cart') as { n: number }],
    [
      'a for…in loop',
      (s) => {
        let found: { n: number } | undefined;
        for (const k in s) if (k === 'cart') found = s[k] as { n: number };
        return found as { n: number };
      },
    ],
  ];
  for (const [how, take] of handedOut) {
    it(`a nested change to a value handed out by ${how} is written`, async () => {
      const { wire, key } = await withSession((ctx) => {
        take(ctx.session as Record<string, unknown>).n = 2;
      });
      assert.deepEqual(wire, ['load', 'patch']);
      assert.deepEqual(await storedData(f.redis, key), { user: 'ada', cart: { n: 2 } });
    });
  }

  it('reading one key re-encodes no object the handler never saw', async () => {
    const stringified: string[] = [];
    const serializer = {
      stringify: (value: unknown, path?: string) => (stringified.push(String(path)), JSON.stringify(value)),
      parse: (text: string) => JSON.parse(text) as unknown,
    };
    const app = makeApp(3, { redis: f.server.url, serializer }, (ctx) => {
      if (ctx.path === '/seed') Object.assign(ctx.session, { user: 'ada', cart: { n: 1 }, prefs: { theme: 'dark' } });
      else return String(ctx.session.user) + JSON.stringify(ctx.session.prefs);
    });
    await app.ready();
    const seeded = expectCookieSet(await app.get('/seed'));
    stringified.length = 0;
    const { res, wire } = await f.monitor.request(() => app.get('/', seeded.cookie));
    await app.close();
    assert.equal(res.text, 'ada{"theme":"dark"}');
    assert.deepEqual(
      wire.map((c) => c.op),
      ['load'],
    );
    assert.deepEqual(stringified, ['ctx.session.prefs']);
  });

  it('assigning undefined deletes the key', async () => {
    const { wire, key } = await withSession((ctx) => {
      ctx.session.cart = undefined;
    });
    assert.deepEqual(wire, ['load', 'patch']);
    assert.deepEqual(await storedData(f.redis, key), { user: 'ada' });
  });

  it('a key named like an Object.prototype member is plain data', async () => {
    const { res, key } = await withSession((ctx) => {
      const data = ctx.session as unknown as { [key: string]: unknown };
      // biome-ignore lint/complexity/useLiteralKeys: an index signature's key, not Object's member (which the dot would type)
      data['constructor'] = 'c';
      // biome-ignore lint/complexity/useLiteralKeys: as above
      data['toString'] = 't';
      return String(data.hasOwnProperty);
    });
    assert.equal(res.text, 'undefined');
    assert.deepEqual(await storedData(f.redis, key), { user: 'ada', cart: { n: 1 }, constructor: 'c', toString: 't' });
  });

  it('assigning a value that cannot be stored throws a TypeError naming the key', async () => {
    const { res, wire, key } = await withSession((ctx) => {
      try {
        ctx.session.callback = () => 1;
        return 'stored';
      } catch (err) {
        return `${(err as Error).name}: ${(err as Error).message}`;
      }
    });
    assert.match(res.text, /^TypeError: ctx\.session\.callback cannot be stored in the session: a function/);
    assert.deepEqual(wire, ['load']);
    assert.deepEqual(await storedData(f.redis, key), { user: 'ada', cart: { n: 1 } });
  });

  it('a nested value that cannot be stored fails the request at the end naming its path, and nothing is written', async () => {
    const caught: { error?: unknown } = {};
    const { res, wire, key } = await withSession((ctx) => {
      ctx.session.user = 'eve';
      (ctx.session.cart as Record<string, unknown>).onChange = () => 1;
    }, catchError(caught));
    const seen = caught.error;
    assert.equal(res.status, 500);
    assert.ok(seen instanceof TypeError, `a TypeError, got ${String(seen)}`);
    assert.match(seen.message, /^ctx\.session\.cart\.onChange cannot be stored in the session: a function/);
    assert.deepEqual(wire, ['load']);
    assert.deepEqual(await storedData(f.redis, key), { user: 'ada', cart: { n: 1 } });
  });
});

describe('reserved members', () => {
  // `maxAge` is settable, as in koa-session: it is the session's cookie lifetime (README, "Cookie lifetimes").
  for (const name of [...RESERVED_MEMBERS].filter((m) => m !== 'maxAge')) {
    it(`assigning data to ${name} throws a TypeError naming it`, async () => {
      const { res } = await withSession((ctx) => {
        try {
          (ctx.session as Record<string, unknown>)[name] = 1;
          return 'no error';
        } catch (err) {
          return `${(err as Error).name}: ${(err as Error).message}`;
        }
      });
      assert.match(res.text, new RegExp(`^TypeError: ctx\\.session\\.${name} is a reserved member`));
    });
  }

  it('are not data: not in keys or JSON, yet present', async () => {
    const { res } = await withSession((ctx) =>
      JSON.stringify({ keys: Object.keys(ctx.session), id: 'id' in ctx.session, type: typeof ctx.session.invalidate }),
    );
    assert.deepEqual(JSON.parse(res.text), { keys: ['user', 'cart'], id: true, type: 'function' });
  });

  it('cannot be deleted', async () => {
    const { res } = await withSession((ctx) => {
      try {
        delete (ctx.session as Record<string, unknown>).id;
        return 'deleted';
      } catch (err) {
        return (err as Error).message;
      }
    });
    assert.match(res.text, /ctx\.session\.id is a reserved member and cannot be deleted/);
  });

  it('id, isNew, created and timeout describe the loaded session', async () => {
    const before = Math.floor(Date.now() / 1000);
    const { res, id } = await withSession((ctx) =>
      JSON.stringify({
        id: ctx.session.id,
        isNew: ctx.session.isNew,
        created: ctx.session.created,
        timeout: ctx.session.timeout,
      }),
    );
    const body = JSON.parse(res.text);
    assert.equal(body.id, id);
    assert.equal(body.isNew, false);
    assert.equal(body.timeout, 1200);
    // Created by the seeding request: between these two readings of the clock, however slow the machine.
    assertBetween(body.created, before, Date.now() / 1000, 'created');
  });

  it('a new session has a null id until it is stored', async () => {
    const app = makeApp(3, { redis: f.server.url }, (ctx) =>
      JSON.stringify({ id: ctx.session.id, isNew: ctx.session.isNew, timeout: ctx.session.timeout }),
    );
    const res = await app.get('/');
    await app.close();
    assert.deepEqual(JSON.parse(res.text), { id: null, isNew: true, timeout: 1200 });
  });

  it('invalidate() empties the data and the session becomes new', async () => {
    const { res, wire } = await withSession((ctx) => {
      ctx.session.invalidate();
      return JSON.stringify({ keys: Object.keys(ctx.session), id: ctx.session.id, isNew: ctx.session.isNew });
    });
    assert.deepEqual(JSON.parse(res.text), { keys: [], id: null, isNew: true });
    assert.deepEqual(wire, ['load', 'end']);
    expectCookieCleared(res);
  });

  it('regenerate() shows the new id at once, and the cookie carries it', async () => {
    const { res, id, key } = await withSession((ctx) => {
      ctx.session.regenerate();
      return String(ctx.session.id);
    });
    assert.notEqual(res.text, id);
    assert.equal(expectCookieSet(res).id, res.text);
    assert.equal(await isSession(f.redis, key), false, 'no session under the old id');
    const marker = await stored(f.redis, key);
    assert.equal(marker.m, `sess:${res.text}`, 'a marker leads a concurrent logout to the new id');
    assert.deepEqual(Object.keys(marker).sort(), ['m', 'o'], 'and remembers the move for a replay');
    await assertTtl(f.redis, key, 1200); // the marker expires with the session's timeout
    assert.deepEqual(await storedData(f.redis, `sess:${res.text}`), { user: 'ada', cart: { n: 1 } });
  });

  it('after regenerate(), the old cookie leads to a fresh session, and its load leaves the marker in place', async () => {
    // The marker is what a logout that loaded the old id before the move follows (docs/design.md,
    // "Concurrency"): a load of the old id must neither follow it nor remove it.
    const app = makeApp(3, { redis: f.server.url }, (ctx) => {
      if (ctx.path === '/seed') ctx.session.user = 'ada';
      else if (ctx.path === '/login') ctx.session.regenerate();
      else return JSON.stringify({ isNew: ctx.session.isNew, keys: Object.keys(ctx.session) });
    });
    await app.ready();
    const seeded = expectCookieSet(await app.get('/seed'));
    const moved = expectCookieSet(await app.get('/login', seeded.cookie));
    const { res, wire } = await f.monitor.request(() => app.get('/', seeded.cookie));
    await app.close();
    assert.deepEqual(JSON.parse(res.text), { isNew: true, keys: [] });
    assert.deepEqual(
      wire.map((c) => c.op),
      ['load'],
    );
    expectCookieCleared(res);
    const marker = await stored(f.redis, `sess:${seeded.id}`);
    assert.deepEqual(
      [marker.m, Object.keys(marker).sort()],
      [`sess:${moved.id}`, ['m', 'o']],
      'the marker is still there',
    );
    assert.deepEqual(await storedData(f.redis, `sess:${moved.id}`), { user: 'ada' });
  });

  it('regenerate() on a new session just stores it under a fresh id once it has data', async () => {
    const app = makeApp(3, { redis: f.server.url }, (ctx) => {
      ctx.session.regenerate();
      ctx.session.user = 'ada';
    });
    await app.ready();
    const { res, wire } = await f.monitor.request(() => app.get('/'));
    await app.close();
    assert.deepEqual(
      wire.map((c) => c.op),
      ['create'],
    );
    expectCookieSet(res);
  });

  it('invalidate() twice, then write: one replace', async () => {
    const { wire, res } = await withSession((ctx) => {
      ctx.session.invalidate();
      ctx.session.a = 1;
      ctx.session.invalidate();
      ctx.session.b = 2;
    });
    assert.deepEqual(wire, ['load', 'replace']);
    const { id } = expectCookieSet(res);
    assert.deepEqual(await storedData(f.redis, `sess:${id}`), { b: 2 });
  });

  it('recookie() sends the same cookie again', async () => {
    const { res, wire, id } = await withSession((ctx) => {
      ctx.session.recookie();
    });
    assert.deepEqual(wire, ['load']);
    assert.equal(expectCookieSet(res).id, id);
  });

  it('members work detached from the object', async () => {
    const { wire } = await withSession((ctx) => {
      const { invalidate } = ctx.session;
      invalidate();
    });
    assert.deepEqual(wire, ['load', 'end']);
  });
});

describe('ctx.session assignment', () => {
  it('= null invalidates', async () => {
    const { wire, res } = await withSession((ctx) => {
      (ctx as { session: unknown }).session = null;
    });
    assert.deepEqual(wire, ['load', 'end']);
    expectCookieCleared(res);
  });

  it('= {...} replaces the data under the same id', async () => {
    const { wire, key, res } = await withSession((ctx) => {
      (ctx as { session: unknown }).session = { user: 'grace' };
    });
    assert.deepEqual(wire, ['load', 'patch']);
    expectNoCookie(res);
    assert.deepEqual(await storedData(f.redis, key), { user: 'grace' });
  });

  it('= a non-object is a TypeError', async () => {
    const { res } = await withSession((ctx) => {
      try {
        (ctx as { session: unknown }).session = 5;
        return 'ok';
      } catch (err) {
        return (err as Error).message;
      }
    });
    assert.match(res.text, /can be set to null \(invalidate\) or a plain object/);
  });
});

describe('a session with nothing loaded (new, or invalidated in this request)', () => {
  // Its `changed` is answered without encoding anything (src/session.ts, hasChanges): every field it
  // holds was assigned in this request. What the machine then does must be what the session holds
  // at the end, whatever led there (property).
  type Op =
    | ['set', string, unknown]
    | ['del', string]
    | ['flash', string]
    | ['popFlash']
    | ['getCsrfToken']
    | ['adjustTimeout']
    | ['assign', Record<string, unknown>]
    | ['changed'];
  const key = fc.constantFrom('a', 'toString', 'constructor', 'hasOwnProperty', '1');
  const op: fc.Arbitrary<Op> = fc.oneof(
    fc.tuple(fc.constant('set' as const), key, fc.constantFrom<unknown>(1, 'é', { n: [1] }, null)),
    fc.tuple(fc.constant('del' as const), key),
    fc.tuple(fc.constant('flash' as const), fc.constantFrom('m', 'ü')),
    fc.tuple(fc.constant('popFlash' as const)),
    fc.tuple(fc.constant('getCsrfToken' as const)),
    fc.tuple(fc.constant('adjustTimeout' as const)),
    fc.tuple(
      fc.constant('assign' as const),
      fc.dictionary(key, fc.constantFrom<unknown>(2, 'x'), { noNullPrototype: true }),
    ),
    fc.tuple(fc.constant('changed' as const)),
  );

  it('is stored (one create, or one replace of the invalidated one) exactly when it holds something, as it holds it', async () => {
    let ops: Op[] = [];
    const app = makeApp(3, { redis: f.server.url }, (ctx) => {
      if (ctx.path === '/seed') {
        ctx.session.seeded = 1;
        return 'seeded';
      }
      if (ctx.path === '/invalidate') ctx.session.invalidate();
      for (const o of ops) {
        if (o[0] === 'set') ctx.session[o[1]] = o[2];
        else if (o[0] === 'del') delete ctx.session[o[1]];
        else if (o[0] === 'flash') ctx.session.flash(o[1]);
        else if (o[0] === 'popFlash') ctx.session.popFlash();
        else if (o[0] === 'getCsrfToken') ctx.session.getCsrfToken();
        else if (o[0] === 'adjustTimeout') ctx.session.adjustTimeout(60);
        else if (o[0] === 'assign') ctx.session = { ...o[1] } as never;
        else ctx.session.changed();
      }
      return 'ok';
    });
    await app.ready();
    await fc.assert(
      fc.asyncProperty(fc.boolean(), fc.array(op, { maxLength: 6 }), async (invalidated, sequence) => {
        // The model: what the session holds at the end.
        const data: Record<string, unknown> = {};
        let flashed: string[] = [];
        let csrf = false;
        for (const o of sequence) {
          if (o[0] === 'set') data[o[1]] = o[2];
          else if (o[0] === 'del') delete data[o[1]];
          else if (o[0] === 'flash') flashed.push(o[1]);
          else if (o[0] === 'popFlash') flashed = [];
          else if (o[0] === 'getCsrfToken') csrf = true;
          else if (o[0] === 'assign') {
            for (const k of Object.keys(data)) delete data[k];
            Object.assign(data, o[1]);
          }
        }
        const holds = Object.keys(data).length > 0 || flashed.length > 0 || csrf;
        let cookie: string | undefined;
        let oldKey: string | undefined;
        if (invalidated) {
          ops = [];
          const seeded = expectCookieSet(await app.get('/seed'));
          cookie = seeded.cookie;
          oldKey = `sess:${seeded.id}`;
        }
        ops = sequence;
        const { res, wire } = await f.monitor.request(() => app.get(invalidated ? '/invalidate' : '/', cookie));
        assert.equal(res.status, 200);
        assert.deepEqual(
          wire.map((c) => c.op).filter((o) => o !== 'load'),
          holds ? [invalidated ? 'replace' : 'create'] : invalidated ? ['end'] : [],
        );
        if (oldKey) assert.equal(await f.redis.exists(oldKey), 0, 'the invalidated session is gone');
        if (holds) {
          const { id } = expectCookieSet(res);
          assert.deepEqual(await storedData(f.redis, `sess:${id}`), { ...data });
          const fields = await stored(f.redis, `sess:${id}`);
          assert.equal('k' in fields, csrf, 'the CSRF salt');
          assert.equal(fields['f:'] !== undefined, flashed.length > 0, 'the flash queue');
        } else if (invalidated) expectCookieCleared(res);
        else expectNoCookie(res);
        await f.redis.flushall();
      }),
      { numRuns: 150 },
    );
    await app.close();
  });
});
