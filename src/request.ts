/**
 * One request, in four phases: read the cookie, load, run the handler, finish. Each phase tells the
 * machine what happened and carries out what it decided; which command, which cookie and which status
 * is decided by the machine alone (docs/design.md, "The machine"). `run()` is the whole path.
 */
import type { Context, Next } from 'koa';
import type { AppKeys } from './app-keys.js';
import { sessionProperty } from './context-property.js';
import type { CookieCodec } from './cookie.js';
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
import { type MachineRun, sessionTable } from './fsm.js';
import type { ResolvedOptions } from './options.js';
import type { Failure, SessionOutput } from './policy.js';
import type { ResponseCookie } from './response-cookie.js';
import { SessionState, type SessionSettings } from './session.js';
import type { LoadResult, SessionStore } from './store/commands.js';
import type { TraceNotes } from './trace.js';

/** The state the machine sends the load in (tagged so in the chart). */
const LOADING = sessionTable.leaves.findIndex((leaf) => leaf.tags.has('sends:load'));

/** How the handler ended. */
interface HandlerOutcome {
  readonly errored: boolean;
  readonly error?: unknown;
}

/** A handler that returned. */
const HANDLER_DONE: HandlerOutcome = { errored: false };

/** What every request of one middleware shares. */
export interface RequestDeps {
  readonly opts: ResolvedOptions;
  readonly store: SessionStore;
  readonly cookie: ResponseCookie;
  readonly keys: AppKeys;
  readonly settings: SessionSettings;
}

export class RequestPath {
  readonly #opts: ResolvedOptions;
  readonly #store: SessionStore;
  readonly #cookie: ResponseCookie;
  readonly #keys: AppKeys;
  readonly #settings: SessionSettings;
  /** Where a request's state lives on its context (read by `ctx.session`'s getter). */
  readonly #stateKey: symbol;
  readonly #install: (ctx: Context) => void;

  constructor(deps: RequestDeps) {
    this.#opts = deps.opts;
    this.#store = deps.store;
    this.#cookie = deps.cookie;
    this.#keys = deps.keys;
    this.#settings = deps.settings;
    this.#stateKey = Symbol(`koa-session-machine:${deps.opts.contextKey}`);
    this.#install = sessionProperty(deps.opts.contextKey, this.#stateKey);
  }

  /** One request. */
  async run(ctx: Context, next: Next, run: MachineRun, notes: TraceNotes | null): Promise<void> {
    const now = Math.floor(Date.now() / 1000);
    const codec = this.#keys.codecFor(ctx.app);
    if (notes) notes.keys = codec.keys;
    const id = this.#readCookie(ctx, run, codec);
    if (notes) notes.from = id;
    this.#install(ctx);
    const loaded = run.state === LOADING ? await this.#load(ctx, run, id as string, now, codec) : null;
    const state = loaded ?? new SessionState(this.#settings, run, now, null, null, codec.keys, ctx);
    (ctx as unknown as Record<symbol, SessionState>)[this.#stateKey] = state;
    // The handler, awaited here rather than in an async function of its own (a promise and a turn
    // of the microtask queue less per request).
    let outcome: HandlerOutcome = HANDLER_DONE;
    try {
      await next();
    } catch (error) {
      outcome = { errored: true, error };
    }
    try {
      await this.#finish(ctx, run, state, outcome, now, notes, codec);
    } catch (err) {
      if (!outcome.errored) throw err;
      // The handler's error is the one the client should see.
    }
    if (outcome.errored) {
      this.#cookie.carry(ctx, outcome.error);
      throw outcome.error;
    }
  }

  #report(ctx: Context, err: InvalidSessionError): void {
    this.#opts.onInvalid?.(ctx, err);
  }

  /** Carry out a final state's failure: fail the request with the status the machine chose, or
   *  report it (always when the handler already failed: its error is the one the client sees). */
  #settle(ctx: Context, output: SessionOutput, err: unknown, handlerFailed: boolean): void {
    if (output.status === 0 || handlerFailed) {
      if (err instanceof InvalidSessionError) this.#report(ctx, err);
      return;
    }
    if (output.status === 503) {
      this.#cookie.carry(ctx, err);
      ctx.throw(503, err as Error);
    }
    throw err;
  }

  // -- 1. The cookie ----------------------------------------------------------------------------

  #readCookie(ctx: Context, run: MachineRun, codec: CookieCodec): string | null {
    const parsed = codec.decode(ctx.cookies.get(this.#cookie.name));
    if (parsed.kind === 'missing') {
      run.send({ type: 'cookie.missing' });
      return null;
    }
    if (parsed.kind === 'invalid') {
      run.send({ type: 'cookie.invalid' });
      this.#report(ctx, new NoSessionCookieError(`session cookie rejected: bad ${parsed.reason}`, parsed.reason));
      return null;
    }
    run.send({ type: 'cookie.verified', keyIndex: parsed.keyIndex });
    return parsed.id;
  }

  // -- 2. The load, when the machine asks for it --------------------------------------------------

  async #load(
    ctx: Context,
    run: MachineRun,
    id: string,
    now: number,
    codec: CookieCodec,
  ): Promise<SessionState | null> {
    let result: LoadResult;
    try {
      result = await this.#store.load(id, now);
    } catch (err) {
      if (err instanceof SessionStoreError) {
        run.send({ type: 'load.failed' });
        if (run.output)
          this.#settle(ctx, run.output, err, false); // onRedisError 'throw': 503
        else this.#report(ctx, err); // 'continue': an offline session
      } else if (err instanceof RawDeserializationError) {
        run.send({ type: 'load.undecodable' });
        if (run.output)
          this.#settle(ctx, run.output, err, false); // deserializedFailsNew is off: fail, naming the key
        else this.#report(ctx, new DeserializationError(err.message, id, err.key, { cause: err.cause }));
      } else {
        throw err;
      }
      return null;
    }
    if (result.status === 'found') {
      run.send({ type: 'load.found', refreshed: result.refreshed });
      if (result.refreshRefused) {
        this.#report(
          ctx,
          new SessionStoreError(
            'session store refused the expiry refresh (maxmemory with noeviction?); the session was read without it',
            id,
            'load',
          ),
        );
      }
      return new SessionState(this.#settings, run, now, id, result.payload, codec.keys, ctx);
    }
    run.send({ type: 'load.stale' });
    this.#report(
      ctx,
      result.status === 'expired'
        ? new PayloadTimeoutError('session payload expired', id)
        : result.status === 'legacy'
          ? new PayloadLegacyError('session payload of an older or foreign format', id)
          : new NotInBackendError('session not found in Redis', id),
    );
    return null;
  }

  // -- 3. The handler: awaited in run() ----------------------------------------------------------

  // -- 4. The end: what the request did, the one write, its answer, the cookie and the status ----

  /** Why no session cookie can reach the browser on this response, or null when one can. */
  #unreachable(ctx: Context, outcome: HandlerOutcome): string | null {
    if (ctx.respond === false) return 'ctx.respond is false: the application writes the response itself';
    if (ctx.headerSent) return 'the response headers were already sent';
    const { error } = outcome;
    if (outcome.errored && (typeof error !== 'object' || error === null || !Object.isExtensible(error))) {
      // Koa's onerror drops every header and sends the error's own `headers`: a thrown string (or a
      // frozen object) cannot carry ours.
      return 'the handler threw a value that cannot carry headers (not an extensible object)';
    }
    return null;
  }

  /**
   * A new id's cookie on an error response reaches the browser only if the error that Koa finally
   * handles still carries it: an upstream middleware that replaces the error drops it. Once the
   * response is sent, a session whose cookie did not go out is ended, so no key is left that no
   * cookie names (one command more, on this rare path only).
   */
  #watchNewCookie(ctx: Context, id: string, codec: CookieCodec): void {
    const value = `${this.#cookie.name}=${codec.encode(id)};`;
    ctx.res.once('finish', () => {
      const sent = ctx.res.getHeader('set-cookie');
      if ((Array.isArray(sent) ? sent : [String(sent ?? '')]).some((h) => h.startsWith(value))) return;
      this.#store.end(id).then(
        () =>
          this.#report(
            ctx,
            new SessionNotStoredError(
              'session ended again: its cookie did not reach the browser ' +
                '(an upstream middleware replaced the error and its headers)',
              id,
            ),
          ),
        (err: unknown) =>
          this.#report(
            ctx,
            err instanceof InvalidSessionError ? err : new SessionStoreError(String(err), id, 'delete'),
          ),
      );
    });
  }

  #failureError(
    failure: Failure,
    run: MachineRun,
    state: SessionState,
    errored: boolean,
    storeError: unknown,
    blocked: string | null,
  ): unknown {
    switch (failure) {
      case 'gone':
        return new NotInBackendError(
          'session ended or moved by another request while this one ran; its changes were not stored',
          state.storedId,
        );
      case 'tooLarge':
        return new SessionSizeError(run.context.plan === 'none' ? state.storedSize() : null, this.#opts.maxSize);
      case 'cookieRefused': {
        const why =
          blocked ??
          (errored && !this.#opts.cookieOnException
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
          'koaRedisSession: option "cookie.secure" is set but this request is not HTTPS; ' +
            'behind a TLS proxy set app.proxy = true',
        );
      default:
        return storeError;
    }
  }

  async #finish(
    ctx: Context,
    run: MachineRun,
    state: SessionState,
    outcome: HandlerOutcome,
    now: number,
    notes: TraceNotes | null,
    codec: CookieCodec,
  ): Promise<void> {
    state.followUserAtEnd();
    const hasData = state.hasData();
    const blocked = this.#unreachable(ctx, outcome);
    run.send({
      type: 'request.ended',
      hasData,
      changed: state.hasChanges(),
      persistentCookie: state.persistentCookie(),
      cookieAllowed: blocked === null && (this.#opts.allowCookies ? this.#opts.allowCookies(ctx) !== false : true),
      errored: outcome.errored,
      // What create and replace store whole is measured here; a patch's total, by its script.
      fits: !state.isNew || !hasData || state.storedSize() <= this.#opts.maxSize,
      secureOk: this.#cookie.secureOk(ctx),
    });
    let id = state.storedId;
    let storeError: SessionStoreError | undefined;
    if (!run.done) {
      // A write state: send the machine's command, and give it Redis' answer.
      try {
        const result = await this.#store.write(run.context.plan, state, now);
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
      this.#cookie.set(
        ctx,
        codec,
        id as string,
        state.cookieLifetime,
        this.#opts.absoluteTimeout === null ? null : state.created + this.#opts.absoluteTimeout,
      );
      if (outcome.errored && id !== state.storedId) this.#watchNewCookie(ctx, id as string, codec);
    } else if (output.cookie === 'clear') {
      this.#cookie.clear(ctx);
    }
    // Said only when a cookie was needed and could not go (not for every streamed response).
    if (notes && output.failure === 'cookieRefused') notes.blocked = blocked;
    if (output.failure !== null)
      this.#settle(
        ctx,
        output,
        this.#failureError(output.failure, run, state, outcome.errored, storeError, blocked),
        outcome.errored,
      );
  }
}
