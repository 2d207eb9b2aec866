/**
 * `npm run bench:layout`: what the storage layout (one string per session, a text header and a
 * MessagePack map: docs/design.md, "Storage") costs Redis itself, beside the floor of the same size:
 * Redis' own microseconds per read, write and create (`INFO commandstats`, what a script runs inside
 * it included) and bytes per session (`MEMORY USAGE … SAMPLES 0`), on one private redis-server.
 *
 *   read    this package's load script (refresh due on every call)   floor: GET
 *   write   its patch script setting one key                          floor: SET … EX of the whole value
 *   create  SET … NX EX of a value packed by the client               floor: SET … EX
 *
 * A write decodes and packs the whole map inside Redis, so it grows with the session where the
 * floor's does not: that is the price of merging concurrent writes in Redis (bench/README.md).
 *
 *   npm run bench:layout [-- --sessions 1000 --ops 5000 --sizes 100,1000,10000,60000]
 */
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { startRedis } from '../test/helpers/redis-server.js';
import { loadLua, patchLua } from '../src/store/scripts.generated.js';
import { FORMAT_VERSION, header, packSession } from '../src/store/layout.js';
import { realisticSession } from './servers/common.js';
import { sessionSerializer } from '../src/values.js';
import { numberList, numberOption } from './options.js';

const { values } = parseArgs({
  options: { sessions: { type: 'string' }, ops: { type: 'string' }, sizes: { type: 'string' } },
});
const SESSIONS = numberOption('--sessions', values.sessions, 1000);
const OPS = numberOption('--ops', values.ops, 5000);
const SIZES = numberList('--sizes', values.sizes, '100,1000,10000,60000');
const TIMEOUT = 1200;

/** A session's data fields as stored: `:key` → the value's encoding. */
function dataFields(bytes: number): string[] {
  return Object.entries(realisticSession(bytes)).flatMap(([k, v]) => [`:${k}`, sessionSerializer.stringify(v)]);
}

const server = await startRedis();
const redis = new Redis(server.url);
redis.defineCommand('load', { numberOfKeys: 1, lua: loadLua });
redis.defineCommand('patch', { numberOfKeys: 1, lua: patchLua });
type Scripted = Redis & Record<'load' | 'patch', (...args: unknown[]) => Promise<unknown>>;

/** Redis' microseconds per call of the commands named, over what ran since the last reset. */
async function usecPerCall(names: string[], calls: number): Promise<number> {
  const info = await redis.info('commandstats');
  let usec = 0;
  for (const name of names) usec += Number(new RegExp(`cmdstat_${name}:calls=\\d+,usec=(\\d+),`).exec(info)?.[1] ?? 0);
  return usec / calls;
}

async function bytesPerSession(prefix: string): Promise<number> {
  let bytes = 0;
  for (let i = 0; i < SESSIONS; i++)
    bytes += Number(await redis.call('MEMORY', 'USAGE', `${prefix}${i}`, 'SAMPLES', '0'));
  return bytes / SESSIONS;
}

/** Run `queue` for each of `count` calls in one pipeline; Redis' µs per call of `names`. */
async function measure(names: string[], count: number, queue: (pipe: Scripted, i: number) => void): Promise<number> {
  await redis.config('RESETSTAT');
  const pipe = redis.pipeline() as unknown as Scripted & { exec(): Promise<Array<[Error | null, unknown]>> };
  for (let i = 0; i < count; i++) queue(pipe, i);
  for (const [err] of (await pipe.exec()) ?? []) if (err) throw err;
  return usecPerCall(names, count);
}

const now = () => Math.floor(Date.now() / 1000);
const rows: string[] = [];
try {
  for (const size of SIZES) {
    await redis.flushall();
    const fields = dataFields(size);
    const floorValue = JSON.stringify(realisticSession(size));
    const value = (i: number) =>
      packSession(header(now(), TIMEOUT, now() + TIMEOUT), [...fields, 'o', `bench000${String(i).padStart(6, '0')}=1`]);
    const create = await measure(['set'], SESSIONS, (p, i) => void p.set(`s:${i}`, value(i), 'EX', TIMEOUT, 'NX'));
    const createFloor = await measure(['set'], SESSIONS, (p, i) => void p.set(`f:${i}`, floorValue, 'EX', TIMEOUT));
    const memory = await bytesPerSession('s:');
    const memoryFloor = await bytesPerSession('f:');
    // Reads one second later, so every load's refresh is due (the worst case).
    await new Promise((r) => setTimeout(r, 1100));
    const read = await measure(
      ['evalsha', 'eval'],
      OPS,
      (p, i) => void p.load(`s:${i % SESSIONS}`, now() + (i % 2), -1, '1', FORMAT_VERSION, -1, TIMEOUT),
    );
    const readFloor = await measure(['get'], OPS, (p, i) => void p.get(`f:${i % SESSIONS}`));
    const write = await measure(
      ['evalsha', 'eval'],
      OPS,
      (p, i) =>
        void p.patch(`s:${i % SESSIONS}`, [
          now(),
          '1',
          1 << 20,
          '',
          '1',
          0,
          1,
          `bench001${String(i).padStart(6, '0')}`,
          -1,
          '', // no userKey (include/apply.lua's intent: its field, index, handle and info)
          '',
          '',
          '',
          ':views',
          String(i),
        ]),
    );
    const writeFloor = await measure(
      ['set'],
      OPS,
      (p, i) => void p.set(`f:${i % SESSIONS}`, floorValue, 'EX', TIMEOUT),
    );
    const cell = (ours: number, floor: number) =>
      `${ours.toFixed(1)} / ${floor.toFixed(1)} (${(ours / floor).toFixed(2)}×)`;
    rows.push(
      `| ${size >= 1000 ? `${size / 1000} KB` : `${size} B`} | ${cell(read, readFloor)} | ${cell(write, writeFloor)} | ${cell(create, createFloor)} | ${Math.round(memory)} / ${Math.round(memoryFloor)} (${(memory / memoryFloor).toFixed(2)}×) |`,
    );
  }
  console.log(
    `Redis' own µs per call, ours / the floor (ratio); bytes per session (${SESSIONS} sessions, ${OPS} reads and writes)\n`,
  );
  console.log('| session | read | write | create | memory |');
  console.log('|---|---|---|---|---|');
  for (const row of rows) console.log(row);
} finally {
  redis.disconnect();
  await server.stop();
}
