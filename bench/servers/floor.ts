/**
 * The floor: the least any session read can do. Koa, a keygrip verify of the cookie, one GETEX
 * (read and slide the expiry in one round trip) and a JSON.parse; a write adds one SET. No change
 * detection, no machine, no options. On a Redis Cluster (REDIS_CLUSTER_NODES) the same through an
 * ioredis Cluster client.
 */
import { randomBytes } from 'node:crypto';
import Koa from 'koa';
import Keygrip from 'keygrip';
import { Cluster, Redis } from 'ioredis';
import { CLUSTER_NODES, PORT, REDIS_URL, ready, realisticSession } from './common.js';

const keys = new Keygrip(['bench-newest', 'bench-older']);
const redis: Redis | Cluster = CLUSTER_NODES
  ? new Cluster(CLUSTER_NODES, { redisOptions: { maxRetriesPerRequest: 1 } })
  : new Redis(REDIS_URL);

/** COALESCE=1: the commands of one event-loop turn leave in one socket write per node, as in
 *  src/store/commands.ts; the floor with the same transport as this package. */
let corked: Array<{ uncork(): void }> = [];
function coalesce(): void {
  if (process.env.COALESCE !== '1' || corked.length > 0) return;
  const clients = redis instanceof Cluster ? (redis.status === 'ready' ? redis.nodes('master') : []) : [redis];
  for (const client of clients) {
    if (client.status !== 'ready') continue;
    client.stream.cork();
    corked.push(client.stream);
  }
  if (corked.length === 0) return;
  setImmediate(() => {
    const streams = corked;
    corked = [];
    for (const stream of streams) stream.uncork();
  });
}
const app = new Koa();
app.use(async (ctx) => {
  if (ctx.path === '/none') {
    ctx.body = 'ok';
    return;
  }
  if (ctx.path === '/seed') {
    const id = randomBytes(32).toString('base64url');
    coalesce();
    await redis.set(`floor:${id}`, JSON.stringify(realisticSession()), 'EX', 1200);
    ctx.cookies.set('sid', `${id}.${keys.sign(`sid=${id}`)}`, { httpOnly: true, sameSite: 'lax' });
    ctx.body = 'ok';
    return;
  }
  const raw = ctx.cookies.get('sid') ?? '';
  const dot = raw.lastIndexOf('.');
  const id = raw.slice(0, dot);
  if (dot < 0 || !keys.verify(`sid=${id}`, raw.slice(dot + 1))) {
    ctx.body = 'no session';
    return;
  }
  coalesce();
  const text = await redis.getex(`floor:${id}`, 'EX', 1200);
  const data = text ? (JSON.parse(text) as Record<string, number>) : {};
  if (ctx.path === '/write') {
    data.visits = (data.visits ?? 0) + 1;
    coalesce();
    await redis.set(`floor:${id}`, JSON.stringify(data), 'EX', 1200);
  }
  ctx.body = String(data.visits);
});
app.listen(PORT, '127.0.0.1', () => ready('floor'));
