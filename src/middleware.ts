/**
 * The Koa glue: the middleware's wiring, and one request in four phases: read the cookie, load,
 * run the handler, finish. Each phase tells the machine what happened and carries out what it
 * decided; which command, which cookie and which status is decided by the machine alone
 * (docs/design.md, "The machine").
 */
import type { Context, Middleware, Next } from 'koa';
import { connect } from './client.js';
import { CookieCodec, toKeyRing, type KeyRing } from './cookie.js';
import {
  DeserializationError,
  InvalidSessionError,
  NoSessionCookieError,
  NotInBackendError,
  PayloadLegacyError,
  PayloadTimeoutError,
  RawDeserializationError,
  SessionNotStoredError,
  SessionSizeError,
  SessionStoreError,
} from './errors.js';
import { MachineRun, sessionTable } from './fsm.js';
import { resolveOptions, type ResolvedOptions, type SessionOptions } from './options.js';
import type { Failure, SessionInput, SessionOutput } from './policy.js';
import { ResponseCookie } from './response-cookie.js';
import { SessionState, type SessionSettings } from './session.js';
import { type LoadResult, SessionStore, type RedisClient } from './store/commands.js';
import { Tracer, newNotes, statusOf, type SessionTrace, type TraceNotes } from './trace.js';

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

/** A user's sessions: what the `userKey` option indexes. `userId` is the value sessions hold under
 *  `userKey` (compared as the serializer encodes it: `42` and `'42'` are two users). */
export interface UserSessions {
  /** The user's live sessions (one command). */
  list(userId: unknown): Promise<SessionListing[]>;
  /** End the user's session named `handle`: its next request gets a fresh session, and a request of
   *  it in flight cannot bring it back. Resolves to the number ended (0 or 1). */
  revoke(userId: unknown, handle: string): Promise<number>;
  /** End all the user's sessions, but `except` (e.g. `ctx.session.handle`, "log out everywhere
   *  else"). Resolves to the number ended. */
  revokeAll(userId: unknown, options?: { except?: string | null }): Promise<number>;
}

/** One session of a user, as `sessions.list()` gives it. Times are epoch seconds. */
export interface SessionListing {
  /** The session's opaque, stable name (`ctx.session.handle`); never its id. */
  readonly handle: string;
  readonly created: number;
  /** When the session's expiry last moved (its last refresh or write); null for a session that
   *  never expires. */
  readonly lastActive: number | null;
  /** When it expires unless used again; null for never. */
  readonly expires: number | null;
  /** What `sessionInfo` described at login, or null. */
  readonly info: Record<string, unknown> | null;
}

/** The state the machine sends the load in (tagged so in the chart). */
const LOADING = sessionTable.leaves.findIndex((leaf) => leaf.tags.has('sends:load'));

/** How the handler ended. */
interface HandlerOutcome {
  readonly errored: boolean;
  readonly error?: unknown;
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
  const stateKey = Symbol(`koa-session-machine:${opts.contextKey}`);
  const prototypes = new WeakSet<object>();
  const fixed: CookieCodec | undefined = opts.keys
    ? new CookieCodec(cookie.name, opts.keys, opts.idPattern)
    : undefined;
  /** Per app (one middleware may serve several), the codec of its `app.keys` and what it was made
   *  from: read on every request, as Koa's own `ctx.cookies` does, and rebuilt only when it changes. */
  const byApp = new WeakMap<object, { value: unknown; items: readonly unknown[]; codec: CookieCodec }>();

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
        else
          throw new TypeError(
            `ctx.${opts.contextKey} can be set to null (invalidate) or a plain object (replace the data)`,
          );
      },
    });
  };

  const report = (ctx: Context, err: InvalidSessionError): void => {
    opts.onInvalid?.(ctx, err);
  };

  /** Carry out a final state's failure: fail the request with the status the machine chose, or
   *  report it (always when the handler already failed: its error is the one the client sees). */
  const settle = (ctx: Context, output: SessionOutput, err: unknown, handlerFailed: boolean): void => {
    if (output.status === 0 || handlerFailed) {
      if (err instanceof InvalidSessionError) report(ctx, err);
      return;
    }
    if (output.status === 503) {
      cookie.carry(ctx, err);
      ctx.throw(503, err as Error);
    }
    throw err;
  };

  // -- 1. The cookie ----------------------------------------------------------------------------

  /** The codec for this request: the `keys` option's, or its app's `app.keys` as they are now. */
  const codecFor = (app: { keys?: unknown }): CookieCodec => {
    if (fixed !== undefined) return fixed;
    const value = app.keys;
    let made = byApp.get(app);
    if (made === undefined || !sameKeys(made, value)) {
      made = {
        value,
        items: Array.isArray(value) ? [...(value as unknown[])] : [],
        codec: new CookieCodec(cookie.name, resolveAppKeys(app), opts.idPattern),
      };
      byApp.set(app, made);
    }
    return made.codec;
  };

  const readCookie = (ctx: Context, run: MachineRun, codec: CookieCodec): string | null => {
    const parsed = codec.decode(ctx.cookies.get(cookie.name));
    if (parsed.kind === 'missing') {
      run.send({ type: 'cookie.missing' });
      return null;
    }
    if (parsed.kind === 'invalid') {
      run.send({ type: 'cookie.invalid' });
      report(ctx, new NoSessionCookieError(`session cookie rejected: bad ${parsed.reason}`, parsed.reason));
      return null;
    }
    run.send({ type: 'cookie.verified', keyIndex: parsed.keyIndex });
    return parsed.id;
  };

  // -- 2. The load, when the machine asks for it --------------------------------------------------

  const load = async (
    ctx: Context,
    run: MachineRun,
    id: string,
    now: number,
    codec: CookieCodec,
  ): Promise<SessionState | null> => {
    let result: LoadResult;
    try {
      result = await store.load(id, now);
    } catch (err) {
      if (err instanceof SessionStoreError) {
        run.send({ type: 'load.failed' });
        if (run.output)
          settle(ctx, run.output, err, false); // onRedisError 'throw': 503
        else report(ctx, err); // 'continue': an offline session
      } else if (err instanceof RawDeserializationError) {
        run.send({ type: 'load.undecodable' });
        if (run.output)
          settle(ctx, run.output, err, false); // deserializedFailsNew is off: fail, naming the key
        else report(ctx, new DeserializationError(err.message, id, err.key, { cause: err.cause }));
      } else {
        throw err;
      }
      return null;
    }
    if (result.status === 'found') {
      run.send({ type: 'load.found', refreshed: result.refreshed });
      if (result.refreshRefused) {
        report(
          ctx,
          new SessionStoreError(
            'session store refused the expiry refresh (maxmemory with noeviction?); the session was read without it',
            id,
            'load',
          ),
        );
      }
      return new SessionState(settings, run, now, id, result.payload, codec.keys, ctx);
    }
    run.send({ type: 'load.stale' });
    report(
      ctx,
      result.status === 'expired'
        ? new PayloadTimeoutError('session payload expired', id)
        : result.status === 'legacy'
          ? new PayloadLegacyError('session payload of an older or foreign format', id)
          : new NotInBackendError('session not found in Redis', id),
    );
    return null;
  };

  // -- 3. The handler ---------------------------------------------------------------------------

  const runHandler = async (next: Next): Promise<HandlerOutcome> => {
    try {
      await next();
      return { errored: false };
    } catch (error) {
      return { errored: true, error };
    }
  };

  // -- 4. The end: what the request did, the one write, its answer, the cookie and the status ----

  /** Why no session cookie can reach the browser on this response, or null when one can. */
  const unreachable = (ctx: Context, outcome: HandlerOutcome): string | null => {
    if (ctx.respond === false) return 'ctx.respond is false: the application writes the response itself';
    if (ctx.headerSent) return 'the response headers were already sent';
    const { error } = outcome;
    if (outcome.errored && (typeof error !== 'object' || error === null || !Object.isExtensible(error))) {
      // Koa's onerror drops every header and sends the error's own `headers`: a thrown string (or a
      // frozen object) cannot carry ours.
      return 'the handler threw a value that cannot carry headers (not an extensible object)';
    }
    return null;
  };

  /**
   * A new id's cookie on an error response reaches the browser only if the error that Koa finally
   * handles still carries it: an upstream middleware that replaces the error drops it. Once the
   * response is sent, a session whose cookie did not go out is ended, so no key is left that no
   * cookie names (one command more, on this rare path only).
   */
  const watchNewCookie = (ctx: Context, id: string, codec: CookieCodec): void => {
    const value = `${cookie.name}=${codec.encode(id)};`;
    ctx.res.once('finish', () => {
      const sent = ctx.res.getHeader('set-cookie');
      if ((Array.isArray(sent) ? sent : [String(sent ?? '')]).some((h) => h.startsWith(value))) return;
      store.end(id).then(
        () =>
          report(
            ctx,
            new SessionNotStoredError(
              'session ended again: its cookie did not reach the browser (an upstream middleware replaced the error and its headers)',
              id,
            ),
          ),
        (err: unknown) =>
          report(ctx, err instanceof InvalidSessionError ? err : new SessionStoreError(String(err), id, 'delete')),
      );
    });
  };

  const failureError = (
    failure: Failure,
    run: MachineRun,
    state: SessionState,
    errored: boolean,
    storeError: unknown,
    blocked: string | null,
  ): unknown => {
    switch (failure) {
      case 'gone':
        return new NotInBackendError(
          'session ended or moved by another request while this one ran; its changes were not stored',
          state.storedId,
        );
      case 'tooLarge':
        return new SessionSizeError(run.context.plan === 'none' ? state.storedSize() : null, opts.maxSize);
      case 'cookieRefused': {
        const why =
          blocked ??
          (errored && !opts.cookieOnException
            ? 'an error response, and cookieOnException is off'
            : 'allowCookies refused cookies');
        const what = state.isNew
          ? 'session not stored'
          : 'regenerate() not stored: nothing was written under the old id either';
        return new SessionNotStoredError(
          `${what}: the cookie it needs cannot be sent on this response (${why})`,
          state.storedId,
        );
      }
      case 'insecureCookie':
        return new TypeError(
          'koaRedisSession: option "cookie.secure" is set but this request is not HTTPS; behind a TLS proxy set app.proxy = true',
        );
      default:
        return storeError;
    }
  };

  const finish = async (
    ctx: Context,
    run: MachineRun,
    state: SessionState,
    outcome: HandlerOutcome,
    now: number,
    notes: TraceNotes | null,
    codec: CookieCodec,
  ): Promise<void> => {
    state.followUserAtEnd();
    const hasData = state.hasData();
    const blocked = unreachable(ctx, outcome);
    run.send({
      type: 'request.ended',
      hasData,
      changed: state.hasChanges(),
      persistentCookie: state.persistentCookie(),
      cookieAllowed: blocked === null && (opts.allowCookies ? opts.allowCookies(ctx) !== false : true),
      errored: outcome.errored,
      // What create and replace store whole is measured here; a patch's total, by its script.
      fits: !state.isNew || !hasData || state.storedSize() <= opts.maxSize,
      secureOk: cookie.secureOk(ctx),
    });
    let id = state.storedId;
    let storeError: SessionStoreError | undefined;
    if (!run.done) {
      // A write state: send the machine's command, and give it Redis' answer.
      try {
        const result = await store.write(run.context.plan, state, now);
        id = result.id;
        if (notes) notes.write = result.answer;
        run.send({ type: `write.${result.answer}` });
      } catch (err) {
        if (!(err instanceof SessionStoreError)) throw err;
        storeError = err;
        if (notes) notes.write = 'failed';
        run.send({ type: 'write.failed' });
      }
    }
    if (notes) notes.to = id;
    const output = run.output;
    if (output === undefined) throw new Error(`session machine: no final state after the write (in ${run.value})`);
    if (output.cookie === 'set') {
      cookie.set(
        ctx,
        codec,
        id as string,
        state.cookieLifetime,
        opts.absoluteTimeout === null ? null : state.created + opts.absoluteTimeout,
      );
      if (outcome.errored && id !== state.storedId) watchNewCookie(ctx, id as string, codec);
    } else if (output.cookie === 'clear') {
      cookie.clear(ctx);
    }
    // Said only when a cookie was needed and could not go (not for every streamed response).
    if (notes && output.failure === 'cookieRefused') notes.blocked = blocked;
    if (output.failure !== null)
      settle(
        ctx,
        output,
        failureError(output.failure, run, state, outcome.errored, storeError, blocked),
        outcome.errored,
      );
  };

  /** One request. */
  const handle = async (ctx: Context, next: Next, run: MachineRun, notes: TraceNotes | null): Promise<void> => {
    const now = Math.floor(Date.now() / 1000);
    const codec = codecFor(ctx.app);
    if (notes) notes.keys = codec.keys;
    const id = readCookie(ctx, run, codec);
    if (notes) notes.from = id;
    install(ctx);
    const loaded = run.state === LOADING ? await load(ctx, run, id as string, now, codec) : null;
    const state = loaded ?? new SessionState(settings, run, now, null, null, codec.keys, ctx);
    (ctx as unknown as Record<symbol, SessionState>)[stateKey] = state;
    const outcome = await runHandler(next);
    try {
      await finish(ctx, run, state, outcome, now, notes, codec);
    } catch (err) {
      if (!outcome.errored) throw err;
      // The handler's error is the one the client should see.
    }
    if (outcome.errored) {
      cookie.carry(ctx, outcome.error);
      throw outcome.error;
    }
  };

  const middleware = async function koaRedisSession(ctx: Context, next: Next): Promise<void> {
    if (bypass.length > 0 && bypass.some((skip) => skip(ctx))) return next();
    const run = new MachineRun(input);
    if (!tracer.on) return handle(ctx, next, run, null);
    run.trace = [];
    const notes = newNotes();
    const start = performance.now();
    let status = 500;
    let failed: unknown = null;
    try {
      await handle(ctx, next, run, notes);
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
  } as SessionMiddleware;

  middleware.observe = (listener) => tracer.observe(listener);
  middleware[BYPASS] = (skip) => {
    bypass.push(skip);
  };
  Object.defineProperty(middleware, 'redis', { value: client, enumerable: true });
  Object.defineProperty(middleware, 'sessions', { value: userSessions(store, opts), enumerable: true });
  middleware.close = close;
  return middleware;
}

/** Whether `app.keys` still holds what the ring was made from: the same value, and for an array
 *  (which an app may change in place, e.g. `app.keys.unshift(newKey)`) the same items. */
function sameKeys(made: { value: unknown; items: readonly unknown[] }, value: unknown): boolean {
  if (made.value !== value) return false;
  if (!Array.isArray(value)) return true;
  if (value.length !== made.items.length) return false;
  for (let i = 0; i < value.length; i++) if (value[i] !== made.items[i]) return false;
  return true;
}

/** The key ring from `app.keys`, when the option `keys` is not given. */
function resolveAppKeys(app: { keys?: unknown }): KeyRing {
  if (app.keys === undefined || app.keys === null) {
    throw new TypeError('koaRedisSession: no signing keys; set option "keys" or app.keys (newest key first)');
  }
  return toKeyRing(app.keys, 'koaRedisSession: option "keys" (from app.keys)');
}

/** `middleware.sessions`: the user index's commands, each one script on the user's index. */
function userSessions(store: SessionStore, opts: ResolvedOptions): UserSessions {
  const indexOf = (userId: unknown, what: string): string => {
    if (opts.userKey === null)
      throw new TypeError(`middleware.sessions.${what}() needs the option "userKey" (the data key naming the user)`);
    if (userId === undefined || userId === null)
      throw new TypeError(
        `middleware.sessions.${what}(userId): userId must be the value sessions hold under "${opts.userKey}"`,
      );
    return store.userIndex(opts.serializer.stringify(userId, `middleware.sessions.${what}(userId)`));
  };
  const now = (): number => Math.floor(Date.now() / 1000);
  return {
    async list(userId) {
      const index = indexOf(userId, 'list');
      return (await store.listUser(index, now())).map((s) => ({
        handle: s.handle,
        created: s.created,
        lastActive: s.timeout === null || s.expires === null ? null : Math.max(s.created, s.expires - s.timeout),
        expires: s.expires,
        info: s.info === '' ? null : (opts.serializer.parse(s.info) as Record<string, unknown>),
      }));
    },
    async revoke(userId, handle) {
      const index = indexOf(userId, 'revoke');
      if (typeof handle !== 'string' || handle === '')
        throw new TypeError("middleware.sessions.revoke(userId, handle): handle must be a session's handle");
      return store.revokeUser(index, now(), 'revoke', handle);
    },
    async revokeAll(userId, options = {}) {
      const index = indexOf(userId, 'revokeAll');
      const except = options.except ?? '';
      if (typeof except !== 'string')
        throw new TypeError('middleware.sessions.revokeAll(userId, { except }): except must be a handle or null');
      return store.revokeUser(index, now(), 'revokeAll', except);
    },
  };
}
