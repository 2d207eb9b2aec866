/**
 * `npm run bench:alloc`: heap bytes allocated per request by the session layer, with every option
 * at its default and with every option set (the goal: no per-request allocation that grows with
 * the number of options), and with tracing on, which allocates a trace by design.
 *
 * Requests run in-process through Koa's own callback (no sockets) against a private redis-server,
 * 10 at a time. The young generation is made large enough (--min/--max-semi-space-size, set by the
 * npm script) that no garbage collection runs while a batch is measured (a batch in which one ran
 * is measured again), so the growth of heapUsed over a batch, divided by its requests, is what they
 * allocated. Median of 7 batches.
 *   npm run bench:alloc
 */
import { PerformanceObserver } from 'node:perf_hooks';
import Koa from 'koa';
import { koaRedisSession, type SessionOptions } from '../src/index.js';
import { sessionSerializer } from '../src/values.js';
import { inProcess } from '../test/helpers/in-process.js';
import { startRedis } from '../test/helpers/redis-server.js';
import { realisticSession } from './servers/common.js';

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with --expose-gc (npm run bench:alloc does)');

let collections = 0;
new PerformanceObserver((list) => (collections += list.getEntries().length)).observe({ entryTypes: ['gc'] });

const BATCH = 1000;
const CONCURRENCY = 10;
const redis = await startRedis();

const everyOption = (url: string): SessionOptions => ({
  redis: url,
  keys: ['alloc-newest', 'alloc-older'],
  prefix: 'alloc:',
  contextKey: 'session',
  timeout: 3600,
  timeoutTrigger: 600,
  setRedisTtl: true,
  detectChanges: true,
  deserializedFailsNew: true,
  invalidateEmptySession: true,
  cookie: {
    name: 'sid',
    maxAge: 86_400_000,
    path: '/',
    domain: 'example.com',
    secure: false,
    httpOnly: true,
    sameSite: 'strict',
    priority: 'high',
  },
  cookieOnException: false,
  allowCookies: (ctx) => ctx.path !== '/static',
  onInvalid: () => undefined,
  serializer: sessionSerializer,
  genId: () => Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString('base64url'),
  maxSize: 131_072,
  onRedisError: 'continue',
  commandTimeout: 2000,
  debug: false,
  traceHeader: false,
});

const CONFIGS: Array<[string, ((url: string) => SessionOptions) | null]> = [
  ['Koa alone, no session', null],
  ['defaults', (url) => ({ redis: url })],
  ['every option set', everyOption],
  ['defaults + traceHeader (a trace per request)', (url) => ({ redis: url, traceHeader: true })],
];

function makeApp(options: SessionOptions | null) {
  const app = new Koa();
  app.keys = ['alloc-newest', 'alloc-older'];
  const session = options ? koaRedisSession(options) : null;
  if (session) app.use(session);
  app.use((ctx) => {
    const s = (session ? ctx.session : {}) as Record<string, unknown>;
    if (ctx.path === '/seed') Object.assign(s, realisticSession());
    else if (ctx.path === '/write') s.visits = ((s.visits as number | undefined) ?? 0) + 1;
    else if (ctx.path === '/read') ctx.body = String(s.visits);
    ctx.body ??= 'ok';
  });
  return { call: inProcess(app), session };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;
const SCENARIOS = [
  ['read-only', '/read', true],
  ['write', '/write', true],
  ['new session', '/seed', false],
  ['untouched', '/none', true],
] as const;

const results = new Map<string, number>();
for (const [name, make] of CONFIGS) {
  const { call, session } = makeApp(make ? make(redis.url) : null);
  const cookie = (await call('/seed')).setCookie.map((c) => c.split(';')[0]).join('; ');
  for (const [scenario, path, withCookie] of SCENARIOS) {
    const run = async (n: number) => {
      let i = 0;
      await Promise.all(
        Array.from({ length: CONCURRENCY }, async () => {
          while (i++ < n) await call(path, withCookie ? cookie : undefined);
        }),
      );
    };
    await run(BATCH); // warm up: JIT, inline caches, script cache
    const perRequest: number[] = [];
    for (let tries = 0; perRequest.length < 7 && tries < 30; tries++) {
      gc();
      await new Promise((r) => setTimeout(r, 20)); // the observer hears of the forced collection late
      const seen = collections;
      const before = process.memoryUsage().heapUsed;
      await run(BATCH);
      const grown = process.memoryUsage().heapUsed - before;
      await new Promise((r) => setTimeout(r, 20));
      if (collections === seen) perRequest.push(grown / BATCH); // a batch a collection ran in is not counted
    }
    if (perRequest.length < 7)
      throw new Error(`${name}/${scenario}: a garbage collection ran in every batch; raise --min-semi-space-size`);
    results.set(`${name}/${scenario}`, median(perRequest));
  }
  await session?.close();
}
await redis.stop();

console.log(
  `\nHeap allocated per request (bytes, median of 7 batches of ${BATCH}, ${CONCURRENCY} concurrent, Koa's context and the fake request included), node ${process.version}\n`,
);
console.log(
  `| scenario | ${CONFIGS.map(([n]) => n).join(' | ')} | session layer: defaults | session layer: every option | every option / defaults |`,
);
console.log(`|---|${CONFIGS.map(() => '---|').join('')}---|---|---|`);
for (const [scenario] of SCENARIOS) {
  const [koa = 0, defaults = 0, every = 0, ...rest] = CONFIGS.map(([n]) => results.get(`${n}/${scenario}`) ?? 0);
  const cells = [koa, defaults, every, ...rest, defaults - koa, every - koa].map((b) => b.toFixed(0));
  console.log(`| ${scenario} | ${cells.join(' | ')} | ${((every - koa) / (defaults - koa)).toFixed(2)} |`);
}
