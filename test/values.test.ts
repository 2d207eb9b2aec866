/**
 * What a session may hold (src/values.ts): values JSON cannot carry round-trip, values that cannot
 * be stored are refused naming their path, and decoding never reaches a prototype.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { SessionStore } from '../src/store/commands.js';
import { entrySize, header, packSession, unpackSession } from '../src/store/layout.js';
import { seed } from './helpers/stored.js';
import { decodeValue, encodeValue, sessionSerializer } from '../src/values.js';
import { makeApp, expectCookieSet } from './helpers/app.js';
import { storedData, useRedis } from './helpers/fixture.js';

const roundTrip = (v: unknown) => decodeValue(encodeValue(v));

describe('sessionSerializer', () => {
  const faithful: Array<[string, unknown]> = [
    ['a Date', new Date('2026-11-25T12:00:00.000Z')],
    ['a Map with object keys', new Map<unknown, unknown>([[{ a: 1 }, 'x'], ['k', new Set([1])]])],
    ['a Set', new Set(['a', 1, null])],
    ['a BigInt', 12345678901234567890123n],
    ['NaN, Infinity, -Infinity and -0', [Number.NaN, Infinity, -Infinity, -0]],
    ['undefined inside an array', [1, undefined, 3]],
    ['an object with its own $t key', { $t: 'd', v: 'not a date' }],
    ['nested mixtures', { when: new Date(0), tags: new Set(['x']), n: { big: 1n, list: [undefined, { $t: 'x' }] } }],
  ];
  for (const [what, value] of faithful) {
    it(`carries ${what} faithfully`, () => {
      const back = roundTrip(value);
      assert.deepEqual(back, value);
    });
  }

  it('reads holes of a sparse array as undefined', () => {
    assert.deepEqual(roundTrip([1, , 3]), [1, undefined, 3]); // eslint-disable-line no-sparse-arrays
  });

  it('gives a null-prototype object back as a plain object', () => {
    assert.deepEqual(roundTrip(Object.assign(Object.create(null) as object, { a: 1 })), { a: 1 });
  });

  it('carries an invalid Date as an invalid Date', () => {
    const back = roundTrip(new Date(Number.NaN));
    assert.ok(back instanceof Date && Number.isNaN(back.getTime()));
  });

  it('stores plain JSON data exactly as JSON.stringify does (property)', () => {
    fc.assert(
      fc.property(fc.jsonValue().filter((v) => !JSON.stringify(v).includes('"__proto__"')), (value) => {
        const text = encodeValue(value);
        // Tags appear only for what JSON would change (here: -0); everything else is JSON as is.
        if (!text.includes('"$t"')) assert.equal(text, JSON.stringify(value));
        assert.deepEqual(decodeValue(text), value);
      }),
      { numRuns: 500 },
    );
  });

  it('round-trips any mix of supported values (property)', () => {
    const { tree } = fc.letrec<{ tree: unknown }>((tie) => ({
      tree: fc.oneof(
        { depthSize: 'small' },
        fc.oneof(fc.string(), fc.double(), fc.bigInt(), fc.boolean(), fc.constant(null), fc.date({ noInvalidDate: true })),
        fc.array(fc.oneof(tie('tree'), fc.constant(undefined)), { maxLength: 4 }),
        fc.dictionary(fc.string().filter((k) => k !== '__proto__'), tie('tree'), { maxKeys: 4, noNullPrototype: true }),
        fc.array(fc.tuple(tie('tree'), tie('tree')), { maxLength: 3 }).map((e) => new Map(e)),
        fc.array(tie('tree'), { maxLength: 3 }).map((a) => new Set(a)),
      ),
    }));
    fc.assert(
      fc.property(tree, (value) => {
        assert.deepEqual(roundTrip(value), value);
      }),
      { numRuns: 1000 },
    );
  });

  class Point {
    x = 1;
  }
  const refused: Array<[string, () => unknown, RegExp]> = [
    ['a function', () => ({ cb: () => 1 }), /^ctx\.session\.cart\.cb cannot be stored in the session: a function/],
    ['a symbol', () => [Symbol('s')], /^ctx\.session\.cart\[0\] cannot be stored in the session: a symbol/],
    ['a class instance', () => ({ p: new Point() }), /^ctx\.session\.cart\.p cannot be stored in the session: an instance of Point/],
    ['a RegExp', () => /x/, /an instance of RegExp/],
    ['a Buffer', () => Buffer.from('x'), /an instance of Buffer/],
    ['an Error', () => new Error('x'), /an instance of Error/],
    ['a cycle', () => {
      const a: Record<string, unknown> = { b: {} };
      (a.b as Record<string, unknown>).a = a;
      return a;
    }, /^ctx\.session\.cart\.b\.a cannot be stored in the session: it is circular/],
    ['an own __proto__ key', () => JSON.parse('{"__proto__": {"x": 1}}'), /ctx\.session\.cart\.__proto__ cannot be stored/],
    ['a constructor key holding a prototype', () => ({ constructor: { prototype: 1 } }), /ctx\.session\.cart\.constructor cannot be stored/],
  ];
  for (const [what, make, message] of refused) {
    it(`refuses ${what} with a TypeError naming the path`, () => {
      assert.throws(() => encodeValue(make(), 'ctx.session.cart'), (err: Error) => err instanceof TypeError && message.test(err.message));
    });
  }

  it('shares no identity: a value used twice comes back as two equal copies', () => {
    const shared = { n: 1 };
    const back = roundTrip({ a: shared, b: shared }) as { a: object; b: object };
    assert.deepEqual(back.a, back.b);
    assert.notEqual(back.a, back.b);
  });

  it('leaves out object properties holding undefined, as JSON does', () => {
    assert.deepEqual(roundTrip({ a: undefined, b: 1 }), { b: 1 });
  });

  describe('decoding never reaches a prototype', () => {
    it('drops __proto__ keys at any depth', () => {
      const back = decodeValue('{"a":{"__proto__":{"polluted":true}},"__proto__":{"polluted":true}}') as Record<string, Record<string, unknown>>;
      assert.equal(Object.hasOwn(back, '__proto__'), false);
      assert.equal(Object.hasOwn(back.a as object, '__proto__'), false);
      assert.equal(({} as Record<string, unknown>).polluted, undefined);
      assert.equal(Object.getPrototypeOf(back), Object.prototype);
      const merged = Object.assign({}, back.a);
      assert.equal((merged as Record<string, unknown>).polluted, undefined);
    });

    it('drops a constructor key holding a prototype', () => {
      const back = decodeValue('{"constructor":{"prototype":{"polluted":true}},"ok":1}') as Record<string, unknown>;
      assert.deepEqual(Object.keys(back), ['ok']);
    });

    it('drops a __proto__ key spelled with JSON escapes', () => {
      const back = decodeValue('{"a":{"\\u005f_proto__":{"polluted":1}}}') as Record<string, object>;
      assert.equal(Object.hasOwn(back.a as object, '__proto__'), false);
      assert.equal((Object.assign({}, back.a) as Record<string, unknown>).polluted, undefined);
    });

    it('keeps an ordinary constructor key', () => {
      assert.deepEqual(decodeValue('{"constructor":"Alice"}'), { constructor: 'Alice' });
    });

    it('rejects an unknown tag (a foreign or damaged payload)', () => {
      assert.throws(() => decodeValue('{"$t":"zz","v":1}'), /unknown session value tag "zz"/);
    });
  });
});

describe('values over HTTP', () => {
  const f = useRedis();
  it('a top-level __proto__ key is refused at the assignment', async () => {
    const app = makeApp(3, { redis: f.server.url }, (ctx) => {
      try {
        (ctx.session as Record<string, unknown>)['__proto__'] = { polluted: true };
        return 'stored';
      } catch (err) {
        return (err as Error).message;
      }
    });
    const res = await app.get('/');
    await app.close();
    assert.match(res.text, /ctx\.session\.__proto__ cannot hold data/);
  });

  it('a Date, Map, Set and BigInt stored in one request come back as such in the next', async () => {
    const app = makeApp(3, { redis: f.server.url }, (ctx) => {
      if (ctx.path === '/put') {
        ctx.session.when = new Date('2026-01-02T03:04:05.000Z');
        ctx.session.seen = new Set(['a']);
        ctx.session.scores = new Map([['ada', 10n]]);
        return 'ok';
      }
      const s = ctx.session;
      return JSON.stringify([s.when instanceof Date && s.when.toISOString(), s.seen instanceof Set && [...s.seen], s.scores instanceof Map && String(s.scores.get('ada'))]);
    });
    const { cookie } = expectCookieSet(await app.get('/put'));
    const res = await app.get('/get', cookie);
    await app.close();
    assert.deepEqual(JSON.parse(res.text), ['2026-01-02T03:04:05.000Z', ['a'], '10']);
  });

  it('mutating a Map in place is detected and written', async () => {
    const app = makeApp(3, { redis: f.server.url }, (ctx) => {
      if (ctx.path === '/put') ctx.session.m = new Map([['a', 1]]);
      else if (ctx.path === '/mutate') (ctx.session.m as Map<string, number>).set('b', 2);
      else return JSON.stringify([...(ctx.session.m as Map<string, number>)]);
    });
    const { cookie } = expectCookieSet(await app.get('/put'));
    await app.get('/mutate', cookie);
    const res = await app.get('/get', cookie);
    await app.close();
    assert.deepEqual(JSON.parse(res.text), [['a', 1], ['b', 2]]);
  });
});

describe('the stored value (src/store/layout.ts and the scripts\' cmsgpack agree)', () => {
  const f = useRedis();
  /** A session value whose map Redis' own cmsgpack packed from field, value pairs. */
  const packedByRedis = (pairs: string[]) =>
    f.redis.callBuffer('EVAL', [`local t = {} for i = 1, #ARGV, 2 do t[ARGV[i]] = ARGV[i + 1] end return '${header(7, 600, 1200)}' .. cmsgpack.pack(t)`, 0, ...pairs]) as Promise<Buffer>;
  /** What Redis' cmsgpack reads from a value packed here, back as sorted pairs. */
  const unpackedByRedis = (value: Buffer) =>
    f.redis.call('EVAL', "local t = cmsgpack.unpack(string.sub(ARGV[1], string.match(ARGV[1], '^%w+ %w+ %w* %w* ()'))) local out = {} for k, v in pairs(t) do out[#out + 1] = k out[#out + 1] = v end return out", 0, value) as Promise<string[]>;
  const sortedPairs = (flat: readonly string[]) => {
    const pairs: Array<[string, string]> = [];
    for (let i = 0; i + 1 < flat.length; i += 2) pairs.push([flat[i] as string, flat[i + 1] as string]);
    return pairs.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  };
  const text = fc.oneof(fc.string({ unit: 'grapheme', maxLength: 40 }), fc.string({ unit: 'grapheme-ascii', maxLength: 300 }));
  const fieldsOf = (dict: Record<string, string>) => Object.entries(dict).flat();

  it('reads what cmsgpack packs, and cmsgpack reads what it packs: any characters, any count (property)', async () => {
    await fc.assert(
      fc.asyncProperty(fc.dictionary(fc.string({ unit: 'grapheme', minLength: 1, maxLength: 20 }), text, { maxKeys: 40 }), async (dict) => {
        const pairs = fieldsOf(dict);
        const stored = unpackSession(await packedByRedis(pairs));
        assert.deepEqual([stored.version, stored.created, stored.timeout, stored.expires], [2, 7, 600, 1200]);
        assert.deepEqual(sortedPairs(stored.fields), sortedPairs(pairs));
        assert.deepEqual(sortedPairs(await unpackedByRedis(packSession(header(7, 600, 1200), pairs))), sortedPairs(pairs));
      }),
      { numRuns: 300 },
    );
  });

  it('every length class: fixstr, str 8, str 16 and str 32, in fixmap and map 16, and the empty map', async () => {
    const values = ['', 'a'.repeat(31), 'b'.repeat(32), 'é'.repeat(200), 'c'.repeat(65_535), 'd'.repeat(70_000)];
    const pairs = [...values.flatMap((v, i) => [`:v${i}`, v]), ...Array.from({ length: 20 }, (_, i) => [`:k${i}`, `${i}`]).flat()];
    assert.deepEqual(sortedPairs(unpackSession(await packedByRedis(pairs)).fields), sortedPairs(pairs));
    assert.deepEqual(sortedPairs(await unpackedByRedis(packSession(header(7, 600, 1200), pairs))), sortedPairs(pairs));
    assert.deepEqual(unpackSession(await packedByRedis([])).fields, [], 'cmsgpack packs an empty table as an empty array');
    assert.deepEqual(unpackSession(packSession(header(7, null, null), [])), { version: 2, created: 7, timeout: null, expires: null, fields: [] });
  });

  it('counts a field\'s size as the scripts do (the packed map, its header and `o` aside)', async () => {
    const pairs = [':a', 'x'.repeat(40), ':b', 'é'.repeat(300), 'f:q', '']; // str 8, str 16, fixstr
    const size = (await f.redis.call('EVAL', "local v = ARGV[1] local map = string.sub(v, string.match(v, '^%w+ %w+ %w* %w* ()')) local h = string.byte(map, 1) return #map - ((h == 0xde and 3) or (h == 0xdf and 5) or 1)", 0, packSession(header(1, null, null), pairs))) as number;
    assert.equal(size, entrySize(':a', 'x'.repeat(40)) + entrySize(':b', 'é'.repeat(300)) + entrySize('f:q', ''));
  });

  it('throws on a damaged value, never loops or reads past the end (property)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 60 }), (bytes) => {
        for (const value of [Buffer.from(bytes), Buffer.concat([Buffer.from('2 1 2 3 '), Buffer.from(bytes)])]) {
          try {
            assert.ok(Array.isArray(unpackSession(value).fields));
          } catch (err) {
            assert.match((err as Error).message, /malformed session value/);
          }
        }
      }),
      { numRuns: 5000 },
    );
    const head = (bytes: number[]) => Buffer.concat([Buffer.from('2 1 2 3 '), Buffer.from(bytes)]);
    assert.throws(() => unpackSession(head([0x81, 0xa1, 0x61])), /malformed/); // one item short
    assert.throws(() => unpackSession(head([0x81, 0xa1, 0x61, 0xa3, 0x61])), /malformed/); // string past the end
    assert.throws(() => unpackSession(head([0x81, 0xa1, 0x61, 0xa0, 0x00])), /malformed/); // trailing byte
    assert.throws(() => unpackSession(head([0xde, 0x00])), /malformed/);
    assert.throws(() => unpackSession(head([0xdf, 0xff, 0xff, 0xff, 0xff, 0xa0])), /malformed/); // 4 billion entries claimed
    assert.throws(() => unpackSession(Buffer.from('2 X 2 3 \x80')), /malformed/); // not a base-36 number
    assert.throws(() => unpackSession(Buffer.from('2 1 2 3')), /malformed/); // no map
    assert.throws(() => unpackSession(undefined), /malformed/);
  });

  it('carries every key and value through Redis unchanged: multi-byte, control and separator characters (property)', async () => {
    const store = new SessionStore(f.redis, { prefix: 'p:', timeout: 1200, timeoutTrigger: null, absoluteTimeout: null, setRedisTtl: true, serializer: sessionSerializer, commandTimeout: 1000, maxSize: 65536, invalidateEmptySession: true, genId: () => 'x', idPattern: /^x$/ });
    const key = fc.string({ unit: 'grapheme', minLength: 1, maxLength: 12 }).filter((k) => k !== '__proto__');
    await fc.assert(
      fc.asyncProperty(fc.dictionary(key, fc.oneof(fc.string({ unit: 'grapheme' }), fc.string({ unit: 'binary' }), fc.integer())), async (data) => {
        const fields = Object.fromEntries(Object.entries(data).map(([k, v]) => [`:${k}`, encodeValue(v)]));
        await f.redis.del('p:x');
        await seed(f.redis, 'p:x', { c: 1, t: 600, x: Math.floor(Date.now() / 1000) + 600, ...fields });
        const result = await store.load('x', Math.floor(Date.now() / 1000));
        assert.equal(result.status, 'found');
        if (result.status === 'found') assert.deepEqual({ ...result.payload.data }, { ...data });
        assert.deepEqual(await storedData(f.redis, 'p:x'), { ...data });
      }),
      { numRuns: 300 },
    );
  });
});
