/**
 * Type tests of the published declarations without a SessionData declaration: any key is allowed
 * (as koa-session users expect), and the members stay typed. Compiled by `npm test`.
 */
import Koa from 'koa';
import { koaRedisSession } from 'koa-session-machine';

type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
/** Compiles only when the value's type is exactly T (see ../strict). Use: `expectType<T>()(value)`. */
function expectType<T>() {
  return <U>(value: U, ..._exactly: Equal<T, U> extends true ? [] : ['the type is not exactly T']): U => value;
}

const app = new Koa();
app.use(koaRedisSession());
app.use((ctx) => {
  ctx.session.views = (ctx.session.views ?? 0) + 1;
  ctx.session.anything = { nested: true };
  delete ctx.session.anything;
  expectType<string | null>()(ctx.session.id);
  expectType<string | null>()(ctx.session.handle);
  expectType<unknown[]>()(ctx.session.popFlash());
  // @ts-expect-error members stay read-only
  ctx.session.id = 'x';
  // @ts-expect-error members stay typed
  ctx.session.adjustTimeout('soon');
});
