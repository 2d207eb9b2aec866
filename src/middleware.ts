/**
 * The middleware's wiring: options, the Redis client and store, the tracer, and the request path
 * (src/request.ts, one request in four phases) behind the bypass and the trace. `middleware.sessions`
 * is src/user-sessions.ts.
 */
import type { Context, Middleware, Next } from 'koa';
import { AppKeys, resolveAppKeys } from './app-keys.js';
import { connect } from './client.js';
import { MachineRun } from './fsm.js';
import { resolveOptions, type ResolvedOptions, type SessionOptions } from './options.js';
import type { SessionInput } from './policy.js';
import { RequestPath } from './request.js';
import { ResponseCookie } from './response-cookie.js';
import type { SessionSettings } from './session.js';
import { SessionStore, type RedisClient } from './store/commands.js';
import { Tracer, newNotes, statusOf, type SessionTrace } from './trace.js';
import { type UserSessions, userSessions } from './user-sessions.js';

export type { SessionListing, UserSessions } from './user-sessions.js';

/** The key of `SessionMiddleware`'s bypass registration (used by `sessionChart()`). */
export const BYPASS: unique symbol = Symbol.for('koa-session-machine.bypass');

/** The middleware, with what it owns. */
export interface SessionMiddleware extends Middleware {
  /** Close the Redis client if this middleware created it (from a URL or options); a client passed
   *  in is left open for its owner. */
  close(): Promise<void>;
  /** The Redis client in use. */
  readonly redis: RedisClient;
  /** Call `listener` with the trace of every request from now on (turns tracing on); returns a
   *  function that stops it. `sessionChart()` uses this. */
  observe(listener: (trace: SessionTrace) => void): () => void;
  /** Leave requests for which `skip(ctx)` is true alone: no load, no refresh, no session (what
   *  `sessionChart()` asks for its own page and polls). */
  [BYPASS](skip: (ctx: Context) => boolean): void;
  /** A user's sessions (README, "A user's sessions"); needs the `userKey` option. */
  readonly sessions: UserSessions;
}

/**
 * Create the session middleware. Options are validated now: a mistake throws a TypeError that names
 * the option. Pass the app to check `app.keys` now too; otherwise a missing key ring fails the first
 * request with the same message.
 */
export function koaRedisSession(
  options: SessionOptions = {},
  app?: { keys?: unknown; context?: object },
): SessionMiddleware {
  const opts: ResolvedOptions = resolveOptions(options);
  if (opts.keys === undefined && app) resolveAppKeys(app); // a missing or bad app.keys fails now
  const { client, close } = connect(opts.redis, opts.commandTimeout);
  const store = new SessionStore(client, opts);
  const input: SessionInput = {
    invalidateEmptySession: opts.invalidateEmptySession,
    cookieOnException: opts.cookieOnException,
    deserializedFailsNew: opts.deserializedFailsNew,
    continueOnRedisError: opts.onRedisError === 'continue',
    rolling: opts.rolling,
  };
  const settings: SessionSettings = {
    serializer: opts.serializer,
    detectChanges: opts.detectChanges,
    timeout: opts.timeout,
    drawId: (lineage, user) => store.drawId(lineage, user),
    outsideUserSlot: (id, user) => store.outsideUserSlot(id, user),
    defaultLifetime: opts.cookie.maxAge ?? (opts.cookie.expires ? undefined : 'session'),
    userKey: opts.userKey,
    sessionInfo: opts.sessionInfo,
  };
  const cookie = new ResponseCookie(opts.cookie);
  const tracer = new Tracer(opts);
  /** Requests the session leaves alone entirely (`sessionChart()`'s page and polls). */
  const bypass: Array<(ctx: Context) => boolean> = [];
  const path = new RequestPath({
    opts,
    store,
    cookie,
    keys: new AppKeys(cookie.name, opts.keys, opts.idPattern),
    settings,
  });

  // Not an async function: one that returned the request path's promise would resolve its own with
  // it, two turns of the microtask queue more per request (bench/README.md, "New session").
  const middleware = function koaRedisSession(ctx: Context, next: Next): Promise<void> {
    try {
      if (bypass.length > 0 && bypass.some((skip) => skip(ctx))) return Promise.resolve(next());
      const run = new MachineRun(input);
      return tracer.on ? traced(ctx, next, run) : path.run(ctx, next, run, null);
    } catch (err) {
      // As from an async function: what the bypass check (`ctx.path` throws on a request target
      // Node cannot parse) or a synchronous `next` throws is the promise's rejection, never a throw.
      return Promise.reject(err);
    }
  } as SessionMiddleware;

  /** A request with tracing on: its trace, whether it ends in a response or an error. */
  async function traced(ctx: Context, next: Next, run: MachineRun): Promise<void> {
    run.trace = [];
    const notes = newNotes();
    const start = performance.now();
    let status = 500;
    let failed: unknown = null;
    try {
      await path.run(ctx, next, run, notes);
      status = ctx.status;
    } catch (err) {
      status = statusOf(err);
      failed = err;
      throw err;
    } finally {
      const line = tracer.finish(ctx, run, start, notes, status);
      // Koa's onerror drops every header but the error's own: the trace rides on the error too.
      if (failed !== null && tracer.header && typeof failed === 'object' && Object.isExtensible(failed)) {
        const e = failed as { headers?: Record<string, unknown> };
        e.headers = { ...e.headers, 'X-Session-Trace': line };
      }
    }
  }

  middleware.observe = (listener) => tracer.observe(listener);
  middleware[BYPASS] = (skip) => {
    bypass.push(skip);
  };
  Object.defineProperty(middleware, 'redis', { value: client, enumerable: true });
  Object.defineProperty(middleware, 'sessions', { value: userSessions(store, opts), enumerable: true });
  middleware.close = close;
  return middleware;
}
