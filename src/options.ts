/**
 * Options of `koaRedisSession()`: their types, defaults and validation. Every mistake is a
 * `TypeError` thrown when the middleware is created, naming the option (README, "Options"), as koa's `use()`
 * and keygrip fail at setup instead of at the first request.
 *
 * Each option is defined once, in `OPTIONS` (each cookie attribute in `COOKIE_ATTRIBUTES`): its
 * one-line doc, its default and its check. The names, the validation and `ResolvedOptions` are
 * derived from it; test/options-table.test.ts holds the README's options table to it.
 */
import type { Cluster, Redis, RedisOptions } from 'ioredis';
import type { Context } from 'koa';
import { CUSTOM_ID_PATTERN, DEFAULT_ID_PATTERN, defaultGenId, toKeyRing, type KeyRing } from './cookie.js';
import type { InvalidSessionError } from './errors.js';
import { RESERVED_MEMBERS } from './session-proxy.js';
import type { SessionTrace } from './trace.js';
import type { Serializer } from './payload.js';
import { sessionSerializer } from './values.js';

/** Attributes of the session cookie, as Koa's `ctx.cookies.set()` takes them. Times in milliseconds. */
export interface SessionCookieOptions {
  /** Cookie name. @default 'session' */
  name?: string;
  /** Lifetime in milliseconds from when the cookie is sent; none = a browser-session cookie. A
   *  session's own lifetime (`ctx.session.maxAge`, `rememberFor()`) overrides it. With `rolling` (on by
   *  default for such cookies) the cookie is re-sent whenever the session's expiry moves. */
  maxAge?: number;
  /** Fixed expiry date; none = a browser-session cookie. */
  expires?: Date;
  /** @default '/' */
  path?: string;
  domain?: string;
  /** @default ctx.secure (true on HTTPS, or behind a proxy with `app.proxy` and X-Forwarded-Proto) */
  secure?: boolean;
  /** @default true */
  httpOnly?: boolean;
  /** @default 'lax' */
  sameSite?: 'strict' | 'lax' | 'none' | boolean;
  priority?: 'low' | 'medium' | 'high';
  /** CHIPS partitioned cookie; browsers require `secure` with it. */
  partitioned?: boolean;
}

/** Options of `koaRedisSession()`. Session times are in seconds; cookie times in milliseconds. */
export interface SessionOptions {
  /** An ioredis `Redis` or `Cluster` (never SELECTed or closed by us), a redis:// URL, or ioredis
   *  options (then the client is ours and `close()` ends it).
   *  @default process.env.REDIS_URL or 'redis://127.0.0.1:6379' */
  redis?: Redis | Cluster | string | RedisOptions;
  /** Signing keys, newest first, or a Keygrip. @default app.keys */
  keys?: readonly string[] | KeyRing;
  /** Redis key prefix. @default 'sess:' */
  prefix?: string;
  /** The ctx property that holds the session. @default 'session' */
  contextKey?: string;
  /** Idle seconds before a session expires; 0 or null = never. @default 1200 */
  timeout?: number | null;
  /** Move the expiry only once fewer than this many seconds remain. @default null (every request) */
  timeoutTrigger?: number | null;
  /** Seconds after its creation when a session ends, however active (OWASP's absolute timeout);
   *  enforced by the load, and no cookie outlives it. @default null (none) */
  absoluteTimeout?: number | null;
  /** Re-send the cookie (same id, same lifetime) whenever the session's expiry moves: on a load that
   *  refreshes it and on a write. @default re-send persistent cookies only (a browser-session
   *  cookie cannot run out while the user is active) */
  rolling?: boolean;
  /** false = LRU mode: no Redis TTL, the expiry is kept in the payload only. @default true */
  setRedisTtl?: boolean;
  /** Catch nested mutation by comparing each value's encoding with what was loaded. @default true */
  detectChanges?: boolean;
  /** A payload that cannot be decoded gives a fresh session instead of a 500. @default false */
  deserializedFailsNew?: boolean;
  /** An existing session emptied by the request is deleted and its cookie cleared. @default true */
  invalidateEmptySession?: boolean;
  /** Session cookie attributes. */
  cookie?: SessionCookieOptions;
  /** Whether a response produced by an error still sets the cookie of a new session. @default true */
  cookieOnException?: boolean;
  /** Return false to send no session cookie on this response (CDN-cacheable content); no new
   *  session is then created. Called after the downstream middleware. */
  allowCookies?: (ctx: Context) => boolean;
  /** Called whenever a cookie does not lead to a usable session, with the reason. */
  onInvalid?: (ctx: Context, err: InvalidSessionError) => void;
  /** Encodes each session value. @default `sessionSerializer`: JSON that also carries Date, Map,
   *  Set, BigInt, NaN/±Infinity/-0 and undefined in arrays, and refuses anything else that is not
   *  plain data; prototype-safe parsing */
  serializer?: Serializer;
  /** Session id generator. @default 32 random bytes, base64url */
  genId?: () => string;
  /** A data key (e.g. `'userId'`): sessions holding a value under it are indexed per user, in the
   *  same command as their write, for `middleware.sessions` (README, "A user's sessions").
   *  @default none (no index) */
  userKey?: string;
  /** `(ctx) => object` (e.g. the user agent): stored with a session when its `userKey` is first set
   *  (at login), and listed as its `info` by `middleware.sessions.list()`. @default none */
  sessionInfo?: (ctx: Context) => Record<string, unknown>;
  /** Largest session, in bytes of stored fields; a larger one fails the request with a
   *  `SessionSizeError` and nothing is written. @default 65536 */
  maxSize?: number;
  /** When Redis fails or does not answer in time: 'throw' fails the request with 503 (the message
   *  says the session store is unavailable); 'continue' serves a fresh in-memory session that is not
   *  written, and reports the error to `onInvalid`. @default 'throw' */
  onRedisError?: 'throw' | 'continue';
  /** Milliseconds any session command may take, whether or not the client is ours (ioredis' own
   *  defaults wait 73 s with Redis down). @default 1000 */
  commandTimeout?: number;
  /** Trace every request on one line: its status, its session's tag, the states it went through, the
   *  events, the final state, the Redis commands and the write's answer, and the time spent. `true`
   *  logs to stderr; a function receives each trace; false stays off.
   *  @default off, or on when `DEBUG` names `koa-session-machine` (as the `debug` package reads it) */
  debug?: boolean | ((trace: SessionTrace, ctx: Context) => void);
  /** Development only: send the trace line in an `X-Session-Trace` response header. Refused when
   *  NODE_ENV is production: it shows session internals. @default false */
  traceHeader?: boolean;
}

/** A default a user could write: what the README's default column shows. */
type Literal = string | number | boolean | null;

/** Options resolved before the one being resolved, by name (for checks against another option). */
type Earlier = Readonly<Record<string, unknown>>;

/** One option, or one cookie attribute: everything the code knows of it, in one place. */
interface Definition<D extends Literal> {
  /** What it is for, in one line (README, "Options", says it at length; the interface's JSDoc too). */
  readonly doc: string;
  /** Its value when left out, as a user would write it: `resolve` receives it, so this is the
   *  default that applies, and the README's default column must show it (test/options-table.test.ts).
   *  Absent when no value says it (`app.keys`, "persistent cookies"…): `resolve` then gets undefined. */
  readonly default?: D;
  /** Check the value given (or the default) and return what the middleware uses; `fail()` refuses it. */
  readonly resolve: (value: unknown, earlier: Earlier) => unknown;
}

/** A table of definitions with exactly the keys of `O`: a key missing from the table, or one the
 *  interface does not have, is a type error, and each default must be a value `O` allows. */
type Table<O> = { readonly [K in keyof O]-?: Definition<Extract<O[K], Literal>> };

/** What a table resolves to: each entry's `resolve` result, by name. */
type Resolved<T extends Record<string, { resolve: (...args: never[]) => unknown }>> = {
  [K in keyof T]: ReturnType<T[K]['resolve']>;
};

/** Largest number of seconds a session time may be: Redis EXPIRE and epoch-second dates take it. */
const MAX_SECONDS = 2 ** 31 - 1;

/** The seconds rule of every session time (README, "Options": session times are in seconds): a
 *  whole number from 1 to 2^31 - 1. */
export function isSeconds(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value > 0 && value <= MAX_SECONDS;
}

/** An idle timeout, as the `timeout` option and `ctx.session.adjustTimeout()` take it: seconds, or 0
 *  or null for never (null). Undefined when the value is neither: the caller throws its own error. */
export function toTimeout(value: unknown): number | null | undefined {
  if (value === null || value === 0) return null;
  return isSeconds(value) ? value : undefined;
}

/** RFC 6265 token: what a cookie name may be. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

function fail(option: string, expected: string, value: unknown): never {
  const shown =
    typeof value === 'string' ? JSON.stringify(value) : typeof value === 'function' ? 'a function' : String(value);
  throw new TypeError(`koaRedisSession: option "${option}" must be ${expected}, got ${shown}`);
}

function bool(value: unknown, option: string): boolean {
  if (typeof value !== 'boolean') fail(option, 'a boolean', value);
  return value;
}

/** A session time other than `timeout`: seconds, or null for none. */
function seconds(value: unknown, option: string): number | null {
  if (value === null) return null;
  if (!isSeconds(value)) fail(option, 'a whole number of seconds above 0, or null', value);
  return value;
}

function func<F>(value: unknown, option: string): F | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'function') fail(option, 'a function', value);
  return value as F;
}

/** The attributes of the session cookie (option `cookie`), in the order they are checked. */
export const COOKIE_ATTRIBUTES = {
  name: {
    doc: 'cookie name',
    default: 'session',
    resolve: (value): string => {
      if (typeof value !== 'string' || !TOKEN.test(value))
        fail('cookie.name', 'a cookie name (an RFC 6265 token)', value);
      return value;
    },
  },
  maxAge: {
    doc: 'lifetime in milliseconds from when the cookie is sent; none = a browser-session cookie',
    resolve: (value): number | undefined => {
      if (
        value !== undefined &&
        (typeof value !== 'number' || !Number.isFinite(value) || value < 1 || value > 2 ** 31 * 1000)
      ) {
        fail('cookie.maxAge', 'a number of milliseconds from 1 to 2^31 seconds', value);
      }
      return value;
    },
  },
  expires: {
    doc: 'fixed expiry date; none = a browser-session cookie',
    resolve: (value): Date | undefined => {
      if (value !== undefined && !(value instanceof Date && !Number.isNaN(value.getTime())))
        fail('cookie.expires', 'a valid Date', value);
      return value;
    },
  },
  path: {
    doc: 'cookie path',
    default: '/',
    resolve: (value): string => {
      // biome-ignore lint/suspicious/noControlCharactersInRegex: what a cookie path must not hold
      if (typeof value !== 'string' || !value.startsWith('/') || /[;\x00-\x1f\x7f]/.test(value))
        fail('cookie.path', 'a path starting with "/"', value);
      return value;
    },
  },
  domain: {
    doc: 'cookie domain; none = the host that set it',
    resolve: (value): string | undefined => {
      if (value !== undefined && (typeof value !== 'string' || !/^\.?[A-Za-z0-9.-]+$/.test(value)))
        fail('cookie.domain', 'a domain name', value);
      return value;
    },
  },
  secure: {
    doc: 'Secure attribute; none = ctx.secure',
    resolve: (value): boolean | undefined => (value === undefined ? undefined : bool(value, 'cookie.secure')),
  },
  httpOnly: {
    doc: 'HttpOnly attribute',
    default: true,
    resolve: (value): boolean => bool(value, 'cookie.httpOnly'),
  },
  sameSite: {
    doc: 'SameSite attribute',
    default: 'lax',
    resolve: (value, earlier): 'strict' | 'lax' | 'none' | boolean => {
      if (!(typeof value === 'boolean' || value === 'strict' || value === 'lax' || value === 'none')) {
        fail('cookie.sameSite', '"strict", "lax", "none" or a boolean', value);
      }
      if (value === 'none' && earlier.secure === false) {
        fail(
          'cookie.sameSite',
          'used with secure cookies when "none" (browsers reject SameSite=None without Secure)',
          value,
        );
      }
      return value;
    },
  },
  priority: {
    doc: 'Priority attribute',
    resolve: (value): 'low' | 'medium' | 'high' | undefined => {
      if (value !== undefined && value !== 'low' && value !== 'medium' && value !== 'high')
        fail('cookie.priority', '"low", "medium" or "high"', value);
      return value;
    },
  },
  partitioned: {
    doc: 'CHIPS partitioned cookie (browsers require secure with it)',
    // None, like false: the attribute is not sent.
    resolve: (value, earlier): true | undefined => {
      if (value === undefined || !bool(value, 'cookie.partitioned')) return undefined;
      if (earlier.secure === false)
        fail('cookie.partitioned', 'used with secure cookies (browsers reject Partitioned without Secure)', true);
      return true;
    },
  },
} satisfies Table<SessionCookieOptions>;

/** The `cookie` option resolved: the attributes given or defaulted, none set to undefined. */
export type ResolvedCookie = Required<Pick<SessionCookieOptions, 'name' | 'path' | 'httpOnly' | 'sameSite'>> &
  SessionCookieOptions;

/**
 * Check each entry of `table` in order against `given`, defaults applied, and return what they
 * resolve to. `prefix` names the table in errors (`cookie.`); with `sparse`, an entry that
 * resolves to undefined is left out rather than set to undefined (cookie attributes).
 */
function resolveTable<T extends Record<string, Definition<Literal>>>(
  table: T,
  given: Record<string, unknown>,
  prefix: string,
  sparse: boolean,
): Resolved<T> {
  for (const key of Object.keys(given)) {
    if (!Object.hasOwn(table, key)) {
      throw new TypeError(
        `koaRedisSession: unknown option "${prefix}${key}" (known: ${Object.keys(table).join(', ')})`,
      );
    }
  }
  const resolved: Record<string, unknown> = {};
  for (const [name, definition] of Object.entries(table)) {
    const value = given[name] === undefined && Object.hasOwn(definition, 'default') ? definition.default : given[name];
    const result = definition.resolve(value, resolved);
    if (result !== undefined || !sparse) resolved[name] = result;
  }
  return resolved as Resolved<T>;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/**
 * Every option of `koaRedisSession()`, in the README's order (README, "Options"): its one-line doc,
 * its default, and how it is checked and resolved. The option names, the validation and the
 * resolved options all come from here; the `SessionOptions` interface keeps the public
 * documentation, and `satisfies Table<SessionOptions>` holds the two to the same set of names.
 */
export const OPTIONS = {
  redis: {
    doc: 'the Redis client, a redis:// URL, or ioredis options',
    // None: process.env.REDIS_URL or redis://127.0.0.1:6379, read when connecting (src/client.ts).
    resolve: (value): SessionOptions['redis'] => {
      if (value !== undefined && typeof value !== 'string' && (value === null || typeof value !== 'object')) {
        fail('redis', 'an ioredis Redis or Cluster instance, a redis:// URL or ioredis options', value);
      }
      if (typeof value === 'string' && !/^rediss?:\/\//.test(value))
        fail('redis', 'a redis:// or rediss:// URL', value);
      return value as SessionOptions['redis'];
    },
  },
  keys: {
    doc: 'signing keys, newest first, or a Keygrip',
    // None: app.keys, read per request.
    resolve: (value): KeyRing | undefined =>
      value === undefined ? undefined : toKeyRing(value, 'koaRedisSession: option "keys"'),
  },
  prefix: {
    doc: 'Redis key prefix',
    default: 'sess:',
    resolve: (value): string => {
      if (typeof value !== 'string') fail('prefix', 'a string', value);
      return value;
    },
  },
  contextKey: {
    doc: 'the ctx property that holds the session',
    default: 'session',
    resolve: (value): string => {
      if (typeof value !== 'string' || value === '') fail('contextKey', 'a non-empty string', value);
      return value;
    },
  },
  timeout: {
    doc: 'idle seconds before a session expires; 0 or null = never',
    default: 1200,
    resolve: (value): number | null => {
      const timeout = toTimeout(value);
      if (timeout === undefined) fail('timeout', 'a whole number of seconds above 0, or 0/null for never', value);
      return timeout;
    },
  },
  timeoutTrigger: {
    doc: 'move the expiry only once fewer than this many seconds remain',
    default: null,
    resolve: (value, earlier): number | null => {
      const trigger = seconds(value, 'timeoutTrigger');
      if (trigger === null) return null;
      const timeout = typeof earlier.timeout === 'number' ? earlier.timeout : null;
      if (timeout === null)
        fail(
          'timeoutTrigger',
          'null when timeout is 0/null (a session that never expires has nothing to refresh)',
          trigger,
        );
      if (trigger >= timeout) fail('timeoutTrigger', `less than timeout (${timeout})`, trigger);
      return trigger;
    },
  },
  absoluteTimeout: {
    doc: 'seconds after its creation when a session ends, however active',
    default: null,
    resolve: (value): number | null => seconds(value, 'absoluteTimeout'),
  },
  rolling: {
    doc: "re-send the cookie whenever the session's expiry moves",
    // None: null, for the machine "persistent cookies only" (src/policy.ts, SessionContext.rolling).
    resolve: (value): boolean | null => (value === undefined ? null : bool(value, 'rolling')),
  },
  setRedisTtl: {
    doc: 'false = LRU mode: no Redis TTL, the expiry kept in the payload only',
    default: true,
    resolve: (value): boolean => bool(value, 'setRedisTtl'),
  },
  detectChanges: {
    doc: "catch nested mutation by comparing each value's encoding with what was loaded",
    default: true,
    resolve: (value): boolean => bool(value, 'detectChanges'),
  },
  deserializedFailsNew: {
    doc: 'a payload that cannot be decoded gives a fresh session instead of a 500',
    default: false,
    resolve: (value): boolean => bool(value, 'deserializedFailsNew'),
  },
  invalidateEmptySession: {
    doc: 'an existing session emptied by the request is deleted and its cookie cleared',
    default: true,
    resolve: (value): boolean => bool(value, 'invalidateEmptySession'),
  },
  cookie: {
    doc: 'session cookie attributes',
    // None: every attribute's own default (COOKIE_ATTRIBUTES).
    resolve: (value): ResolvedCookie => {
      if (value === undefined) value = {};
      if (!isRecord(value)) fail('cookie', 'an object of cookie attributes', value);
      return resolveTable(COOKIE_ATTRIBUTES, value, 'cookie.', true);
    },
  },
  cookieOnException: {
    doc: 'whether a response produced by an error still sets the cookie of a new session',
    default: true,
    resolve: (value): boolean => bool(value, 'cookieOnException'),
  },
  allowCookies: {
    doc: 'return false to send no session cookie on this response',
    resolve: (value) => func<(ctx: Context) => boolean>(value, 'allowCookies'),
  },
  onInvalid: {
    doc: 'called whenever a cookie does not lead to a usable session, with the reason',
    resolve: (value) => func<(ctx: Context, err: InvalidSessionError) => void>(value, 'onInvalid'),
  },
  serializer: {
    doc: 'encodes each session value',
    // None: sessionSerializer (src/values.ts).
    resolve: (value): Serializer => {
      const serializer = (value === undefined ? sessionSerializer : value) as Serializer;
      if (
        serializer === null ||
        typeof serializer !== 'object' ||
        typeof serializer.stringify !== 'function' ||
        typeof serializer.parse !== 'function'
      ) {
        fail('serializer', 'an object with stringify(value) and parse(text) functions', serializer);
      }
      if (serializer.check !== undefined && typeof serializer.check !== 'function')
        fail('serializer.check', 'a function or absent', serializer.check);
      return serializer;
    },
  },
  genId: {
    doc: 'session id generator',
    // None: 32 random bytes, base64url (src/cookie.ts).
    resolve: (value): (() => string) => func<() => string>(value, 'genId') ?? defaultGenId,
  },
  userKey: {
    doc: 'a data key: sessions holding it are indexed per user, for middleware.sessions',
    resolve: (value): string | null => {
      if (value === undefined) return null;
      if (typeof value !== 'string' || value === '' || value === '__proto__' || RESERVED_MEMBERS.has(value))
        fail('userKey', 'a data key name (not empty, not a reserved member of ctx.session)', value);
      return value;
    },
  },
  sessionInfo: {
    doc: '(ctx) => object stored with a session when userKey is first set',
    resolve: (value, earlier) => {
      const info = func<(ctx: Context) => Record<string, unknown>>(value, 'sessionInfo');
      if (info !== undefined && earlier.userKey === null) fail('sessionInfo', 'used with the option userKey', value);
      return info;
    },
  },
  maxSize: {
    doc: 'largest session, in bytes of stored fields',
    default: 65536,
    resolve: (value): number => {
      if (typeof value !== 'number' || !Number.isInteger(value) || value <= 0)
        fail('maxSize', 'a whole number of bytes above 0', value);
      return value;
    },
  },
  onRedisError: {
    doc: "when Redis fails: 'throw' a 503, or 'continue' with an unstored session",
    default: 'throw',
    resolve: (value): 'throw' | 'continue' => {
      if (value !== 'throw' && value !== 'continue') fail('onRedisError', '"throw" or "continue"', value);
      return value;
    },
  },
  commandTimeout: {
    doc: 'milliseconds any session command may take',
    default: 1000,
    resolve: (value): number => {
      if (typeof value !== 'number' || !Number.isInteger(value) || value <= 0 || value > 2 ** 31 - 1) {
        fail('commandTimeout', 'a whole number of milliseconds above 0', value);
      }
      return value;
    },
  },
  debug: {
    doc: 'trace every request on one line: true to stderr, or a function',
    // None: on when DEBUG names koa-session-machine, asked per request (src/trace.ts).
    resolve: (value): boolean | ((trace: SessionTrace, ctx: Context) => void) | undefined => {
      if (value !== undefined && typeof value !== 'boolean' && typeof value !== 'function')
        fail('debug', 'a boolean or a function', value);
      return value as boolean | ((trace: SessionTrace, ctx: Context) => void) | undefined;
    },
  },
  traceHeader: {
    doc: 'development only: the trace line in an X-Session-Trace response header',
    default: false,
    resolve: (value): boolean => {
      const on = bool(value, 'traceHeader');
      if (on && process.env.NODE_ENV === 'production')
        fail('traceHeader', 'off when NODE_ENV is production (the header shows session internals)', true);
      return on;
    },
  },
} satisfies Table<SessionOptions>;

/** The names of the options, in the README's order. */
export const OPTION_NAMES: readonly (keyof SessionOptions)[] = Object.keys(OPTIONS) as (keyof SessionOptions)[];

/** Options after validation, with defaults applied. */
export interface ResolvedOptions extends Resolved<typeof OPTIONS> {
  /** What a cookie's id must look like: the default generator's, or any cookie-safe id for `genId`'s. */
  idPattern: RegExp;
}

/** Validate options and apply defaults. Throws a TypeError naming the first bad option. */
export function resolveOptions(input: SessionOptions = {}): ResolvedOptions {
  if (!isRecord(input)) fail('options', 'an object', input);
  const resolved = resolveTable(OPTIONS, input, '', false);
  return { ...resolved, idPattern: input.genId === undefined ? DEFAULT_ID_PATTERN : CUSTOM_ID_PATTERN };
}
