/**
 * What a session may hold, through Redis: values JSON cannot carry come back as such in the next
 * request, and the stored value packed here and by the scripts' cmsgpack read the same (the
 * serializer itself is tested without Redis in test/unit/values.test.ts).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { SessionStore } from '../src/store/commands.js';
import { entrySize, header, packSession, unpackSession } from '../src/store/layout.js';
import { seed } from './helpers/stored.js';
import { encodeValue, sessionSerializer } from '../src/values.js';
import { RESERVED_MEMBERS } from '../src/session-proxy.js';
import { makeApp, expectCookieSet } from './helpers/app.js';
import { storedData, useRedis } from './helpers/fixture.js';

describe('values over HTTP', () => {
  const f = useRedis();
  it('a top-level __proto__ key is refused at the assignment', async () => {
    const app = makeApp(3, { redis: f.server.url }, (ctx) => {
      try {
        // biome-ignore lint/suspicious/noProto: assigning __proto__ is the attack this checks
        (ctx.session as Record<string, unknown>).__proto__ = { polluted: true };
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
      return JSON.stringify([
        s.when instanceof Date && s.when.toISOString(),
        s.seen instanceof Set && [...s.seen],
        s.scores instanceof Map && String(s.scores.get('ada')),
      ]);
    });
    const { cookie } = expectCookieSet(await app.get('/put'));
    const res = await app.get('/get', cookie);
    await app.close();
    assert.deepEqual(JSON.parse(res.text), ['2026-01-02T03:04:05.000Z', ['a'], '10']);
  });

  it('a create stores exactly the bytes of the UTF-8 packer, ASCII (one frame of ours) or not, and loads them back (property)', async () => {
    // The ASCII create goes as one RESP frame built from latin1 text (src/store/commands.ts,
    // FramedCommand); whatever path it takes, the value must be packSession's UTF-8 writing.
    let data: Record<string, unknown> = {};
    const app = makeApp(3, { redis: f.server.url }, (ctx) => {
      if (ctx.path === '/put') for (const [k, v] of Object.entries(data)) ctx.session[k] = v;
      else return JSON.stringify({ ...ctx.session });
    });
    const key = fc
      .oneof(
        fc.string({ unit: 'grapheme-ascii', minLength: 1, maxLength: 8 }),
        fc.constantFrom('é', '😀', '1', 'toString'),
      )
      .filter((k) => k !== '__proto__' && !RESERVED_MEMBERS.has(k));
    const text = fc.oneof(
      fc.string({ unit: 'grapheme-ascii' }),
      fc.string({ unit: 'grapheme' }),
      fc.constant('\r\n$3\r\n'),
    );
    await fc.assert(
      fc.asyncProperty(fc.dictionary(key, fc.oneof(text, fc.integer(), fc.array(text)), { minKeys: 1 }), async (d) => {
        data = d;
        const { cookie, id } = expectCookieSet(await app.get('/put'));
        const stored = (await f.redis.getBuffer(`sess:${id}`)) as Buffer;
        const text = stored.toString('latin1');
        let at = 0;
        for (let spaces = 0; spaces < 4; spaces++) at = text.indexOf(' ', at) + 1;
        const fields = Object.entries(d).flatMap(([k, v]) => [`:${k}`, encodeValue(v)]);
        assert.ok(stored.equals(packSession(text.slice(0, at), fields, false)), 'the bytes of the UTF-8 packer');
        assert.deepEqual(JSON.parse((await app.get('/get', cookie)).text), { ...d });
        await f.redis.flushall();
      }),
      { numRuns: 60 },
    );
    await app.close();
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
    assert.deepEqual(JSON.parse(res.text), [
      ['a', 1],
      ['b', 2],
    ]);
  });
});

describe("the stored value (src/store/layout.ts and the scripts' cmsgpack agree)", () => {
  const f = useRedis();
  /** A session value whose map Redis' own cmsgpack packed from field, value pairs. */
  const packedByRedis = (pairs: string[]) =>
    f.redis.callBuffer('EVAL', [
      `local t = {} for i = 1, #ARGV, 2 do t[ARGV[i]] = ARGV[i + 1] end return '${header(7, 600, 1200)}' .. cmsgpack.pack(t)`,
      0,
      ...pairs,
    ]) as Promise<Buffer>;
  /** What Redis' cmsgpack reads from a value packed here, back as sorted pairs. */
  const unpackedByRedis = (value: Buffer) =>
    f.redis.call(
      'EVAL',
      "local t = cmsgpack.unpack(string.sub(ARGV[1], string.match(ARGV[1], '^%w+ %w+ %w* %w* ()'))) local out = {} for k, v in pairs(t) do out[#out + 1] = k out[#out + 1] = v end return out",
      0,
      value,
    ) as Promise<string[]>;
  const sortedPairs = (flat: readonly string[]) => {
    const pairs: Array<[string, string]> = [];
    for (let i = 0; i + 1 < flat.length; i += 2) pairs.push([flat[i] as string, flat[i + 1] as string]);
    return pairs.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  };
  const text = fc.oneof(
    fc.string({ unit: 'grapheme', maxLength: 40 }),
    fc.string({ unit: 'grapheme-ascii', maxLength: 300 }),
  );
  const fieldsOf = (dict: Record<string, string>) => Object.entries(dict).flat();

  it('reads what cmsgpack packs, and cmsgpack reads what it packs: any characters, any count (property)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.dictionary(fc.string({ unit: 'grapheme', minLength: 1, maxLength: 20 }), text, { maxKeys: 40 }),
        async (dict) => {
          const pairs = fieldsOf(dict);
          const stored = unpackSession(await packedByRedis(pairs));
          assert.deepEqual([stored.version, stored.created, stored.timeout, stored.expires], [2, 7, 600, 1200]);
          assert.deepEqual(sortedPairs(stored.fields), sortedPairs(pairs));
          assert.deepEqual(
            sortedPairs(await unpackedByRedis(packSession(header(7, 600, 1200), pairs))),
            sortedPairs(pairs),
          );
        },
      ),
      { numRuns: 300 },
    );
  });

  it('every length class: fixstr, str 8, str 16 and str 32, in fixmap and map 16, and the empty map', async () => {
    const values = ['', 'a'.repeat(31), 'b'.repeat(32), 'é'.repeat(200), 'c'.repeat(65_535), 'd'.repeat(70_000)];
    const pairs = [
      ...values.flatMap((v, i) => [`:v${i}`, v]),
      ...Array.from({ length: 20 }, (_, i) => [`:k${i}`, `${i}`]).flat(),
    ];
    assert.deepEqual(sortedPairs(unpackSession(await packedByRedis(pairs)).fields), sortedPairs(pairs));
    assert.deepEqual(sortedPairs(await unpackedByRedis(packSession(header(7, 600, 1200), pairs))), sortedPairs(pairs));
    assert.deepEqual(
      unpackSession(await packedByRedis([])).fields,
      [],
      'cmsgpack packs an empty table as an empty array',
    );
    assert.deepEqual(unpackSession(packSession(header(7, null, null), [])), {
      version: 2,
      created: 7,
      timeout: null,
      expires: null,
      index: null,
      fields: [],
    });
    // A session in a user's index: the index key after the header, read back (layout.lua, indexOf).
    const indexed = unpackSession(packSession(header(7, 60, 67, 'sess:user:é x'), [':a', '1']));
    assert.equal(indexed.index, 'sess:user:é x');
    assert.deepEqual(indexed.fields, [':a', '1']);
  });

  it("counts a field's size as the scripts do (the packed map, its header and `o` aside)", async () => {
    const pairs = [':a', 'x'.repeat(40), ':b', 'é'.repeat(300), 'f:q', '']; // str 8, str 16, fixstr
    const size = (await f.redis.call(
      'EVAL',
      "local v = ARGV[1] local map = string.sub(v, string.match(v, '^%w+ %w+ %w* %w* ()')) local h = string.byte(map, 1) return #map - ((h == 0xde and 3) or (h == 0xdf and 5) or 1)",
      0,
      packSession(header(1, null, null), pairs),
    )) as number;
    assert.equal(size, entrySize(':a', 'x'.repeat(40)) + entrySize(':b', 'é'.repeat(300)) + entrySize('f:q', ''));
  });

  it('carries every key and value through Redis unchanged: multi-byte, control and separator characters (property)', async () => {
    const store = new SessionStore(f.redis, {
      prefix: 'p:',
      timeout: 1200,
      timeoutTrigger: null,
      absoluteTimeout: null,
      setRedisTtl: true,
      serializer: sessionSerializer,
      commandTimeout: 10_000, // 300 loads on a shared machine: a slow moment is not what this is about
      maxSize: 65536,
      invalidateEmptySession: true,
      genId: () => 'x',
      idPattern: /^x$/,
      userKey: null,
    });
    const key = fc.string({ unit: 'grapheme', minLength: 1, maxLength: 12 }).filter((k) => k !== '__proto__');
    await fc.assert(
      fc.asyncProperty(
        fc.dictionary(key, fc.oneof(fc.string({ unit: 'grapheme' }), fc.string({ unit: 'binary' }), fc.integer())),
        async (data) => {
          const fields = Object.fromEntries(Object.entries(data).map(([k, v]) => [`:${k}`, encodeValue(v)]));
          await f.redis.del('p:x');
          await seed(f.redis, 'p:x', { c: 1, t: 600, x: Math.floor(Date.now() / 1000) + 600, ...fields });
          const result = await store.load('x', Math.floor(Date.now() / 1000));
          assert.equal(result.status, 'found');
          if (result.status === 'found') assert.deepEqual({ ...result.payload.data }, { ...data });
          assert.deepEqual(await storedData(f.redis, 'p:x'), { ...data });
        },
      ),
      { numRuns: 300 },
    );
  });
});
