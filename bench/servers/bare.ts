/** Bare Koa: no session at all. The ceiling. */
import Koa from 'koa';
import { PORT, ready } from './common.js';

const app = new Koa();
app.use((ctx) => {
  ctx.body = 'ok';
});
app.listen(PORT, '127.0.0.1', () => ready('bare'));
