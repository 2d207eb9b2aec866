/**
 * Hostile cookie headers (fast-check): random bytes, truncated and re-ordered signatures, ids of a
 * wrong length or alphabet, duplicated cookie names, 8 KiB values. For every one: a 200, no error
 * anywhere, and not one Redis command unless the first session cookie is validly signed (then
 * exactly the load). 10 000 cases in `npm test`; `npm run fuzz` runs 100 000 (FUZZ_RUNS).
 */
import assert from 'node:assert/strict';
import { Agent, createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import Keygrip from 'keygrip';
import Koa from 'koa';
import { Redis } from 'ioredis';
import { CookieCodec, DEFAULT_ID_PATTERN } from '../src/cookie.js';
import { koaRedisSession, type SessionMiddleware } from '../src/index.js';
import { KEYS } from './helpers/app.js';
import { useRedis } from './helpers/fixture.js';

const RUNS = Number(process.env.FUZZ_RUNS ?? 10_000);
const f = useRedis();
const codec = new CookieCodec('session', new Keygrip(KEYS), DEFAULT_ID_PATTERN);

/** What the server must do with a header: the oracle, written apart from the middleware. */
function expectedLoads(header: string): number {
  const first = /(?:^|;) *session=([^;]*)/.exec(header)?.[1];
  return first !== undefined && codec.decode(first).kind === 'valid' ? 1 : 0;
}

// Header-safe characters (Node refuses others in a header value): TAB, 0x20–0x7E, 0x80–0xFF.
const headerChar = fc.oneof(fc.integer({ min: 0x20, max: 0x7e }), fc.integer({ min: 0x80, max: 0xff }), fc.constant(0x09)).map((c) => String.fromCharCode(c));
const bytes = (maxLength: number) => fc.string({ unit: headerChar, maxLength });
const cookieSafe = fc.string({ unit: fc.constantFrom(...'ABCxyz019-_.=+/%'.split('')), maxLength: 60 });

const anId = fc.uint8Array({ minLength: 32, maxLength: 32 }).map((b) => Buffer.from(b).toString('base64url'));
const signed = anId.map((id) => codec.encode(id));
const sessionValue = fc.oneof(
  bytes(80),
  cookieSafe,
  signed,
  // a signature cut short, or with its characters re-ordered
  fc.tuple(signed, fc.nat(27)).map(([v, n]) => v.slice(0, v.length - 1 - n)),
  fc.tuple(signed, fc.nat()).map(([v, seed]) => {
    const dot = v.lastIndexOf('.');
    const sig = [...v.slice(dot + 1)];
    for (let i = sig.length - 1; i > 0; i--) {
      const j = (seed + i * 7919) % (i + 1);
      [sig[i], sig[j]] = [sig[j] as string, sig[i] as string];
    }
    return `${v.slice(0, dot)}.${sig.join('')}`;
  }),
  // ids of a wrong length or alphabet with a real signature of that id
  fc.tuple(fc.string({ unit: fc.constantFrom(...'Aa0-_+/=é.'.split('')), minLength: 1, maxLength: 60 })).map(([id]) => `${id}.${new Keygrip(KEYS).sign(`session=${id}`)}`),
  // signed by a key nobody lists
  anId.map((id) => `${id}.${new Keygrip(['stranger']).sign(`session=${id}`)}`),
  // 8 KiB
  fc.tuple(fc.constantFrom('a', '%', '.', 'é'), fc.integer({ min: 4000, max: 8192 })).map(([c, n]) => c.repeat(n)),
);
const otherCookie = fc.tuple(fc.constantFrom('theme', 'sessionx', 'xsession', 'session.sig', 'SESSION', ' session'), cookieSafe).map(([n, v]) => `${n}=${v}`);
const header = fc
  .tuple(
    fc.array(fc.oneof({ weight: 3, arbitrary: sessionValue.map((v) => `session=${v}`) }, otherCookie, bytes(40)), { minLength: 1, maxLength: 4 }),
    fc.constantFrom('; ', ';', ' ; '),
  )
  .map(([parts, separator]) => parts.join(separator))
  .filter((h) => h.length < 14_000);

describe(`hostile cookie headers (${RUNS} cases)`, () => {
  let server: Server;
  let session: SessionMiddleware;
  let client: Redis;
  let sent = 0;
  let errors = 0;
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  let port = 0;

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
    session = koaRedisSession({ redis: client, onInvalid: () => undefined });
    app.use(session);
    app.use((ctx) => {
      ctx.body = JSON.stringify({ isNew: ctx.session.isNew, keys: Object.keys(ctx.session).length });
    });
    server = createServer(app.callback());
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as AddressInfo).port;
    await client.ping();
  });
  after(async () => {
    agent.destroy();
    await new Promise((r) => server.close(r));
    client.disconnect();
  });

  const get = (cookie: string) =>
    new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, path: '/', agent, headers: { cookie } }, (res) => {
        let body = '';
        res.setEncoding('latin1');
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on('error', reject);
      req.end();
    });

  it('never fails, and sends Redis exactly the load of a validly signed first session cookie', async () => {
    let cases = 0;
    let valid = 0;
    const wire = await f.monitor.capture(async () => {
      await fc.assert(
        fc.asyncProperty(header, async (cookie) => {
          const before = sent;
          const res = await get(cookie);
          const loads = expectedLoads(cookie);
          cases++;
          valid += loads;
          assert.equal(res.status, 200, `status for ${JSON.stringify(cookie)}`);
          assert.deepEqual(JSON.parse(res.body), { isNew: true, keys: 0 });
          assert.equal(sent - before, loads, `Redis commands for ${JSON.stringify(cookie)}`);
        }),
        { numRuns: RUNS },
      );
    });
    assert.equal(errors, 0, 'no error reached Koa');
    assert.equal(cases, RUNS);
    assert.deepEqual([...new Set(wire.map((c) => c.op))].filter((op) => op !== 'load'), [], 'nothing but loads on the wire');
    assert.equal(wire.length, valid, 'MONITOR saw one load per validly signed cookie, nothing else');
    console.log(`fuzz: ${cases} cookie headers, ${valid} validly signed (${wire.length} loads on the wire), ${cases - valid} rejected with no Redis command, ${errors} errors`);
  });
});
