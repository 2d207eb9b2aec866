/**
 * Flash messages after a redirect (post/redirect/get): the form posts, the message is queued in the
 * session, shown once on the next page, and gone after that. The form carries the CSRF token
 * (README "`ctx.session`"), and the messages are HTML-escaped: they hold what the visitor typed.
 *   npm run example:flash
 */
import Koa from 'koa';
import { bodyParser } from '@koa/bodyparser';
import { Redis } from 'ioredis';
import { csrfProtect, koaRedisSession, type SessionMiddleware } from 'koa-session-machine';
import { escapeHtml } from './support/html.js';
import { isMain, listen } from './support/main.js';
import { redisForExample } from './support/redis.js';

export function createApp(redisUrl: string): { app: Koa; session: SessionMiddleware } {
  const app = new Koa();
  app.keys = ['newest-secret', 'older-secret'];
  const session = koaRedisSession({ redis: new Redis(redisUrl), prefix: 'example:sess:' });
  app.use(session);
  app.use(bodyParser({ enableTypes: ['form'] }));
  app.use(csrfProtect());
  app.use(async (ctx) => {
    if (ctx.method === 'POST' && ctx.path === '/save') {
      const item = (ctx.request.body as { item?: unknown } | undefined)?.item;
      if (typeof item === 'string' && item.trim() !== '') ctx.session.flash(`Saved ${item}.`);
      else ctx.session.flash('Nothing to save.', 'errors');
      ctx.status = 303;
      return ctx.redirect('/');
    }
    if (ctx.path !== '/') return;
    const messages = ctx.session.popFlash();
    const errors = ctx.session.popFlash('errors');
    ctx.type = 'html';
    ctx.body = [
      ...messages.map((m) => `<p class="flash">${escapeHtml(String(m))}</p>`),
      ...errors.map((m) => `<p class="error">${escapeHtml(String(m))}</p>`),
      '<form method="post" action="/save">',
      `<input type="hidden" name="_csrf" value="${escapeHtml(ctx.session.getCsrfToken())}">`,
      '<input name="item" value="report"> <button>Save</button>',
      '</form>',
    ].join('\n');
  });
  return { app, session };
}

if (isMain(import.meta.url)) {
  const redis = await redisForExample();
  listen(createApp(redis.url).app, 'flash example');
}
