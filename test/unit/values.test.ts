/**
 * What a session may hold (src/values.ts): values JSON cannot carry round-trip, values that cannot
 * be stored are refused naming their path, and decoding never reaches a prototype; and a damaged
 * stored value (src/store/layout.ts) is refused, never looped on. No Redis: the same values through
 * Redis, and the stored value against the scripts' cmsgpack, are in test/values-redis.test.ts.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { unpackSession } from '../../src/store/layout.js';
import { decodeValue, encodeValue } from '../../src/values.js';

const roundTrip = (v: unknown) => decodeValue(encodeValue(v));

describe('sessionSerializer', () => {
  const faithful: Array<[string, unknown]> = [
    ['a Date', new Date('2026-11-25T12:00:00.000Z')],
    [
      'a Map with object keys',
      new Map<unknown, unknown>([
        [{ a: 1 }, 'x'],
        ['k', new Set([1])],
      ]),
    ],
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
    // biome-ignore lint/suspicious/noSparseArray: a hole is what this checks
    assert.deepEqual(roundTrip([1, , 3]), [1, undefined, 3]);
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
      fc.property(
        fc.jsonValue().filter((v) => !JSON.stringify(v).includes('"__proto__"')),
        (value) => {
          const text = encodeValue(value);
          // Tags appear only for what JSON would change (here: -0); everything else is JSON as is.
          if (!text.includes('"$t"')) assert.equal(text, JSON.stringify(value));
          assert.deepEqual(decodeValue(text), value);
        },
      ),
      { numRuns: 500 },
    );
  });

  it('round-trips any mix of supported values (property)', () => {
    const { tree } = fc.letrec<{ tree: unknown }>((tie) => ({
      tree: fc.oneof(
        { depthSize: 'small' },
        fc.oneof(
          fc.string(),
          fc.double(),
          fc.bigInt(),
          fc.boolean(),
          fc.constant(null),
          fc.date({ noInvalidDate: true }),
        ),
        fc.array(fc.oneof(tie('tree'), fc.constant(undefined)), { maxLength: 4 }),
        fc.dictionary(
          fc.string().filter((k) => k !== '__proto__'),
          tie('tree'),
          { maxKeys: 4, noNullPrototype: true },
        ),
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
    [
      'a class instance',
      () => ({ p: new Point() }),
      /^ctx\.session\.cart\.p cannot be stored in the session: an instance of Point/,
    ],
    ['a RegExp', () => /x/, /an instance of RegExp/],
    ['a Buffer', () => Buffer.from('x'), /an instance of Buffer/],
    ['an Error', () => new Error('x'), /an instance of Error/],
    [
      'a cycle',
      () => {
        const a: Record<string, unknown> = { b: {} };
        (a.b as Record<string, unknown>).a = a;
        return a;
      },
      /^ctx\.session\.cart\.b\.a cannot be stored in the session: it is circular/,
    ],
    [
      'an own __proto__ key',
      () => JSON.parse('{"__proto__": {"x": 1}}'),
      /ctx\.session\.cart\.__proto__ cannot be stored/,
    ],
    [
      'a constructor key holding a prototype',
      () => ({ constructor: { prototype: 1 } }),
      /ctx\.session\.cart\.constructor cannot be stored/,
    ],
  ];
  for (const [what, make, message] of refused) {
    it(`refuses ${what} with a TypeError naming the path`, () => {
      assert.throws(
        () => encodeValue(make(), 'ctx.session.cart'),
        (err: Error) => err instanceof TypeError && message.test(err.message),
      );
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
      const back = decodeValue('{"a":{"__proto__":{"polluted":true}},"__proto__":{"polluted":true}}') as Record<
        string,
        Record<string, unknown>
      >;
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

describe('the stored value (src/store/layout.ts)', () => {
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
});
