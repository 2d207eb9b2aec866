/**
 * Type tests of the published declarations without a SessionData declaration: any key is allowed
 * (as koa-session users expect), and the members stay typed. Compiled by `npm test`.
 */
import Koa from 'koa';
import { koaRedisSession } from 'koa-session-machine';

function expectType<T>(value: T): T {
  return value;
}

const app = new Koa();
app.use(koaRedisSession());
app.use((ctx) => {
  ctx.session.views = (ctx.session.views ?? 0) + 1;
  ctx.session.anything = { nested: true };
  delete ctx.session.anything;
  expectType<string | null>(ctx.session.id);
  expectType<unknown[]>(ctx.session.popFlash());
  // @ts-expect-error members stay read-only
  ctx.session.id = 'x';
  // @ts-expect-error members stay typed
  ctx.session.adjustTimeout('soon');
});
