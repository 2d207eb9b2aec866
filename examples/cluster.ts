/**
 * Sessions on Redis Cluster: pass an ioredis `Cluster` as `redis`. Uses REDIS_CLUSTER_NODES
 * (host:port,host:port…) when set; otherwise starts a private 3-master, 3-replica cluster from
 * `redis-server` on PATH and stops it on exit.
 *   npm run example:cluster
 */
import Koa from 'koa';
import { Cluster } from 'ioredis';
import { koaRedisSession, type SessionMiddleware } from 'koa-session-machine';
import { isMain, listen } from './support/main.js';
import { startCluster } from '../test/helpers/redis-cluster.js';

export function createApp(nodes: Array<{ host: string; port: number }>): {
  app: Koa;
  session: SessionMiddleware;
  cluster: Cluster;
} {
  const app = new Koa();
  app.keys = ['newest-secret', 'older-secret'];
  // Per-node options go in redisOptions; the middleware bounds every command by commandTimeout.
  const cluster = new Cluster(nodes, { redisOptions: { maxRetriesPerRequest: 1 } });
  cluster.on('error', (err) => console.error('redis cluster:', err.message));
  const session = koaRedisSession({ redis: cluster, prefix: 'example:sess:' });
  app.use(session);
  app.use(async (ctx) => {
    ctx.session.views = ((ctx.session.views as number | undefined) ?? 0) + 1;
    ctx.body = `Visits: ${String(ctx.session.views)} (session ${String(ctx.session.id)})`;
  });
  return { app, session, cluster };
}

if (isMain(import.meta.url)) {
  const given = process.env.REDIS_CLUSTER_NODES;
  let nodes: Array<{ host: string; port: number }>;
  if (given) {
    nodes = given.split(',').map((n) => ({ host: n.split(':')[0] ?? '127.0.0.1', port: Number(n.split(':')[1]) }));
  } else {
    const cluster = await startCluster(3, 1);
    const stop = () => void cluster.stop();
    for (const signal of ['SIGINT', 'SIGTERM'] as const)
      process.once(signal, () => cluster.stop().then(() => process.exit(0)));
    process.once('exit', stop);
    nodes = cluster.startupNodes;
    console.log(`started a private Redis Cluster on ports ${nodes.map((n) => n.port).join(', ')}`);
  }
  listen(createApp(nodes).app, 'Cluster example');
}
