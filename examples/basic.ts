/**
 * The basic example (SPEC §1): a visit counter, plus login with regenerate() and logout.
 *   npm start            # then open the URL it prints
 */
import { pathToFileURL } from 'node:url';
import Koa from 'koa';
import { Redis } from 'ioredis';
import { koaRedisSession, type SessionMiddleware } from 'koa-session-machine';
import { redisForExample } from './support/redis.js';

declare module 'koa-session-machine' {
  interface SessionData {
    views: number;
    user: string;
  }
}

export function createApp(redisUrl: string, mountFirst?: (session: SessionMiddleware) => Koa.Middleware): { app: Koa; session: SessionMiddleware } {
  const app = new Koa();
  app.keys = ['newest-secret', 'older-secret'];
  const session = koaRedisSession({ redis: new Redis(redisUrl) });
  if (mountFirst) app.use(mountFirst(session));
  app.use(session);
  app.use(async (ctx) => {
    if (ctx.path === '/login') {
      ctx.session.regenerate(); // a new id at login: no session fixation
      ctx.session.user = String(ctx.query.user ?? 'ada');
      return ctx.redirect('/');
    }
    if (ctx.path === '/logout') {
      ctx.session.invalidate();
      return ctx.redirect('/');
    }
    if (ctx.path !== '/') return;
    ctx.session.views = (ctx.session.views ?? 0) + 1;
    const who = ctx.session.user ? `${ctx.session.user} (<a href="/logout">log out</a>)` : 'nobody (<a href="/login?user=ada">log in</a>)';
    ctx.type = 'html';
    ctx.body = `<p>Visits: ${ctx.session.views}</p><p>Logged in: ${who}</p>`;
  });
  return { app, session };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const redis = await redisForExample();
  const { app } = createApp(redis.url);
  const port = Number(process.env.PORT ?? 3000);
  const server = app.listen(port, '127.0.0.1', () => {
    const address = server.address();
    console.log(`koa-session-machine example at http://127.0.0.1:${typeof address === 'object' && address ? address.port : port}/ (Redis ${redis.url})`);
  });
}
