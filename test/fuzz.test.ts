/**
 * Cookies made from real ones (fast-check). Sessions are created through the app first; their
 * cookies are then sent as they are and in variants: a bit flipped in the id or the signature,
 * truncated, re-signed with a key nobody lists, a signature swapped between two sessions, a
 * character's case changed, characters added or quoted, signed for another cookie name, signed with
 * the older key of the ring (valid), a changed id signed with the newest key (valid, but no session
 * has it); around them duplicated cookie names, other cookies, random bytes and 8 KiB values.
 *
 * The test decides on its own which cookie is valid — its own id pattern and keygrip with the test
 * keys, never the library's codec — and asserts: the valid cookie of a stored session, and only it,
 * sees that session's data, with exactly one Redis command (the load); a valid cookie of no session
 * gets a fresh, empty session for that one load; every other header gets a fresh, empty session and
 * causes no Redis command at all. 10 000 cases in `npm test`; `npm run fuzz` runs 100 000 (FUZZ_RUNS).
 */
import assert from 'node:assert/strict';
import { Agent, createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import Keygrip from 'keygrip';
import Koa from 'koa';
import { Redis } from 'ioredis';
import { koaRedisSession, type SessionMiddleware } from '../src/index.js';
import { KEYS } from './helpers/app.js';
import { storedData, useRedis } from './helpers/fixture.js';

const RUNS = Number(process.env.FUZZ_RUNS ?? 10_000);
const SESSIONS = 4;
const f = useRedis();

// ---- the oracle, written apart from the middleware ---------------------------------------------

/** Session ids as the default generator makes them: 32 bytes, base64url. */
const ID = /^[A-Za-z0-9_-]{43}$/;
const ring = new Keygrip(KEYS); // newest first: index 0 signs, any index verifies
const newest = new Keygrip(KEYS.slice(0, 1));
const older = new Keygrip(KEYS.slice(1));
const stranger = new Keygrip(['a key nobody lists']);

type Verdict = 'no cookie' | 'invalid' | 'valid, stored' | 'valid, older key' | 'valid, no session';

/**
 * The session cookie's value as the middleware is handed it: Node's HTTP server drops the header
 * value's leading and trailing spaces and tabs; Koa's cookies module takes the first `session=`
 * after the start or a `;` and spaces, and for a value that starts with a double quote drops that
 * quote and the last character.
 */
function cookieValue(header: string): string | undefined {
  const received = header.replace(/^[ \t]+|[ \t]+$/g, '');
  const raw = /(?:^|;) *session=([^;]*)/.exec(received)?.[1];
  return raw?.startsWith('"') ? raw.slice(1, -1) : raw;
}

function judge(header: string, stored: ReadonlySet<string>): { verdict: Verdict; id?: string } {
  const value = cookieValue(header);
  if (value === undefined || value === '') return { verdict: 'no cookie' };
  const dot = value.lastIndexOf('.');
  const id = value.slice(0, dot);
  if (dot < 0 || !ID.test(id)) return { verdict: 'invalid' };
  const index = ring.index(`session=${id}`, value.slice(dot + 1));
  if (index < 0) return { verdict: 'invalid' };
  if (!stored.has(id)) return { verdict: 'valid, no session', id };
  return { verdict: index === 0 ? 'valid, stored' : 'valid, older key', id };
}

// ---- what is sent ------------------------------------------------------------------------------

interface Real {
  id: string;
  signature: string;
  /** The cookie value the app set: `<id>.<signature>`. */
  value: string;
  data: Record<string, unknown>;
}
/** Filled by the before hook; the arbitraries below read it only while generating. */
const sessions: Real[] = [];

/** A case: the Cookie header and how it was made (for failure messages and the tally). */
interface Case {
  how: string;
  header: string;
}

const real = fc.nat({ max: SESSIONS - 1 }).map((i) => sessions[i] as Real);
const twoReal = fc
  .tuple(fc.nat({ max: SESSIONS - 1 }), fc.nat({ max: SESSIONS - 2 }))
  .map(([i, j]) => [sessions[i], sessions[(i + 1 + j) % SESSIONS]] as [Real, Real]);
const at = (text: string, n: number) => n % (text.length + 1);
/** Flip one of the low seven bits of the character at a position (Node sends only TAB, 0x20–0x7E and
 *  0x80–0xFF in a header, so a flip into a control character is taken back). */
const flip = (text: string, n: number, bit: number) => {
  const i = n % text.length;
  const code = text.charCodeAt(i) ^ (1 << bit);
  return code < 0x20 || code === 0x7f ? text : text.slice(0, i) + String.fromCharCode(code) + text.slice(i + 1);
};
const toggleCase = (text: string, n: number) => {
  const i = n % text.length;
  const c = text.charAt(i);
  return text.slice(0, i) + (c === c.toUpperCase() ? c.toLowerCase() : c.toUpperCase()) + text.slice(i + 1);
};

/** Values made from the real cookies. */
const variant: fc.Arbitrary<{ how: string; value: string }> = fc.oneof(
  real.map((s) => ({ how: 'the genuine cookie', value: s.value })),
  real.map((s) => ({ how: 'signed with the older key', value: `${s.id}.${older.sign(`session=${s.id}`)}` })),
  fc
    .tuple(real, fc.nat(), fc.nat(6))
    .map(([s, n, bit]) => ({ how: 'a bit flipped in the id', value: `${flip(s.id, n, bit)}.${s.signature}` })),
  fc
    .tuple(real, fc.nat(), fc.nat(6))
    .map(([s, n, bit]) => ({ how: 'a bit flipped in the signature', value: `${s.id}.${flip(s.signature, n, bit)}` })),
  fc
    .tuple(real, fc.nat(), fc.nat(6))
    .map(([s, n, bit]) => ({ how: 'a bit flipped anywhere', value: flip(s.value, n, bit) })),
  fc.tuple(real, fc.nat()).map(([s, n]) => ({ how: 'cut short', value: s.value.slice(0, n % s.value.length) })),
  fc
    .tuple(real, fc.nat())
    .map(([s, n]) => ({ how: 'its start cut', value: s.value.slice(1 + (n % (s.value.length - 1))) })),
  real.map((s) => ({ how: 're-signed with a key nobody lists', value: `${s.id}.${stranger.sign(`session=${s.id}`)}` })),
  real.map((s) => ({ how: 'signed for another cookie name', value: `${s.id}.${newest.sign(`sid=${s.id}`)}` })),
  twoReal.map(([a, b]) => ({ how: "another session's signature", value: `${a.id}.${b.signature}` })),
  fc.tuple(real, fc.nat()).map(([s, n]) => ({ how: "a character's case changed", value: toggleCase(s.value, n) })),
  real.map((s) => ({ how: 'upper-cased', value: s.value.toUpperCase() })),
  fc.tuple(real, fc.nat(), fc.constantFrom(...'A0-_.=+/ "%,;\té'.split(''))).map(([s, n, c]) => ({
    how: 'a character added',
    value: s.value.slice(0, at(s.value, n)) + c + s.value.slice(at(s.value, n)),
  })),
  fc.tuple(real, fc.nat()).map(([s, n]) => {
    const i = n % s.value.length;
    const escaped = `%${s.value.charCodeAt(i).toString(16).toUpperCase()}`;
    return { how: 'a character percent-encoded', value: s.value.slice(0, i) + escaped + s.value.slice(i + 1) };
  }),
  real.map((s) => ({ how: 'quoted', value: `"${s.value}"` })),
  real.map((s) => ({ how: 'an opening quote only', value: `"${s.value}` })),
  fc.tuple(real, fc.nat(), fc.nat(5)).map(([s, n, bit]) => {
    const id = flip(s.id, n, bit);
    return { how: 'a changed id signed with the newest key', value: `${id}.${newest.sign(`session=${id}`)}` };
  }),
);

// Header-safe characters (Node refuses others in a header value): TAB, 0x20–0x7E, 0x80–0xFF.
const headerChar = fc
  .oneof(fc.integer({ min: 0x20, max: 0x7e }), fc.integer({ min: 0x80, max: 0xff }), fc.constant(0x09))
  .map((c) => String.fromCharCode(c));
const bytes = (maxLength: number) => fc.string({ unit: headerChar, maxLength });
const cookieSafe = fc.string({ unit: fc.constantFrom(...'ABCxyz019-_.=+/%'.split('')), maxLength: 60 });
/** Values made from nothing: random bytes, ids of a wrong length or alphabet signed with the ring,
 *  8 KiB. */
const hostile: fc.Arbitrary<{ how: string; value: string }> = fc.oneof(
  bytes(80).map((value) => ({ how: 'random bytes', value })),
  cookieSafe.map((value) => ({ how: 'random cookie-safe text', value })),
  fc.string({ unit: fc.constantFrom(...'Aa0-_+/=é.'.split('')), minLength: 1, maxLength: 60 }).map((id) => ({
    how: 'an id of a wrong length or alphabet, signed',
    value: `${id}.${newest.sign(`session=${id}`)}`,
  })),
  fc
    .tuple(fc.constantFrom('a', '%', '.', 'é'), fc.integer({ min: 4000, max: 8192 }))
    .map(([c, n]) => ({ how: '8 KiB', value: c.repeat(n) })),
);
const otherCookie = fc
  .tuple(fc.constantFrom('theme', 'sessionx', 'xsession', 'session.sig', 'SESSION', ' session'), cookieSafe)
  .map(([n, v]) => `${n}=${v}`);

const cases: fc.Arbitrary<Case> = fc
  .tuple(
    fc.array(
      fc.oneof(
        { weight: 6, arbitrary: variant.map((v) => ({ how: v.how, part: `session=${v.value}` })) },
        { weight: 2, arbitrary: hostile.map((v) => ({ how: v.how, part: `session=${v.value}` })) },
        { weight: 1, arbitrary: otherCookie.map((part) => ({ how: 'another cookie', part })) },
        { weight: 1, arbitrary: bytes(40).map((part) => ({ how: 'random bytes', part })) },
      ),
      { minLength: 1, maxLength: 3 },
    ),
    fc.constantFrom('; ', ';', ' ; '),
  )
  .map(([parts, separator]) => ({
    how: parts.map((p) => p.how).join(' + '),
    header: parts.map((p) => p.part).join(separator),
  }))
  .filter((c) => c.header.length < 14_000);

// ---- the run -----------------------------------------------------------------------------------

interface Answer {
  status: number;
  body: string;
  setCookie: string[];
}

describe(`cookies made from real ones, and hostile ones (${RUNS} cases)`, () => {
  let server: Server;
  let session: SessionMiddleware;
  let client: Redis;
  let sent = 0;
  let errors = 0;
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  let port = 0;

  const get = (path: string, cookie?: string) =>
    new Promise<Answer>((resolve, reject) => {
      const req = request(
        { host: '127.0.0.1', port, path, agent, headers: cookie === undefined ? {} : { cookie } },
        (res) => {
          let body = '';
          res.setEncoding('latin1');
          res.on('data', (d) => (body += d));
          res.on('end', () =>
            resolve({ status: res.statusCode ?? 0, body, setCookie: res.headers['set-cookie'] ?? [] }),
          );
        },
      );
      req.on('error', reject);
      req.end();
    });

  before(async () => {
    client = new Redis(f.server.url);
    // Count every command the middleware's client sends (the client talks to the real Redis).
    const send = client.sendCommand.bind(client);
    client.sendCommand = ((...args: Parameters<Redis['sendCommand']>) => {
      sent++;
      return send(...args);
    }) as Redis['sendCommand'];
    const app = new Koa();
    app.keys = KEYS;
    app.on('error', () => errors++);
    // commandTimeout 10 s: ten thousand loads on a shared machine, and a slow moment is no 503
    // (bounded answers are faults.test.ts' concern, not this one's).
    session = koaRedisSession({ redis: client, onInvalid: () => undefined, commandTimeout: 10_000 });
    app.use(session);
    app.use((ctx) => {
      if (ctx.path === '/seed')
        Object.assign(ctx.session, { owner: `user-${String(ctx.query.n)}`, cart: [Number(ctx.query.n), 'apple'] });
      // Read only: a request with a cookie costs its load and nothing else.
      ctx.body = JSON.stringify({ isNew: ctx.session.isNew, id: ctx.session.id, data: { ...ctx.session } });
    });
    server = createServer(app.callback());
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as AddressInfo).port;
    for (let n = 0; n < SESSIONS; n++) {
      const res = await get(`/seed?n=${n}`);
      const value = /^session=([^;]*)/.exec(res.setCookie[0] ?? '')?.[1] ?? '';
      const dot = value.lastIndexOf('.');
      assert.equal(res.status, 200);
      assert.match(value.slice(0, dot), ID, 'the app made a session cookie');
      const id = value.slice(0, dot);
      sessions.push({ id, signature: value.slice(dot + 1), value, data: await storedData(f.redis, `sess:${id}`) });
    }
    assert.deepEqual(
      sessions.map((s) => s.data.owner),
      ['user-0', 'user-1', 'user-2', 'user-3'],
    );
  });
  after(async () => {
    agent.destroy();
    await new Promise((r) => server?.close(r));
    client?.disconnect();
  });

  it('only a valid cookie of a stored session sees its data; nothing else reaches Redis', async () => {
    const stored = new Set(sessions.map((s) => s.id));
    const byId = new Map(sessions.map((s) => [s.id, s]));
    const tally = new Map<Verdict, number>();
    let loads = 0;
    const [s0, s1] = sessions as [Real, Real];
    const examples: Case[] = [
      { how: 'the genuine cookie', header: `session=${s0.value}` },
      { how: 'signed with the older key', header: `session=${s1.id}.${older.sign(`session=${s1.id}`)}` },
      { how: "another session's signature", header: `session=${s0.id}.${s1.signature}` },
      { how: 're-signed with a key nobody lists', header: `session=${s0.id}.${stranger.sign(`session=${s0.id}`)}` },
      {
        how: 'a changed id signed with the newest key',
        header: `session=${'A'.repeat(43)}.${newest.sign(`session=${'A'.repeat(43)}`)}`,
      },
      { how: 'quoted', header: `session="${s1.value}"` },
      { how: 'cut short by one', header: `session=${s0.value.slice(0, -1)}` },
      { how: 'an empty value', header: 'session=' },
      { how: 'a bad first cookie, then the genuine one', header: `session=garbage; session=${s0.value}` },
      { how: 'the genuine cookie, then a bad one', header: `theme=dark; session=${s1.value}; session=garbage` },
    ];

    const wire = await f.monitor.capture(async () => {
      await fc.assert(
        fc.asyncProperty(cases, async ({ how, header }) => {
          const what = `${how}: ${JSON.stringify(header)}`;
          const { verdict, id } = judge(header, stored);
          tally.set(verdict, (tally.get(verdict) ?? 0) + 1);
          const before = sent;
          const res = await get('/', header);
          assert.equal(res.status, 200, what);
          const body = JSON.parse(res.body) as { isNew: boolean; id: string | null; data: Record<string, unknown> };
          const cookies = res.setCookie.filter((c) => c.startsWith('session='));
          const cleared = cookies.length === 1 && /^session=;.*expires=Thu, 01 Jan 1970/i.test(cookies[0] as string);

          if (verdict === 'valid, stored' || verdict === 'valid, older key') {
            const owner = byId.get(id as string) as Real;
            assert.deepEqual(body, { isNew: false, id, data: owner.data }, `${what} must see its session`);
            assert.equal(sent - before, 1, `${what}: one Redis command, the load`);
            loads++;
            if (verdict === 'valid, stored') assert.deepEqual(cookies, [], `${what}: no cookie sent`);
            else
              assert.match(
                cookies[0] ?? '',
                new RegExp(`^session=${id}\\.${newest.sign(`session=${id}`)};`),
                `${what}: re-signed with the newest key`,
              );
          } else {
            assert.deepEqual(body, { isNew: true, id: null, data: {} }, `${what} must get a fresh, empty session`);
            if (verdict === 'valid, no session') {
              assert.equal(sent - before, 1, `${what}: one Redis command, the load`);
              loads++;
            } else assert.equal(sent - before, 0, `${what}: no Redis command`);
            if (verdict === 'no cookie') assert.deepEqual(cookies, [], `${what}: no cookie sent`);
            else assert.ok(cleared, `${what}: the cookie cleared, got ${JSON.stringify(cookies)}`);
          }
        }),
        { numRuns: RUNS, examples: examples.map((c) => [c]) },
      );
    });

    assert.equal(errors, 0, 'no error reached Koa');
    for (const verdict of ['no cookie', 'invalid', 'valid, stored', 'valid, older key', 'valid, no session'] as const) {
      assert.ok((tally.get(verdict) ?? 0) > 0, `no case was judged "${verdict}"`);
    }
    assert.deepEqual(
      [...new Set(wire.map((c) => c.op))].filter((op) => op !== 'load'),
      [],
      'nothing but loads on the wire',
    );
    assert.equal(wire.length, loads, 'MONITOR saw one load per valid cookie, nothing else');
    // Nothing was written: the sessions are as they were, and no other key exists.
    for (const s of sessions) assert.deepEqual(await storedData(f.redis, `sess:${s.id}`), s.data);
    assert.equal(await f.redis.dbsize(), SESSIONS);
    console.log(
      `fuzz: ${[...tally.values()].reduce((a, b) => a + b, 0)} cookie headers; ${[...tally].map(([v, n]) => `${v}: ${n}`).join(', ')}; ${loads} loads on the wire`,
    );
  });
});
