/**
 * Soak: mixed traffic (read, write, new session, invalidate, untouched) against a private
 * redis-server for a while, printing requests served, errors and heap growth; exits 1 when the heap
 * does not stay flat or a request fails.
 *   npm run soak                    # 10 minutes
 *   npm run soak -- --seconds 20    # what CI runs
 */
import { Agent, createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';
import Koa from 'koa';
import { koaRedisSession } from '../src/index.js';
import { startRedis } from '../test/helpers/redis-server.js';
import { numberOption } from './options.js';

const { values } = parseArgs({ options: { seconds: { type: 'string' }, connections: { type: 'string' } } });
const seconds = numberOption('--seconds', values.seconds ?? process.env.SOAK_SECONDS, 600, { whole: false, min: 1 });
const connections = numberOption('--connections', values.connections, 8);
/** Heap growth allowed between the first and the last third of the run, after a full GC. */
const FLAT_BYTES = 8 * 1024 * 1024;

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with --expose-gc (npm run soak does)');

const redis = await startRedis();
const app = new Koa();
app.keys = ['soak-newest', 'soak-older'];
app.silent = true;
const session = koaRedisSession({ redis: redis.url, timeout: 600 });
app.use(session);
app.use((ctx) => {
  switch (ctx.path) {
    case '/read':
      ctx.body = String(ctx.session.n ?? 0);
      break;
    case '/write':
      ctx.session.n = ((ctx.session.n as number | undefined) ?? 0) + 1;
      ctx.session.cart = {
        items: Array.from({ length: 5 }, (_, i) => ({ sku: `sku-${i}`, qty: i })),
        updated: new Date(),
      };
      ctx.body = 'ok';
      break;
    case '/logout':
      ctx.session.invalidate();
      ctx.body = 'bye';
      break;
    default:
      ctx.body = 'untouched';
  }
});
const server = createServer(app.callback());
await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
const port = (server.address() as AddressInfo).port;
const agent = new Agent({ keepAlive: true, maxSockets: connections });

function get(path: string, cookie?: string): Promise<{ status: number; cookie?: string }> {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path, agent, headers: cookie ? { cookie } : {} }, (res) => {
      res.resume();
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, cookie: res.headers['set-cookie']?.[0]?.split(';')[0] }),
      );
    });
    req.on('error', () => resolve({ status: 0 }));
    req.end();
  });
}

let served = 0;
let errors = 0;
const heap: number[] = [];
const end = Date.now() + seconds * 1000;
const sampler = setInterval(
  () => {
    gc();
    heap.push(process.memoryUsage().heapUsed);
  },
  Math.max(250, (seconds * 1000) / 60),
);

await Promise.all(
  Array.from({ length: connections }, async (_, worker) => {
    let cookie: string | undefined;
    for (let i = 0; Date.now() < end; i++) {
      // a browser's life: log in, mostly read, sometimes write, now and then log out; plus bots
      const step = (i + worker) % 20;
      const path = !cookie
        ? '/write'
        : step === 19
          ? '/logout'
          : step % 4 === 0
            ? '/write'
            : step === 7
              ? '/static'
              : '/read';
      const res = await get(path, step === 11 ? undefined : cookie);
      served++;
      if (res.status !== 200) errors++;
      if (path === '/logout') cookie = undefined;
      else if (res.cookie && step !== 11) cookie = res.cookie;
    }
  }),
);
clearInterval(sampler);
agent.destroy();
await new Promise((r) => server.close(r));
await session.close();
await redis.stop();

const third = Math.max(1, Math.floor(heap.length / 3));
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;
const early = median(heap.slice(0, third));
const late = median(heap.slice(-third));
const growth = late - early;
const mb = (n: number) => (n / 1024 / 1024).toFixed(2);
console.log(
  `soak: ${seconds} s, ${connections} connections: ${served} requests served (${(served / seconds).toFixed(0)}/s), ${errors} errors`,
);
console.log(
  `heap after GC: first third ${mb(early)} MB, last third ${mb(late)} MB, growth ${mb(growth)} MB (allowed ${mb(FLAT_BYTES)} MB) over ${heap.length} samples`,
);
if (errors > 0 || growth > FLAT_BYTES) {
  console.log('soak: FAILED');
  process.exit(1);
}
console.log('soak: heap flat, no errors');
