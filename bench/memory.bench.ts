/**
 * `npm run bench:memory`: Redis memory per stored session, for this package, koa-session +
 * koa-redis and express-session + connect-redis, at about 0.1, 1 and 10 KB of session data (the
 * same data for all three: bench/servers/common.ts). Each server runs in its own process against
 * one private redis-server, creates the sessions through its own `/seed` route, and the bytes are
 * `MEMORY USAGE <key> SAMPLES 0` summed over every key it left, divided by the sessions made.
 *
 *   npm run bench:memory [-- --sessions 1000]
 */
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { startRedis } from '../test/helpers/redis-server.js';
import { SERVERS, start } from './harness.js';
import { numberOption } from './options.js';

const { values } = parseArgs({ options: { sessions: { type: 'string' } } });
const SESSIONS = numberOption('--sessions', values.sessions, 1000);
const SIZES = [30, 100, 1000, 10_000];
const WHO = ['ours', 'koa-session', 'express-session'];

const server = await startRedis();
const redis = new Redis(server.url);

/** Bytes Redis holds for every key there, and how many keys. */
async function usage(): Promise<{ bytes: number; keys: number; encodings: Map<string, number> }> {
  let bytes = 0;
  let keys = 0;
  const encodings = new Map<string, number>();
  let cursor = '0';
  do {
    const [next, batch] = await redis.scan(cursor, 'COUNT', 1000);
    cursor = next;
    for (const key of batch) {
      bytes += Number(await redis.call('MEMORY', 'USAGE', key, 'SAMPLES', '0'));
      const encoding = String(await redis.call('OBJECT', 'ENCODING', key));
      encodings.set(encoding, (encodings.get(encoding) ?? 0) + 1);
      keys++;
    }
  } while (cursor !== '0');
  return { bytes, keys, encodings };
}

const rows: Array<{ size: number; who: string; perSession: number; keys: number; encodings: string }> = [];
try {
  for (const size of SIZES) {
    for (const who of WHO) {
      await redis.flushall();
      const spec = SERVERS.find((s) => s.key === who);
      if (!spec) throw new Error(`no server ${who}`);
      const running = await start({ ...spec, env: { ...spec.env, SESSION_BYTES: String(size) } }, server.url);
      try {
        // `start` made one session already (its cookie); make the rest, 20 at a time.
        for (let made = 1; made < SESSIONS; made += 20) {
          const batch = Math.min(20, SESSIONS - made);
          await Promise.all(
            Array.from({ length: batch }, () => fetch(`${running.url}/seed`).then((r) => r.arrayBuffer())),
          );
        }
      } finally {
        running.child.kill('SIGTERM');
      }
      const { bytes, keys, encodings } = await usage();
      rows.push({
        size,
        who,
        perSession: bytes / SESSIONS,
        keys,
        encodings: [...encodings].map(([e, n]) => `${e} ×${n}`).join(', '),
      });
    }
  }
} finally {
  redis.disconnect();
  await server.stop();
}

console.log(`\nRedis memory per stored session (${SESSIONS} sessions each; MEMORY USAGE … SAMPLES 0)\n`);
console.log(
  '| session data | koa-session-machine | koa-session + koa-redis | express-session + connect-redis | ours ÷ koa-session |',
);
console.log('|---|---|---|---|---|');
for (const size of SIZES) {
  const of = (who: string) => rows.find((r) => r.size === size && r.who === who) as (typeof rows)[number];
  const ours = of('ours');
  const koa = of('koa-session');
  const express = of('express-session');
  console.log(
    `| ~${size >= 1000 ? `${size / 1000} KB` : `${size} B`} | ${ours.perSession.toFixed(0)} B | ${koa.perSession.toFixed(0)} B | ${express.perSession.toFixed(0)} B | **${(ours.perSession / koa.perSession).toFixed(2)}×** |`,
  );
}
console.log('\nKey encodings:');
for (const r of rows) console.log(`  ${r.who} @ ${r.size} B: ${r.keys} keys (${r.encodings})`);
