/** koa-session 7 with koa-redis 4 as its external store (the usual Koa setup). */
import Koa from 'koa';
import session from 'koa-session';
// @ts-expect-error koa-redis ships no types
import redisStore from 'koa-redis';
import { PORT, REDIS_URL, ready, realisticSession } from './common.js';

const app = new Koa();
app.keys = ['bench-newest', 'bench-older'];
const url = new URL(REDIS_URL);
app.use(session({ store: redisStore({ host: url.hostname, port: Number(url.port) }), maxAge: 1_200_000 }, app));
app.use((ctx) => {
  const s = ctx.session as unknown as Record<string, unknown>;
  if (ctx.path === '/none') ctx.body = 'ok';
  else if (ctx.path === '/seed') {
    Object.assign(s, realisticSession());
    ctx.body = 'ok';
  } else if (ctx.path === '/write') {
    s.visits = ((s.visits as number | undefined) ?? 0) + 1;
    ctx.body = String(s.visits);
  } else ctx.body = String(s.visits);
});
app.listen(PORT, '127.0.0.1', () => ready('koa-session + koa-redis'));
