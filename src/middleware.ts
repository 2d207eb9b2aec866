/**
 * The Koa glue. Per request: read the cookie and tell the machine; send the one load when the
 * machine is in `loading`; hand the handler its session; after `await next()`, tell the machine
 * what the request did, and carry out the final state's output: one Redis command and one cookie
 * action. Which command and which cookie is decided by the machine alone (SPEC §4).
 */
import { Redis, type RedisOptions } from 'ioredis';
import type { Context, Middleware, Next } from 'koa';
import { CookieCodec, toKeyRing, type KeyRing } from './cookie.js';
import {
  DeserializationError,
  InvalidSessionError,
  NoSessionCookieError,
  NotInBackendError,
  PayloadLegacyError,
  PayloadTimeoutError,
  RawDeserializationError,
  SessionSizeError,
  SessionStoreError,
} from './errors.js';
import { MachineRun, sessionTable, type TraceStep } from './fsm.js';
import { resolveOptions, type ResolvedOptions, type SessionOptions } from './options.js';
import type { CookieAction, SessionInput } from './policy.js';
import { SessionState } from './session.js';
import { SessionStore, type RedisClient } from './store/commands.js';

/** The middleware, with what it owns. */
/** What one request did, for `debug`, the `X-Session-Trace` header and `sessionChart()`. */
export interface SessionTrace {
  readonly method: string;
  readonly path: string;
  /** Every transition taken, in order. */
  readonly steps: readonly TraceStep[];
  /** The final state (or where the machine stopped, when the request failed before the end). */
  readonly final: string;
  /** Redis commands the request sent: the load, then the final state's command. */
  readonly redis: readonly string[];
  readonly cookie: CookieAction;
  /** Milliseconds spent in the middleware, the handler included. */
  readonly ms: number;
  /** All of the above on one line. */
  readonly line: string;
}

export interface SessionMiddleware extends Middleware {
  /** Close the Redis client if this middleware created it (from a URL or options); a client passed
   *  in is left open for its owner. */
  close(): Promise<void>;
  /** The Redis client in use. */
  readonly redis: RedisClient;
  /** Call `listener` with the trace of every request from now on (turns tracing on); returns a
   *  function that stops it. `sessionChart()` uses this. */
  observe(listener: (trace: SessionTrace) => void): () => void;
}

const LOADING = sessionTable.leaves.findIndex((leaf) => leaf.path === 'loading');

function isClient(value: unknown): value is RedisClient {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as Redis).defineCommand === 'function' &&
    typeof (value as Redis).sendCommand === 'function'
  );
}

/** The client: the application's own, or one we create and own. Ours fail fast while Redis is
 *  away (one retry, then queued commands are rejected rather than replayed late) and never let an
 *  `error` event escape: the requests report what failed. */
function connect(option: SessionOptions['redis'], commandTimeout: number): { client: RedisClient; owned: boolean } {
  if (isClient(option)) return { client: option, owned: false };
  const defaults: RedisOptions = { maxRetriesPerRequest: 1, commandTimeout };
  const client =
    option === undefined || typeof option === 'string'
      ? new Redis(option ?? process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', defaults)
      : new Redis({ ...defaults, ...option });
  client.on('error', () => undefined);
  return { client, owned: true };
}

/** Copy cookie headers onto an error, so Koa's `ctx.onerror` (which removes every header before
 *  answering) still sends them: this is what `cookieOnException` promises. */
function carryHeaders(ctx: Context, err: unknown, cookieName: string): void {
  if (err === null || typeof err !== 'object') return;
  const header = ctx.response.get('Set-Cookie') as string | string[] | undefined;
  if (!header) return;
  const ours = (Array.isArray(header) ? header : [header]).filter((h) => h.startsWith(`${cookieName}=`));
  if (ours.length === 0) return;
  const e = err as { headers?: Record<string, unknown> };
  e.headers = { ...e.headers, 'Set-Cookie': ours, ...(ours.some((h) => !h.startsWith(`${cookieName}=;`)) ? { Vary: 'Cookie' } : {}) };
}

/**
 * Create the session middleware. Options are validated now: a mistake throws a TypeError that names
 * the option. Pass the app to check `app.keys` now too; otherwise a missing key ring fails the first
 * request with the same message.
 */
export function koaRedisSession(options: SessionOptions = {}, app?: { keys?: unknown; context?: object }): SessionMiddleware {
  const opts: ResolvedOptions = resolveOptions(options);
  let keys: KeyRing | undefined = opts.keys;
  if (!keys && app) keys = resolveAppKeys(app);
  const { client, owned } = connect(opts.redis, opts.commandTimeout);
  const store = new SessionStore(client, opts);
  const input: SessionInput = {
    invalidateEmptySession: opts.invalidateEmptySession,
    cookieOnException: opts.cookieOnException,
    deserializedFailsNew: opts.deserializedFailsNew,
    continueOnRedisError: opts.onRedisError === 'continue',
  };
  const settings = {
    serializer: opts.serializer,
    detectChanges: opts.detectChanges,
    timeout: opts.timeout,
    genId: opts.genId,
    idPattern: opts.idPattern,
  };
  const { cookie } = opts;
  const cookieName = cookie.name;
  const stateKey = Symbol(`koa-session-machine:${opts.contextKey}`);
  const prototypes = new WeakSet<object>();
  let codec: CookieCodec | undefined = keys ? new CookieCodec(cookieName, keys, opts.idPattern) : undefined;

  /** Define `ctx[contextKey]` once on the app's context prototype: a getter that makes the
   *  session's Proxy on first use, and a setter for koa-session's idioms (`= null`, `= {...}`). */
  const install = (ctx: Context): void => {
    const proto = Object.getPrototypeOf(ctx) as object;
    if (prototypes.has(proto)) return;
    prototypes.add(proto);
    Object.defineProperty(proto, opts.contextKey, {
      configurable: true,
      enumerable: false,
      get(this: Record<symbol, SessionState | undefined>) {
        return this[stateKey]?.proxy;
      },
      set(this: Record<symbol, SessionState | undefined>, value: unknown) {
        const state = this[stateKey];
        if (!state) throw new TypeError(`ctx.${opts.contextKey} can only be set after the session middleware ran`);
        if (value === null || value === undefined) state.invalidate();
        else if (typeof value === 'object' && !Array.isArray(value)) state.replace(value as Record<string, unknown>);
        else throw new TypeError(`ctx.${opts.contextKey} can be set to null (invalidate) or a plain object (replace the data)`);
      },
    });
  };

  const report = (ctx: Context, err: InvalidSessionError): void => {
    opts.onInvalid?.(ctx, err);
  };

  // Cookie attributes are made once, for a plain-HTTP and an HTTPS request (`secure` follows the
  // request unless the option fixes it); `cookies` copies them into each Cookie it makes.
  const setAttributes = [false, true].map((secure) => Object.freeze({ ...cookie, secure: cookie.secure ?? secure, signed: false, overwrite: true }));
  const clearAttributes = [false, true].map((secure) =>
    Object.freeze({
      path: cookie.path,
      domain: cookie.domain,
      secure: cookie.secure ?? secure,
      httpOnly: cookie.httpOnly,
      sameSite: cookie.sameSite,
      partitioned: cookie.partitioned,
      signed: false,
      overwrite: true,
    }),
  );
  const secureIndex = (ctx: Context): number => ((cookie.secure ?? ctx.secure) ? 1 : 0);

  const setCookie = (ctx: Context, id: string, maxAge: number | null | undefined): void => {
    let attributes = setAttributes[secureIndex(ctx)] as (typeof setAttributes)[number];
    if (maxAge !== undefined) {
      // adjustCookieMaxAge(): this response's lifetime replaces the options' (null: browser session).
      const { expires: _expires, maxAge: _maxAge, ...rest } = attributes;
      attributes = maxAge === null ? rest : { ...rest, maxAge };
    }
    ctx.cookies.set(cookieName, (codec as CookieCodec).encode(id), attributes);
    ctx.vary('Cookie');
  };

  const clearCookie = (ctx: Context): void => {
    ctx.cookies.set(cookieName, '', clearAttributes[secureIndex(ctx)]);
  };

  const observers = new Set<(trace: SessionTrace) => void>();
  const debugLog = opts.debug === true || (opts.debug === undefined && debugFromEnv()) ? (t: SessionTrace) => console.error(`koa-session-machine ${t.line}`) : undefined;
  const debugFn = typeof opts.debug === 'function' ? opts.debug : undefined;
  const tracing = () => debugLog !== undefined || debugFn !== undefined || opts.traceHeader || observers.size > 0;

  const finishTrace = (ctx: Context, run: MachineRun, start: number): void => {
    const steps = run.trace ?? [];
    const output = run.output;
    const redis: string[] = [];
    if (steps.some((s) => s.event === 'cookie.verified')) redis.push('load');
    if (output && output.redis !== 'none') redis.push(output.redis);
    const cookie = output?.cookie ?? 'none';
    const ms = performance.now() - start;
    const path = steps.length ? `${steps[0]?.from} ${steps.map((s) => `-${s.event}-> ${s.to}`).join(' ')}` : run.value;
    const line = `${ctx.method} ${ctx.path} ${path} | redis: ${redis.join(', ') || 'none'} | cookie: ${cookie} | ${ms.toFixed(2)} ms`;
    const trace: SessionTrace = { method: ctx.method, path: ctx.path, steps, final: run.value, redis, cookie, ms, line };
    if (opts.traceHeader) ctx.set('X-Session-Trace', line);
    debugLog?.(trace);
    debugFn?.(trace, ctx);
    for (const listener of observers) listener(trace);
  };

  const middleware = async function koaRedisSession(ctx: Context, next: Next): Promise<void> {
    const run = new MachineRun(input);
    if (!tracing()) return handle(ctx, next, run);
    run.trace = [];
    const start = performance.now();
    try {
      await handle(ctx, next, run);
    } finally {
      finishTrace(ctx, run, start);
    }
  } as SessionMiddleware;

  const handle = async (ctx: Context, next: Next, run: MachineRun): Promise<void> => {
    if (!codec) {
      keys = resolveAppKeys(ctx.app);
      codec = new CookieCodec(cookieName, keys, opts.idPattern);
    }
    install(ctx);
    const now = Math.floor(Date.now() / 1000);

    // 1. The cookie.
    const parsed = codec.decode(ctx.cookies.get(cookieName));
    let id: string | null = null;
    if (parsed.kind === 'missing') {
      run.send({ type: 'cookie.missing' });
    } else if (parsed.kind === 'invalid') {
      run.send({ type: 'cookie.invalid' });
      report(ctx, new NoSessionCookieError(`session cookie rejected: bad ${parsed.reason}`, parsed.reason));
    } else {
      id = parsed.id;
      run.send({ type: 'cookie.verified', keyIndex: parsed.keyIndex });
    }

    // 2. The load, when the machine asks for it.
    let state: SessionState | null = null;
    if (run.state === LOADING) {
      const storedId = id as string;
      let result;
      try {
        result = await store.load(storedId, now);
      } catch (err) {
        if (err instanceof SessionStoreError) {
          run.send({ type: 'load.failed' });
          if (run.done) return ctx.throw(503, err); // onRedisError 'throw'
          report(ctx, err);
        } else if (err instanceof RawDeserializationError) {
          run.send({ type: 'load.undecodable' });
          if (run.done) throw err; // deserializedFailsNew is off: the request fails, naming the key
          report(ctx, new DeserializationError(err.message, storedId, err.key, { cause: err.cause }));
        } else {
          throw err;
        }
        result = null;
      }
      if (result?.status === 'found') {
        run.send({ type: 'load.found', refreshed: result.refreshed });
        state = new SessionState(settings, run, now, storedId, result.payload);
      } else if (result) {
        run.send({ type: 'load.stale' });
        report(
          ctx,
          result.status === 'expired'
            ? new PayloadTimeoutError('session payload expired', storedId)
            : result.status === 'legacy'
              ? new PayloadLegacyError('session payload of an older or foreign format', storedId)
              : new NotInBackendError('session not found in Redis', storedId),
        );
      }
    }
    state ??= new SessionState(settings, run, now, null, null);
    (ctx as unknown as Record<symbol, SessionState>)[stateKey] = state;

    // 3. The handler.
    let error: unknown;
    let errored = false;
    try {
      await next();
    } catch (err) {
      error = err;
      errored = true;
    }

    // 4. The end: one event, one final state, one command, one cookie action.
    try {
      const changes = state.changes();
      run.send({
        type: 'request.ended',
        hasData: state.hasData(),
        changed: changes.set.length + changes.del.length > 0,
        cookieAllowed: opts.allowCookies ? opts.allowCookies(ctx) !== false : true,
        errored,
      });
      const output = run.output;
      if (output === undefined) throw new Error(`session machine: no final state after request.ended (in ${run.value})`);
      if (output.redis === 'create' || output.redis === 'patch' || output.redis === 'rotate') {
        const size = state.storedSize();
        if (size > opts.maxSize) throw new SessionSizeError(size, opts.maxSize);
      }
      if (output.cookie === 'set' && (cookie.secure ?? ctx.secure) && !ctx.cookies.secure) {
        // Koa's cookies refuse a Secure cookie on plain HTTP; finding out after the write would
        // leave a stored session that no cookie names.
        throw new TypeError('koaRedisSession: option "cookie.secure" is set but this request is not HTTPS; behind a TLS proxy set app.proxy = true');
      }
      let result;
      try {
        result = await store.write(output.redis, state, now);
      } catch (err) {
        if (!(err instanceof SessionStoreError)) throw err;
        // Not stored, and never reported as saved: no cookie for a session that may not exist. A
        // cookie being cleared is still cleared (a logout stays a logout for this browser), also on
        // the 503, whose headers Koa would otherwise drop.
        if (output.cookie === 'clear') clearCookie(ctx);
        if (opts.onRedisError === 'throw') {
          carryHeaders(ctx, err, cookieName);
          return ctx.throw(503, err);
        }
        report(ctx, err);
        result = null;
      }
      if (result === null) {
        // reported above
      } else if (!result.stored) {
        // The session was deleted or moved meanwhile (logout, or login under a new id, in another
        // request): it stays deleted, and this response leaves the cookie alone, since the other
        // response may have set a new one; a stale cookie is cleared by its next load.
        report(ctx, new NotInBackendError('session deleted while the request ran; its changes were not stored', state.storedId));
      } else if (output.cookie === 'set' && result.id !== null) {
        setCookie(ctx, result.id, state.cookieMaxAge);
      } else if (output.cookie === 'clear') {
        clearCookie(ctx);
      }
    } catch (err) {
      if (!errored) throw err;
      // The handler's error is the one the client should see.
    }
    if (errored) {
      carryHeaders(ctx, error, cookieName);
      throw error;
    }
  };

  middleware.observe = (listener) => {
    observers.add(listener);
    return () => observers.delete(listener);
  };

  Object.defineProperty(middleware, 'redis', { value: client, enumerable: true });
  middleware.close = async () => {
    if (!owned || client.status === 'end') return;
    const ended = new Promise<void>((resolve) => client.once('end', () => resolve()));
    // A polite QUIT when connected, bounded like any command; then the socket goes regardless, so
    // closing never hangs on a Redis that is away.
    if (client.status === 'ready') await Promise.race([client.quit().catch(() => undefined), delay(opts.commandTimeout)]);
    client.disconnect();
    await Promise.race([ended, delay(opts.commandTimeout)]);
  };
  return middleware;
}

const delay = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms).unref());

/** `DEBUG=koa-session-machine` (or `*`, or a list holding either), as the `debug` module reads it. */
function debugFromEnv(): boolean {
  return (process.env.DEBUG ?? '').split(/[\s,]+/).some((p) => p === '*' || p === 'koa-session-machine' || p === 'koa-session-machine*');
}

/** The key ring from `app.keys`, when the option `keys` is not given. */
function resolveAppKeys(app: { keys?: unknown }): KeyRing {
  if (app.keys === undefined || app.keys === null) {
    throw new TypeError('koaRedisSession: no signing keys; set option "keys" or app.keys (newest key first)');
  }
  return toKeyRing(app.keys, 'koaRedisSession: option "keys" (from app.keys)');
}
