/**
 * `npm run bench:layout`: the storage layout in use (one hash per session, a field per top-level
 * key: docs/design.md, "Storage") against a candidate, measured side by side on one private
 * redis-server before choosing between them: Redis memory per session (`MEMORY USAGE … SAMPLES 0`)
 * and Redis' own time per read, write and create (`INFO commandstats`, microseconds per call, the
 * commands a script runs inside it included).
 *
 * The candidate keeps the session in one string: a short text header (format version, created,
 * timeout; read by `string.match` without decoding the rest) and the fields as one MessagePack map
 * packed by Redis' own `cmsgpack`. The expiry is the key's TTL. A read is a GET and, when due, an
 * EXPIRE; a write decodes the map, applies the request's changes (the same intent as today's
 * patch: set these fields, delete those, refuse growth past maxSize) and packs it again, in one
 * script; a create is one plain `SET … NX EX` of a value the client packs.
 *
 *   npm run bench:layout [-- --sessions 1000 --ops 5000]
 */
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { startRedis } from '../test/helpers/redis-server.js';
import { createLua, loadLua, patchLua } from '../src/store/scripts.generated.js';
import { realisticSession } from './servers/common.js';
import { sessionSerializer } from '../src/values.js';

const { values } = parseArgs({ options: { sessions: { type: 'string' }, ops: { type: 'string' } } });
const SESSIONS = Number(values.sessions ?? 1000);
const OPS = Number(values.ops ?? 5000);
const SIZES = [100, 1000, 10_000];
const TIMEOUT = 1200;

/** The candidate's read: the value, and a refresh of the TTL when it moved. */
const candidateLoad = `
local value = redis.call('GET', KEYS[1])
if not value then return {0} end
local t = tonumber(string.match(value, '^%d+ %d+ (%d+) '))
if t and t > 0 and redis.call('TTL', KEYS[1]) ~= t then redis.call('EXPIRE', KEYS[1], t) end
return {1, value}`;

/** The candidate's write: the same intent as patch.lua (ARGV: maxSize, n, n field/value pairs,
 *  then fields to delete), applied to the decoded map and packed again. */
const candidatePatch = `
local value = redis.call('GET', KEYS[1])
if not value then return -1 end
local head, body = string.match(value, '^(%d+ %d+ %d+ )(.*)$')
local fields = cmsgpack.unpack(body)
local n = tonumber(ARGV[2])
for i = 3, 2 + 2 * n, 2 do fields[ARGV[i]] = ARGV[i + 1] end
for i = 3 + 2 * n, #ARGV do fields[ARGV[i]] = nil end
local packed = cmsgpack.pack(fields)
if #packed > tonumber(ARGV[1]) then return -2 end
local t = tonumber(string.match(head, '^%d+ %d+ (%d+) '))
redis.call('SET', KEYS[1], head .. packed, 'EX', t)
return 1`;

/** A MessagePack map of strings, as cmsgpack would pack it (fixmap/map16, str8/16/32). */
function packMap(fields: Array<[string, string]>): Buffer {
  const parts: Buffer[] = [];
  const n = fields.length;
  parts.push(n < 16 ? Buffer.from([0x80 | n]) : Buffer.from([0xde, n >> 8, n & 0xff]));
  const str = (s: string) => {
    const b = Buffer.from(s);
    const l = b.length;
    if (l < 32) parts.push(Buffer.from([0xa0 | l]));
    else if (l < 256) parts.push(Buffer.from([0xd9, l]));
    else if (l < 65536) parts.push(Buffer.from([0xda, l >> 8, l & 0xff]));
    else {
      const h = Buffer.alloc(5);
      h[0] = 0xdb;
      h.writeUInt32BE(l, 1);
      parts.push(h);
    }
    parts.push(b);
  };
  for (const [k, v] of fields) {
    str(k);
    str(v);
  }
  return Buffer.concat(parts);
}

/** A session's data fields as both layouts store them: `:key` → the value's encoding. */
function dataFields(bytes: number): Array<[string, string]> {
  return Object.entries(realisticSession(bytes)).map(([k, v]) => [`:${k}`, sessionSerializer.stringify(v)]);
}

const server = await startRedis();
const redis = new Redis(server.url);
redis.defineCommand('load', { numberOfKeys: 1, lua: loadLua });
redis.defineCommand('create', { numberOfKeys: 1, lua: createLua });
redis.defineCommand('patch', { numberOfKeys: 1, lua: patchLua });
redis.defineCommand('cload', { numberOfKeys: 1, lua: candidateLoad });
redis.defineCommand('cpatch', { numberOfKeys: 1, lua: candidatePatch });
type Scripted = Redis & Record<'load' | 'create' | 'patch' | 'cload' | 'cpatch', (...args: unknown[]) => Promise<unknown>>;
const r = redis as Scripted;

/** Redis' microseconds per call of the commands matching `names`, over what ran since the reset. */
async function usecPerCall(names: string[], calls: number): Promise<number> {
  const info = await redis.info('commandstats');
  let usec = 0;
  for (const name of names) {
    const m = new RegExp(`cmdstat_${name}:calls=\\d+,usec=(\\d+),`).exec(info);
    usec += Number(m?.[1] ?? 0);
  }
  return usec / calls;
}

async function memoryPerSession(prefix: string): Promise<number> {
  let bytes = 0;
  for (let i = 0; i < SESSIONS; i++) bytes += Number(await redis.call('MEMORY', 'USAGE', `${prefix}${i}`, 'SAMPLES', '0'));
  return bytes / SESSIONS;
}

const now = () => Math.floor(Date.now() / 1000);
const rows: string[] = [];
try {
  for (const size of SIZES) {
    await redis.flushall();
    const fields = dataFields(size);
    const flat = fields.flat();
    const sizeOf = flat.reduce((n, s) => n + Buffer.byteLength(s), 0);

    // -- create ----------------------------------------------------------------------------
    await redis.config('RESETSTAT');
    let pipe = redis.pipeline();
    for (let i = 0; i < SESSIONS; i++) {
      const meta = ['c', String(now()), 'v', '1', 't', String(TIMEOUT), 'x', String(now() + TIMEOUT), 's', String(sizeOf)];
      (pipe as unknown as Scripted).create(`h:${i}`, TIMEOUT, `op${i}`, [...meta, ...flat]);
    }
    await pipe.exec();
    const createHash = await usecPerCall(['evalsha', 'eval'], SESSIONS);
    await redis.config('RESETSTAT');
    pipe = redis.pipeline();
    for (let i = 0; i < SESSIONS; i++) pipe.set(`p:${i}`, Buffer.concat([Buffer.from(`1 ${now()} ${TIMEOUT} `), packMap(fields)]), 'EX', TIMEOUT, 'NX');
    await pipe.exec();
    const createPacked = await usecPerCall(['set'], SESSIONS);

    const memHash = await memoryPerSession('h:');
    const memPacked = await memoryPerSession('p:');

    // -- read (a refresh due on every one: the clock moved a second) ---------------------------
    await redis.config('RESETSTAT');
    pipe = redis.pipeline();
    for (let i = 0; i < OPS; i++) (pipe as unknown as Scripted).load(`h:${i % SESSIONS}`, now() + 1 + (i % 2), -1, '1', 1, -1, TIMEOUT);
    await pipe.exec();
    const readHash = await usecPerCall(['evalsha', 'eval'], OPS);
    await redis.config('RESETSTAT');
    pipe = redis.pipeline();
    for (let i = 0; i < OPS; i++) (pipe as unknown as Scripted).cload(`p:${i % SESSIONS}`);
    // The candidate's refresh is due when the TTL moved: let a second pass for a fair comparison.
    await new Promise((res) => setTimeout(res, 1100));
    await pipe.exec();
    const readPacked = await usecPerCall(['evalsha', 'eval'], OPS);

    // -- write: one top-level key changed --------------------------------------------------------
    await redis.config('RESETSTAT');
    pipe = redis.pipeline();
    for (let i = 0; i < OPS; i++) {
      (pipe as unknown as Scripted).patch(`h:${i % SESSIONS}`, [now(), '1', 65536, '', '1', 0, 1, `w${i}`, -1, ':visits', String(i)]);
    }
    await pipe.exec();
    const writeHash = await usecPerCall(['evalsha', 'eval'], OPS);
    await redis.config('RESETSTAT');
    pipe = redis.pipeline();
    for (let i = 0; i < OPS; i++) (pipe as unknown as Scripted).cpatch(`p:${i % SESSIONS}`, 65536, 1, ':visits', String(i));
    await pipe.exec();
    const writePacked = await usecPerCall(['evalsha', 'eval'], OPS);

    const label = size >= 1000 ? `${size / 1000} KB` : `${size} B`;
    rows.push(
      `| ~${label} | memory | ${memHash.toFixed(0)} B | ${memPacked.toFixed(0)} B | ${(memPacked / memHash).toFixed(2)}× |`,
      `| ~${label} | create | ${createHash.toFixed(2)} µs | ${createPacked.toFixed(2)} µs | ${(createPacked / createHash).toFixed(2)}× |`,
      `| ~${label} | read (refresh due) | ${readHash.toFixed(2)} µs | ${readPacked.toFixed(2)} µs | ${(readPacked / readHash).toFixed(2)}× |`,
      `| ~${label} | write (one key) | ${writeHash.toFixed(2)} µs | ${writePacked.toFixed(2)} µs | ${(writePacked / writeHash).toFixed(2)}× |`,
    );
  }
} finally {
  redis.disconnect();
  await server.stop();
}

console.log(`\nStorage layouts side by side (${SESSIONS} sessions, ${OPS} reads and writes; Redis' own time per call)\n`);
console.log('| session data | figure | hash per session (in use) | one packed string (candidate) | candidate ÷ in use |');
console.log('|---|---|---|---|---|');
for (const row of rows) console.log(row);
