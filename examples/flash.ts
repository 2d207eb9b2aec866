/**
 * Flash messages after a redirect (post/redirect/get): the message is queued in the session,
 * shown once on the next page, and gone after that.
 *   npm run example:flash
 */
import Koa from 'koa';
import { Redis } from 'ioredis';
import { koaRedisSession, type SessionMiddleware } from 'koa-session-machine';
import { isMain, listen } from './support/main.js';
import { redisForExample } from './support/redis.js';

export function createApp(redisUrl: string): { app: Koa; session: SessionMiddleware } {
  const app = new Koa();
  app.keys = ['newest-secret', 'older-secret'];
  const session = koaRedisSession({ redis: new Redis(redisUrl) });
  app.use(session);
  app.use(async (ctx) => {
    if (ctx.path === '/save') {
      const item = String(ctx.query.item ?? 'something');
      ctx.session.flash(`Saved ${item}.`);
      if (item === '') ctx.session.flash('Nothing to save.', 'errors');
      return ctx.redirect('/');
    }
    const messages = ctx.session.popFlash();
    const errors = ctx.session.popFlash('errors');
    ctx.type = 'html';
    ctx.body = [
      ...messages.map((m) => `<p class="flash">${String(m)}</p>`),
      ...errors.map((m) => `<p class="error">${String(m)}</p>`),
      '<p><a href="/save?item=report">save the report</a></p>',
    ].join('\n');
  });
  return { app, session };
}

if (isMain(import.meta.url)) {
  const redis = await redisForExample();
  listen(createApp(redis.url).app, 'flash example');
}
