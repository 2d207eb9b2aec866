/**
 * The smallest app (README "Use"): a visit counter.   npm run example:basic
 */
import Koa from 'koa';
import { Redis } from 'ioredis';
import { koaRedisSession, type SessionMiddleware } from 'koa-session-machine';
import { isMain, listen } from './support/main.js';
import { redisForExample } from './support/redis.js';

/** `mountFirst` puts a middleware in front of the session (examples/chart.ts mounts the chart page). */
export function createApp(redisUrl: string, mountFirst?: (session: SessionMiddleware) => Koa.Middleware) {
  const app = new Koa();
  app.keys = ['newest-secret', 'older-secret'];
  // A prefix of its own: on a Redis you already use, the example's keys never mix with yours.
  const session = koaRedisSession({ redis: new Redis(redisUrl), prefix: 'example:sess:' });
  if (mountFirst) app.use(mountFirst(session));
  app.use(session);
  app.use((ctx) => {
    if (ctx.path !== '/') return; // a 404 (the browser's /favicon.ico) neither reads nor counts
    ctx.session.views = ((ctx.session.views as number | undefined) ?? 0) + 1;
    ctx.body = `Visits: ${String(ctx.session.views)}`;
  });
  return { app, session };
}

if (isMain(import.meta.url)) listen(createApp((await redisForExample()).url).app, 'basic example');
