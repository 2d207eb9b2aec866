/**
 * A real HTTP server around the session middleware (for concurrency and failover tests, where
 * requests must overlap on real sockets), and the traffic those tests drive through it.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import Koa from 'koa';
import { koaRedisSession, type SessionMiddleware, type SessionOptions } from '../../src/index.js';
import { KEYS } from './app.js';
import { closeable } from './cleanup.js';

export interface LiveApp {
  base: string;
  /** The middleware, for its client (`session.redis`). */
  session: SessionMiddleware;
  get(path: string, cookie?: string): Promise<Response>;
  /** Close the server, then the middleware's client; the after hooks close any app a failed test
   *  left open. */
  close(): Promise<void>;
}

export async function serveSession(
  options: SessionOptions,
  handler: (ctx: Koa.Context) => Promise<void> | void,
  upstream?: Koa.Middleware,
): Promise<LiveApp> {
  const app = new Koa();
  app.keys = KEYS;
  app.silent = true;
  if (upstream) app.use(upstream);
  const session = koaRedisSession(options);
  app.use(session);
  app.use(handler);
  const server: Server = createServer(app.callback());
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    base,
    session,
    get: (path, cookie) => fetch(base + path, { headers: cookie ? { cookie } : {} }),
    close: closeable(async () => {
      await new Promise((r) => server.close(r));
      await session.close();
    }),
  };
}

/** The session cookie a response set, as a Cookie header value. */
export function cookieOf(res: Response): string {
  return (res.headers.get('set-cookie') ?? '').split(';')[0] as string;
}

/** `send()`, sent again while it answers 503 (a command that did not answer within commandTimeout:
 *  a slow moment of a loaded machine, or a client still following a failover) until the clock
 *  (`performance.now()`) passes `until`; any other answer is returned as it came. For requests whose
 *  latency is not what the test asserts, only what they answer. A loop of them shares one `until`,
 *  so an app that keeps answering 503 fails the test soon, not once per request. */
export async function retryUnavailable(
  send: () => Promise<Response>,
  until = performance.now() + 30_000,
): Promise<Response> {
  for (;;) {
    const res = await send();
    if (res.status !== 503 || performance.now() > until) return res;
    await res.arrayBuffer(); // read to the end: the connection is free for the next try
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Four workers reading and writing the given sessions until `during()` has finished; what every
 *  request answered and the slowest answer. */
export async function trafficDuring(
  app: LiveApp,
  cookies: string[],
  during: () => Promise<void>,
): Promise<{ statuses: number[]; slowest: number }> {
  const statuses: number[] = [];
  let slowest = 0;
  let running = true;
  const traffic = Promise.all(
    Array.from({ length: 4 }, async (_, w) => {
      for (let i = w; running; i += 4) {
        const start = performance.now();
        const res = await app.get(i % 2 ? '/write' : '/read', cookies[i % cookies.length]);
        await res.text();
        slowest = Math.max(slowest, performance.now() - start);
        statuses.push(res.status);
      }
    }),
  );
  try {
    await during();
  } finally {
    running = false;
    await traffic;
  }
  return { statuses, slowest };
}
