/**
 * koa-session-machine, with its defaults: on one server the client it makes from REDIS_URL; on a
 * Redis Cluster (REDIS_CLUSTER_NODES) an ioredis Cluster passed in, as README "Redis Cluster and
 * Sentinel" shows. AUTOPIPELINING=1 turns on ioredis' `enableAutoPipelining` on either.
 */
import Koa from 'koa';
import { Cluster } from 'ioredis';
import { koaRedisSession } from '../../src/index.js';
import { AUTOPIPELINING, CLUSTER_NODES, PORT, REDIS_URL, ready, realisticSession } from './common.js';

const url = new URL(REDIS_URL);
const redis = CLUSTER_NODES
  ? new Cluster(CLUSTER_NODES, { enableAutoPipelining: AUTOPIPELINING, redisOptions: { maxRetriesPerRequest: 1 } })
  : AUTOPIPELINING
    ? { host: url.hostname, port: Number(url.port), enableAutoPipelining: true }
    : REDIS_URL;
const app = new Koa();
app.keys = ['bench-newest', 'bench-older'];
app.use(koaRedisSession({ redis }));
app.use((ctx) => {
  if (ctx.path === '/none') ctx.body = 'ok';
  else if (ctx.path === '/seed') {
    Object.assign(ctx.session, realisticSession());
    ctx.body = 'ok';
  } else if (ctx.path === '/write') {
    ctx.session.visits = ((ctx.session.visits as number | undefined) ?? 0) + 1;
    ctx.body = String(ctx.session.visits);
  } else ctx.body = String(ctx.session.visits);
});
app.listen(PORT, '127.0.0.1', () => ready('koa-session-machine'));
