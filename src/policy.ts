/**
 * The pure decisions of the session machine: its context, its events, the guards it asks and the
 * context updates it makes, and what each final state answers: the Redis command that was sent, the
 * cookie action, and what went wrong, if anything (docs/design.md, "The machine").
 *
 * Both runtimes read these same functions by name: the XState machine in
 * `machines/session.machine.ts` (the specification, the chart, the model tests) and the compiled
 * interpreter in `src/fsm.ts` (the request path). Nothing here does I/O or reads the clock.
 */

/** What the machine remembers about one request. Fixed shape: one small object per request. */
export interface SessionContext {
  /** A cookie was sent that leads to no usable session: clear it unless a new one replaces it. */
  staleCookie: boolean;
  /** Index of the signing key that verified the cookie; above 0 the cookie is re-signed. */
  keyIndex: number;
  /** The load moved the session's expiry (the refresh folded into the load). */
  refreshed: boolean;
  /** The handler asked for the cookie to be sent again. */
  recookie: boolean;
  /** The cookie follows the session's expiry on this response: it is re-sent when a write stores
   *  the session (kept after `request.ended` for the write's answer). */
  rolls: boolean;
  /** The one write chosen at the end of the request, sent while the machine waits in a write state. */
  plan: RedisCommand;
  /** Why the request's session was not stored as the handler left it (null: nothing went wrong). */
  failure: Failure | null;
  /** What `request.ended` said of this response's cookies, kept for the final state that the
   *  write's answer leads to: a cookie may be set / a stale one may be cleared. */
  maySetCookie: boolean;
  mayClearCookie: boolean;
  /** Options that steer the decisions, copied from the middleware's options at start. */
  invalidateEmptySession: boolean;
  cookieOnException: boolean;
  deserializedFailsNew: boolean;
  /** `onRedisError: 'continue'`: a failed command gives an unstored session, not a 503. */
  continueOnRedisError: boolean;
  /** Option `rolling`: re-send the cookie whenever the session's expiry moves (true), never (false),
   *  or only when the session's cookie is persistent (null, the default: a cookie with a lifetime
   *  must not run out while the user is active; a browser-session cookie cannot). */
  rolling: boolean | null;
}

/** The options part of the context: the machine's `input`. */
export type SessionInput = Pick<
  SessionContext,
  'invalidateEmptySession' | 'cookieOnException' | 'deserializedFailsNew' | 'continueOnRedisError' | 'rolling'
>;

/**
 * The one write a request sends after `await next()`. Each carries the request's intent, decided
 * against what is stored by its script (src/store/lua/):
 * - `create`  a new session under a fresh id, never over an existing key;
 * - `patch`   set and delete these fields, take the expiry from the stored timeout, refuse growth
 *             past `maxSize`, and delete the session if nothing is left in it (invalidateEmptySession);
 * - `move`    `regenerate()`: the stored session moves to a fresh id, then the patch applies there;
 * - `replace` `invalidate()` then new data: end the stored session, store the new one;
 * - `delete`  end the session, and every id it was moved to meanwhile (a logout wins).
 */
export type WritePlan = 'create' | 'patch' | 'move' | 'replace' | 'delete';

/** The Redis command of a request's end: at most one, sent after `await next()`. */
export type RedisCommand = 'none' | WritePlan;

/** What happens to the session cookie on this response. */
export type CookieAction = 'none' | 'set' | 'clear';

/**
 * Why a request's session was not stored as the handler left it:
 * - `gone`           the write found the session ended or moved by another request: nothing applied;
 * - `tooLarge`       the session would pass `maxSize`: nothing written (SessionSizeError, 500);
 * - `cookieRefused`  the cookie this write needs cannot be sent (allowCookies, or an error response
 *                    without cookieOnException): nothing written rather than an orphan or a
 *                    session-fixation defence skipped;
 * - `insecureCookie` `cookie.secure` on a plain-HTTP request: a configuration error (500);
 * - `storeFailed`    Redis failed or timed out (503, or reported with onRedisError 'continue');
 * - `undecodable`    the stored payload cannot be decoded (500 naming the key).
 */
export type Failure = 'gone' | 'tooLarge' | 'cookieRefused' | 'insecureCookie' | 'storeFailed' | 'undecodable';

/** The output of every final state: the whole cost and answer of the request's end. */
export interface SessionOutput {
  /** The command sent after `await next()` (`none` when nothing was). */
  readonly redis: RedisCommand;
  readonly cookie: CookieAction;
  readonly failure: Failure | null;
  /** The HTTP status the request fails with (0: it does not fail because of the session). */
  readonly status: 0 | 500 | 503;
}

/** What the request did, reported once after `await next()`. */
export interface RequestEndedEvent {
  type: 'request.ended';
  /** The session holds at least one data key (or a flash message, or a CSRF salt). */
  hasData: boolean;
  /** The data differs from what was loaded (top-level or nested), `changed()` forced a write, or the
   *  timeout was adjusted. */
  changed: boolean;
  /** `allowCookies(ctx)` did not refuse cookies on this response. */
  cookieAllowed: boolean;
  /** `await next()` threw. */
  errored: boolean;
  /** The whole session this request would store fits `maxSize` (what create and replace store; a
   *  patch or move is checked by its script against the stored total). */
  fits: boolean;
  /** A cookie set on this response would be accepted: not `cookie.secure` on a plain-HTTP request. */
  secureOk: boolean;
  /** The session's cookie is persistent (it has a lifetime: `cookie.maxAge`/`expires`, or the
   *  session's own `maxAge`), so it can run out while the session lives. */
  persistentCookie: boolean;
}

export type SessionEvent =
  | { type: 'cookie.missing' }
  | { type: 'cookie.invalid' }
  | { type: 'cookie.verified'; keyIndex: number }
  | { type: 'load.found'; refreshed: boolean }
  | { type: 'load.stale' }
  | { type: 'load.undecodable' }
  | { type: 'load.failed' }
  | { type: 'data.written' }
  | { type: 'session.invalidated' }
  | { type: 'session.regenerated' }
  | { type: 'session.recookied' }
  | RequestEndedEvent
  /** The write's answer, from its script. */
  | { type: 'write.stored' }
  /** The write ended the session: a delete, or a patch that left nothing in it. */
  | { type: 'write.ended' }
  /** The session had ended or moved before the write arrived: nothing applied. */
  | { type: 'write.gone' }
  | { type: 'write.tooLarge' }
  | { type: 'write.failed' };

export type SessionEventType = SessionEvent['type'];

/** The context a request starts with. */
export function initialContext(input: SessionInput): SessionContext {
  return {
    staleCookie: false,
    keyIndex: 0,
    refreshed: false,
    recookie: false,
    rolls: false,
    plan: 'none',
    failure: null,
    maySetCookie: false,
    mayClearCookie: false,
    invalidateEmptySession: input.invalidateEmptySession,
    cookieOnException: input.cookieOnException,
    deserializedFailsNew: input.deserializedFailsNew,
    continueOnRedisError: input.continueOnRedisError,
    rolling: input.rolling,
  };
}

// ---------------------------------------------------------------------------------------------
// Helpers for the guards and outputs

function ended(event: SessionEvent): RequestEndedEvent | undefined {
  return event.type === 'request.ended' ? event : undefined;
}

/** A cookie may be set on this response: allowed, and not an error response unless
 *  `cookieOnException` (pyramid: cookie_on_exception). After a write, what `request.ended` said. */
function cookieWritable(context: SessionContext, event: SessionEvent): boolean {
  const e = ended(event);
  if (e === undefined) return context.maySetCookie;
  return e.cookieAllowed && (!e.errored || context.cookieOnException);
}

function cookieClearable(context: SessionContext, event: SessionEvent): boolean {
  const e = ended(event);
  return e === undefined ? context.mayClearCookie : e.cookieAllowed;
}

/** Rolling: the cookie is re-sent when the session's expiry moves, if the option (or, by default,
 *  a persistent cookie) asks for it and the response can take it. After a write, what `request.ended`
 *  said. A rolled cookie is never worth a failure: on a plain-HTTP request with `cookie.secure` it is
 *  simply not sent. */
function rollsCookie(context: SessionContext, event: SessionEvent): boolean {
  const e = ended(event);
  if (e === undefined) return context.rolls;
  return (context.rolling ?? e.persistentCookie) && e.secureOk && cookieWritable(context, event);
}

/** Choose the write, keeping what the response allows for the final state its answer leads to. */
function plan(command: WritePlan): Assigner {
  return (context, event) => ({
    plan: command,
    maySetCookie: cookieWritable(context, event),
    mayClearCookie: cookieClearable(context, event),
    rolls: rollsCookie(context, event),
  });
}

/** The session keeps its id and its cookie is to be sent again: asked for, or verified with an older
 *  key (re-signed with the newest, every attribute kept). */
function resends(context: SessionContext): boolean {
  return context.recookie || context.keyIndex > 0;
}

/** Cookie action for a session that keeps its id: re-sent when asked for or re-signed, or, when
 *  its expiry `moved` (refreshed by the load, or a write stored), when it rolls. */
function keepCookie(context: SessionContext, event: SessionEvent, moved: boolean): CookieAction {
  if (resends(context) && cookieWritable(context, event)) return 'set';
  return moved && rollsCookie(context, event) ? 'set' : 'none';
}

/** Cookie action when no session is left for the client: clear a stale cookie if we may. */
function dropCookie(context: SessionContext, event: SessionEvent): CookieAction {
  return context.staleCookie && cookieClearable(context, event) ? 'clear' : 'none';
}

/** Keeps a table's names as literal keys while giving every entry the full signature. */
function named<F>() {
  return <K extends string>(table: Record<K, F>): Readonly<Record<K, F>> => table;
}

/** A guard: a pure predicate on the context and the event (`guards`). */
export type Guard = (context: SessionContext, event: SessionEvent) => boolean;
/** A context update: the fields it changes (`assigners`). */
export type Assigner = (context: SessionContext, event: SessionEvent) => Partial<SessionContext>;
/** A final state's output (`outputs`). */
export type Output = (context: SessionContext, event: SessionEvent) => SessionOutput;

/** Guards: pure predicates, named as the chart names them. */
export const guards = named<Guard>()({
  /** A payload that cannot be decoded gives a fresh session (pyramid: deserialized_fails_new). */
  failsNew: (context) => context.deserializedFailsNew,
  /** Redis failed the load and `onRedisError` is 'continue': serve an unstored session. */
  continuesOffline: (context) => context.continueOnRedisError,
  /** The session holds nothing worth storing. */
  nothingToStore: (_context, event) => ended(event)?.hasData === false,
  /** The cookie this write needs cannot reach the browser: write nothing (never an orphan key, and
   *  never a regenerated session's data under the old id). */
  cookieBlocked: (context, event) => !cookieWritable(context, event),
  /** Koa's cookies refuse a Secure cookie on plain HTTP: finding out after the write would leave a
   *  stored session that no cookie names. */
  insecureCookie: (_context, event) => ended(event)?.secureOk === false,
  /** A kept session's cookie is to be re-sent, and it would be refused as insecure. */
  resendsInsecureCookie: (context, event) =>
    resends(context) && cookieWritable(context, event) && ended(event)?.secureOk === false,
  /** The whole session this request would store passes `maxSize`. */
  tooLarge: (_context, event) => ended(event)?.fits === false,
  /** An existing session left empty, with `invalidateEmptySession`: its patch deletes it if
   *  nothing else is left in it once applied. */
  isEmptied: (context, event) => ended(event)?.hasData === false && context.invalidateEmptySession,
  /** The data changed: write what changed. */
  hasChanges: (_context, event) => ended(event)?.changed === true,
  /** The load moved the expiry. */
  wasRefreshed: (context) => context.refreshed,
});

/** Context updates: each returns the fields it changes. */
export const assigners = named<Assigner>()({
  markStale: () => ({ staleCookie: true }),
  storeKeyIndex: (_context, event) => ({ keyIndex: event.type === 'cookie.verified' ? event.keyIndex : 0 }),
  storeRefreshed: (_context, event) => ({ refreshed: event.type === 'load.found' && event.refreshed }),
  requestCookie: () => ({ recookie: true }),
  planCreate: plan('create'),
  planPatch: plan('patch'),
  planMove: plan('move'),
  planReplace: plan('replace'),
  planDelete: plan('delete'),
  noteGone: () => ({ failure: 'gone' }),
  noteTooLarge: () => ({ failure: 'tooLarge' }),
  noteCookieRefused: () => ({ failure: 'cookieRefused' }),
  noteInsecureCookie: () => ({ failure: 'insecureCookie' }),
  noteStoreFailed: () => ({ failure: 'storeFailed' }),
  noteUndecodable: () => ({ failure: 'undecodable' }),
});

/** The output of each final state. */
export const outputs = named<Output>()({
  persisted: (context, event) => ({
    redis: context.plan,
    cookie: context.plan === 'patch' ? keepCookie(context, event, true) : 'set',
    failure: null,
    status: 0,
  }),
  refreshed: (context, event) => ({
    redis: 'none',
    cookie: keepCookie(context, event, true),
    failure: null,
    status: 0,
  }),
  untouched: (context, event) => ({
    redis: 'none',
    cookie: context.staleCookie ? dropCookie(context, event) : keepCookie(context, event, false),
    failure: null,
    status: 0,
  }),
  destroyed: (context, event) => ({
    redis: context.plan,
    cookie: cookieClearable(context, event) ? 'clear' : 'none',
    failure: context.failure,
    status: 0,
  }),
  discarded: (context, event) => ({ redis: 'none', cookie: dropCookie(context, event), failure: null, status: 0 }),
  // The other request that ended or moved the session may have set a new cookie on its own
  // response: this one leaves the cookie alone; a stale cookie is cleared by its next load.
  gone: (context) => ({ redis: context.plan, cookie: 'none', failure: 'gone', status: 0 }),
  rejected: (context, event) => ({
    redis: 'none',
    cookie: dropCookie(context, event),
    failure: context.failure,
    status: context.failure === 'cookieRefused' ? 0 : 500,
  }),
  failed: (context, event) => ({
    redis: context.plan,
    // A logout stays a logout for this browser even when Redis did not answer.
    cookie: context.plan === 'delete' && cookieClearable(context, event) ? 'clear' : 'none',
    failure: context.failure,
    status: context.failure === 'undecodable' ? 500 : context.continueOnRedisError ? 0 : 503,
  }),
});

export type GuardName = keyof typeof guards;
export type AssignerName = keyof typeof assigners;
export type FinalStateName = keyof typeof outputs;
