/**
 * A CDN-cacheable route: `allowCookies` refuses the session cookie on any response marked public,
 * so a shared cache never stores (and hands out) someone's session; no session is created for it.
 *   npm run example:cdn
 */
import Koa from 'koa';
import { Redis } from 'ioredis';
import { koaRedisSession, type SessionMiddleware } from 'koa-session-machine';
import { escapeHtml } from './support/html.js';
import { isMain, listen } from './support/main.js';
import { redisForExample } from './support/redis.js';

export function createApp(redisUrl: string): { app: Koa; session: SessionMiddleware } {
  const app = new Koa();
  app.keys = ['newest-secret', 'older-secret'];
  const session = koaRedisSession({
    redis: new Redis(redisUrl),
    prefix: 'example:sess:',
    allowCookies: (ctx) => !/\bpublic\b/.test(ctx.response.get('Cache-Control')),
  });
  app.use(session);
  app.use(async (ctx) => {
    if (ctx.path.startsWith('/public/')) {
      ctx.set('Cache-Control', 'public, max-age=300');
      ctx.session.lastPublicPage = ctx.path; // not stored for a new visitor: no cookie may go out
      ctx.body = `<h1>${escapeHtml(ctx.path)}</h1><p>The same for everyone, cacheable.</p>`;
      ctx.type = 'html';
      return;
    }
    ctx.set('Cache-Control', 'private, no-store');
    ctx.session.visits = ((ctx.session.visits as number | undefined) ?? 0) + 1;
    ctx.body = `<p>Your account page, visit ${String(ctx.session.visits)}.</p><p><a href="/public/news">public news</a></p>`;
    ctx.type = 'html';
  });
  return { app, session };
}

if (isMain(import.meta.url)) {
  const redis = await redisForExample();
  listen(createApp(redis.url).app, 'CDN example');
}
