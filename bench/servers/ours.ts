/**
 * koa-session-machine, with its defaults: on one server the client it makes from REDIS_URL; on a
 * Redis Cluster (REDIS_CLUSTER_NODES) an ioredis Cluster passed in, as README "Redis Cluster and
 * Sentinel" shows. AUTOPIPELINING=1 turns on ioredis' `enableAutoPipelining` on either.
 * For `npm run bench:users`: LOGGED_IN=1 puts a `userId` in the session /seed stores (a signed-in
 * user), and USER_KEY=userId turns on the `userKey` option (with a `sessionInfo` noting the user
 * agent, as at a login): README, "A user's sessions".
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
const USER_KEY = process.env.USER_KEY;
const LOGGED_IN = process.env.LOGGED_IN === '1';
const app = new Koa();
app.keys = ['bench-newest', 'bench-older'];
app.use(
  koaRedisSession(
    USER_KEY ? { redis, userKey: USER_KEY, sessionInfo: (ctx) => ({ agent: ctx.get('User-Agent') }) } : { redis },
  ),
);
app.use((ctx) => {
  if (ctx.path === '/none') ctx.body = 'ok';
  else if (ctx.path === '/seed') {
    Object.assign(ctx.session, realisticSession());
    if (LOGGED_IN) ctx.session.userId = 'u-2048';
    ctx.body = 'ok';
  } else if (ctx.path === '/write') {
    ctx.session.visits = ((ctx.session.visits as number | undefined) ?? 0) + 1;
    ctx.body = String(ctx.session.visits);
  } else ctx.body = String(ctx.session.visits);
});
app.listen(PORT, '127.0.0.1', () => ready('koa-session-machine'));
