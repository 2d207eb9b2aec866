/**
 * The pure decisions of the session machine: its context, its events, the guards it asks and the
 * context updates it makes, and what each final state asks of Redis and of the cookie.
 *
 * Both runtimes read these same functions by name: the XState machine in
 * `machines/session.machine.ts` (the specification, the chart, the model tests) and the compiled
 * interpreter in `src/fsm.ts` (the request path). Nothing here does I/O or reads the clock.
 */

/** What the machine remembers about one request. Fixed shape: one small object per request. */
export interface SessionContext {
  /** A cookie was sent that leads to no usable session: clear it unless a new one replaces it. */
  staleCookie: boolean;
  /** Index of the signing key that verified the cookie; above 0 the cookie is re-signed (SPEC §7). */
  keyIndex: number;
  /** The load moved the session's expiry (the refresh folded into the load, SPEC §5). */
  refreshed: boolean;
  /** The handler asked for the cookie to be sent again. */
  recookie: boolean;
  /** Which write `persisted` sends. */
  plan: WritePlan;
  /** Options that steer the decisions, copied from the middleware's options at start. */
  invalidateEmptySession: boolean;
  cookieOnException: boolean;
  deserializedFailsNew: boolean;
  /** `onRedisError: 'continue'`: a failed load gives an in-memory session that is never written. */
  continueOnRedisError: boolean;
}

/** The options part of the context: the machine's `input`. */
export type SessionInput = Pick<
  SessionContext,
  'invalidateEmptySession' | 'cookieOnException' | 'deserializedFailsNew' | 'continueOnRedisError'
>;

/** The one write a persisted session sends after `await next()`. */
export type WritePlan = 'create' | 'patch' | 'rotate';

/** The Redis command of a final state: at most one, sent after `await next()`. */
export type RedisCommand = 'none' | WritePlan | 'delete';

/** What happens to the session cookie on this response. */
export type CookieAction = 'none' | 'set' | 'clear';

/** The output of every final state: the whole cost of the request's end. */
export interface SessionOutput {
  readonly redis: RedisCommand;
  readonly cookie: CookieAction;
}

/** What the request did, reported once after `await next()`. */
export interface RequestEndedEvent {
  type: 'request.ended';
  /** The session holds at least one data key. */
  hasData: boolean;
  /** The data differs from what was loaded (top-level or nested), or `changed()` forced a write. */
  changed: boolean;
  /** `allowCookies(ctx)` did not refuse cookies on this response. */
  cookieAllowed: boolean;
  /** `await next()` threw. */
  errored: boolean;
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
  | RequestEndedEvent;

export type SessionEventType = SessionEvent['type'];

/** The context a request starts with. */
export function initialContext(input: SessionInput): SessionContext {
  return {
    staleCookie: false,
    keyIndex: 0,
    refreshed: false,
    recookie: false,
    plan: 'patch',
    invalidateEmptySession: input.invalidateEmptySession,
    cookieOnException: input.cookieOnException,
    deserializedFailsNew: input.deserializedFailsNew,
    continueOnRedisError: input.continueOnRedisError,
  };
}

// ---------------------------------------------------------------------------------------------
// Helpers for the guards and outputs

function ended(event: SessionEvent): RequestEndedEvent | undefined {
  return event.type === 'request.ended' ? event : undefined;
}

/** A cookie may be set on this response: allowed, and not an error response unless
 *  `cookieOnException` (pyramid: cookie_on_exception). */
function cookieWritable(context: SessionContext, event: SessionEvent): boolean {
  const e = ended(event);
  return e !== undefined && e.cookieAllowed && (!e.errored || context.cookieOnException);
}

function cookieClearable(event: SessionEvent): boolean {
  const e = ended(event);
  return e !== undefined && e.cookieAllowed;
}

/** Cookie action for a session that keeps its id: re-send when asked or when the cookie was
 *  verified with an older key (re-signed with the newest, every attribute kept). */
function keepCookie(context: SessionContext, event: SessionEvent): CookieAction {
  return (context.recookie || context.keyIndex > 0) && cookieWritable(context, event) ? 'set' : 'none';
}

/** Cookie action when no session is left for the client: clear a stale cookie if we may. */
function dropCookie(context: SessionContext, event: SessionEvent): CookieAction {
  return context.staleCookie && cookieClearable(event) ? 'clear' : 'none';
}

/** Keeps a table's names as literal keys while giving every entry the full signature. */
function named<F>() {
  return <K extends string>(table: Record<K, F>): Readonly<Record<K, F>> => table;
}

type Guard = (context: SessionContext, event: SessionEvent) => boolean;
type Assigner = (context: SessionContext, event: SessionEvent) => Partial<SessionContext>;
type Output = (context: SessionContext, event: SessionEvent) => SessionOutput;

/** Guards: pure predicates, named as the chart names them. */
export const guards = named<Guard>()({
  /** A payload that cannot be decoded gives a fresh session (pyramid: deserialized_fails_new). */
  failsNew: (context) => context.deserializedFailsNew,
  /** Redis failed the load and `onRedisError` is 'continue': serve an unstored session. */
  continuesOffline: (context) => context.continueOnRedisError,
  /** A new session with data whose cookie can be sent: create it. Never an orphan key (SPEC §5). */
  canCreate: (context, event) => ended(event)?.hasData === true && cookieWritable(context, event),
  /** A new session with data that cannot get its cookie: nothing may be stored. */
  hasData: (_context, event) => ended(event)?.hasData === true,
  /** An existing session left empty, with `invalidateEmptySession`: delete it. */
  isEmptied: (context, event) => ended(event)?.hasData === false && context.invalidateEmptySession,
  /** The data changed: write what changed. */
  hasChanges: (_context, event) => ended(event)?.changed === true,
  /** The load moved the expiry. */
  wasRefreshed: (context) => context.refreshed,
  /** The new id's cookie can be sent: move the data to it. */
  canRotate: (context, event) => cookieWritable(context, event),
  /** Fresh data after `invalidate()` whose cookie can be sent: store it under a new id. */
  canReplace: (context, event) => ended(event)?.hasData === true && cookieWritable(context, event),
});

/** Context updates: each returns the fields it changes. */
export const assigners = named<Assigner>()({
  markStale: () => ({ staleCookie: true }),
  storeKeyIndex: (_context, event) => ({ keyIndex: event.type === 'cookie.verified' ? event.keyIndex : 0 }),
  storeRefreshed: (_context, event) => ({ refreshed: event.type === 'load.found' && event.refreshed }),
  requestCookie: () => ({ recookie: true }),
  planCreate: () => ({ plan: 'create' }),
  planPatch: () => ({ plan: 'patch' }),
  planRotate: () => ({ plan: 'rotate' }),
});

/** The output of each final state: the one Redis command and the cookie action. */
export const outputs = named<Output>()({
  persisted: (context, event) => ({
    redis: context.plan,
    cookie: context.plan === 'patch' ? keepCookie(context, event) : 'set',
  }),
  refreshed: (context, event) => ({ redis: 'none', cookie: keepCookie(context, event) }),
  untouched: (context, event) => ({
    redis: 'none',
    cookie: context.staleCookie ? dropCookie(context, event) : keepCookie(context, event),
  }),
  destroyed: (_context, event) => ({ redis: 'delete', cookie: cookieClearable(event) ? 'clear' : 'none' }),
  discarded: (context, event) => ({ redis: 'none', cookie: dropCookie(context, event) }),
});

export type GuardName = keyof typeof guards;
export type AssignerName = keyof typeof assigners;
export type FinalStateName = keyof typeof outputs;
