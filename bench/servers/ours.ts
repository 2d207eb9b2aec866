/** koa-session-machine, with its defaults. */
import Koa from 'koa';
import { koaRedisSession } from '../../src/index.js';
import { PORT, REDIS_URL, ready, realisticSession } from './common.js';

const app = new Koa();
app.keys = ['bench-newest', 'bench-older'];
app.use(koaRedisSession({ redis: REDIS_URL }));
app.use((ctx) => {
  if (ctx.path === '/none') ctx.body = 'ok';
  else if (ctx.path === '/seed') {
    Object.assign(ctx.session, realisticSession());
    ctx.body = 'ok';
  } else if (ctx.path === '/write') {
    ctx.session.visits = ((ctx.session.visits as number | undefined) ?? 0) + 1;
    ctx.body = String(ctx.session.visits);
  } else ctx.body = String(ctx.session.visits);
});
app.listen(PORT, '127.0.0.1', () => ready('koa-session-machine'));
