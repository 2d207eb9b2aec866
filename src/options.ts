/**
 * Options of `koaRedisSession()`: their types, defaults and validation. Every mistake is a
 * `TypeError` thrown when the middleware is created, naming the option (README, "Options"), as koa's `use()`
 * and keygrip fail at setup instead of at the first request.
 */
import type { Cluster, Redis, RedisOptions } from 'ioredis';
import type { Context } from 'koa';
import { CUSTOM_ID_PATTERN, DEFAULT_ID_PATTERN, defaultGenId, toKeyRing, type KeyRing } from './cookie.js';
import type { InvalidSessionError } from './errors.js';
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

/** Options after validation, with defaults applied. */
export interface ResolvedOptions {
  redis: SessionOptions['redis'];
  keys: KeyRing | undefined;
  prefix: string;
  contextKey: string;
  timeout: number | null;
  timeoutTrigger: number | null;
  absoluteTimeout: number | null;
  rolling: boolean | null;
  setRedisTtl: boolean;
  detectChanges: boolean;
  deserializedFailsNew: boolean;
  invalidateEmptySession: boolean;
  cookie: Required<Pick<SessionCookieOptions, 'name' | 'path' | 'httpOnly' | 'sameSite'>> & SessionCookieOptions;
  cookieOnException: boolean;
  allowCookies: ((ctx: Context) => boolean) | undefined;
  onInvalid: ((ctx: Context, err: InvalidSessionError) => void) | undefined;
  serializer: Serializer;
  genId: () => string;
  idPattern: RegExp;
  maxSize: number;
  onRedisError: 'throw' | 'continue';
  commandTimeout: number;
  debug: boolean | ((trace: SessionTrace, ctx: Context) => void) | undefined;
  traceHeader: boolean;
}

const OPTION_NAMES = new Set<string>([
  'redis', 'keys', 'prefix', 'contextKey', 'timeout', 'timeoutTrigger', 'absoluteTimeout', 'rolling', 'setRedisTtl', 'detectChanges',
  'deserializedFailsNew', 'invalidateEmptySession', 'cookie', 'cookieOnException', 'allowCookies',
  'onInvalid', 'serializer', 'genId', 'maxSize', 'onRedisError', 'commandTimeout', 'debug', 'traceHeader',
]);

const COOKIE_NAMES = new Set<string>([
  'name', 'maxAge', 'expires', 'path', 'domain', 'secure', 'httpOnly', 'sameSite', 'priority', 'partitioned',
]);

/** RFC 6265 token: what a cookie name may be. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

function fail(option: string, expected: string, value: unknown): never {
  const shown = typeof value === 'string' ? JSON.stringify(value) : typeof value === 'function' ? 'a function' : String(value);
  throw new TypeError(`koaRedisSession: option "${option}" must be ${expected}, got ${shown}`);
}

function bool(options: Record<string, unknown>, name: string, fallback: boolean, option = name): boolean {
  const value = options[name];
  if (value === undefined) return fallback;
  if (typeof value !== 'boolean') fail(option, 'a boolean', value);
  return value;
}

function seconds(value: unknown, option: string, allowZero: boolean): number | null {
  if (value === null || (allowZero && value === 0)) return null;
  if (typeof value !== 'number' || !Number.isInteger(value) || value <= 0 || value > 2 ** 31 - 1) {
    fail(option, `a whole number of seconds above 0${allowZero ? ', or 0/null for never' : ', or null'}`, value);
  }
  return value;
}

function func<T>(options: Record<string, unknown>, name: string): T | undefined {
  const value = options[name];
  if (value === undefined) return undefined;
  if (typeof value !== 'function') fail(name, 'a function', value);
  return value as T;
}

function resolveCookie(value: unknown): ResolvedOptions['cookie'] {
  if (value === undefined) value = {};
  if (value === null || typeof value !== 'object' || Array.isArray(value)) fail('cookie', 'an object of cookie attributes', value);
  const c = value as Record<string, unknown>;
  for (const key of Object.keys(c)) {
    if (!COOKIE_NAMES.has(key)) {
      throw new TypeError(`koaRedisSession: unknown option "cookie.${key}" (known: ${[...COOKIE_NAMES].join(', ')})`);
    }
  }
  const name = c.name ?? 'session';
  if (typeof name !== 'string' || !TOKEN.test(name)) fail('cookie.name', 'a cookie name (an RFC 6265 token)', name);
  const path = c.path ?? '/';
  if (typeof path !== 'string' || !path.startsWith('/') || /[;\x00-\x1f\x7f]/.test(path)) fail('cookie.path', 'a path starting with "/"', path);
  if (c.domain !== undefined && (typeof c.domain !== 'string' || !/^\.?[A-Za-z0-9.-]+$/.test(c.domain))) fail('cookie.domain', 'a domain name', c.domain);
  if (c.maxAge !== undefined && (typeof c.maxAge !== 'number' || !Number.isFinite(c.maxAge) || c.maxAge < 1 || c.maxAge > 2 ** 31 * 1000)) {
    fail('cookie.maxAge', 'a number of milliseconds from 1 to 2^31 seconds', c.maxAge);
  }
  if (c.expires !== undefined && !(c.expires instanceof Date && !Number.isNaN(c.expires.getTime()))) fail('cookie.expires', 'a valid Date', c.expires);
  if (c.secure !== undefined && typeof c.secure !== 'boolean') fail('cookie.secure', 'a boolean', c.secure);
  const httpOnly = bool(c, 'httpOnly', true, 'cookie.httpOnly');
  const sameSite = c.sameSite ?? 'lax';
  if (!(typeof sameSite === 'boolean' || sameSite === 'strict' || sameSite === 'lax' || sameSite === 'none')) {
    fail('cookie.sameSite', '"strict", "lax", "none" or a boolean', sameSite);
  }
  if (c.priority !== undefined && c.priority !== 'low' && c.priority !== 'medium' && c.priority !== 'high') {
    fail('cookie.priority', '"low", "medium" or "high"', c.priority);
  }
  const partitioned = bool(c, 'partitioned', false, 'cookie.partitioned');
  if (partitioned && c.secure === false) fail('cookie.partitioned', 'used with secure cookies (browsers reject Partitioned without Secure)', true);
  if (sameSite === 'none' && c.secure === false) fail('cookie.sameSite', 'used with secure cookies when "none" (browsers reject SameSite=None without Secure)', sameSite);
  const cookie: ResolvedOptions['cookie'] = { name, path, httpOnly, sameSite: sameSite as ResolvedOptions['cookie']['sameSite'] };
  if (c.maxAge !== undefined) cookie.maxAge = c.maxAge as number;
  if (c.expires !== undefined) cookie.expires = c.expires as Date;
  if (c.domain !== undefined) cookie.domain = c.domain as string;
  if (c.secure !== undefined) cookie.secure = c.secure as boolean;
  if (c.priority !== undefined) cookie.priority = c.priority as 'low' | 'medium' | 'high';
  if (partitioned) cookie.partitioned = true;
  return cookie;
}

/** Validate options and apply defaults. Throws a TypeError naming the first bad option. */
export function resolveOptions(input: SessionOptions = {}): ResolvedOptions {
  if (input === null || typeof input !== 'object' || Array.isArray(input)) fail('options', 'an object', input);
  const o = input as Record<string, unknown>;
  for (const key of Object.keys(o)) {
    if (!OPTION_NAMES.has(key)) {
      throw new TypeError(`koaRedisSession: unknown option "${key}" (known: ${[...OPTION_NAMES].join(', ')})`);
    }
  }

  const redis = o.redis;
  if (redis !== undefined && typeof redis !== 'string' && (redis === null || typeof redis !== 'object')) {
    fail('redis', 'an ioredis Redis or Cluster instance, a redis:// URL or ioredis options', redis);
  }
  if (typeof redis === 'string' && !/^rediss?:\/\//.test(redis)) fail('redis', 'a redis:// or rediss:// URL', redis);

  const keys = o.keys === undefined ? undefined : toKeyRing(o.keys, 'koaRedisSession: option "keys"');

  const prefix = o.prefix ?? 'sess:';
  if (typeof prefix !== 'string') fail('prefix', 'a string', prefix);
  const contextKey = o.contextKey ?? 'session';
  if (typeof contextKey !== 'string' || contextKey === '') fail('contextKey', 'a non-empty string', contextKey);

  const timeout = o.timeout === undefined ? 1200 : seconds(o.timeout, 'timeout', true);
  const timeoutTrigger = o.timeoutTrigger === undefined ? null : seconds(o.timeoutTrigger, 'timeoutTrigger', false);
  if (timeoutTrigger !== null) {
    if (timeout === null) fail('timeoutTrigger', 'null when timeout is 0/null (a session that never expires has nothing to refresh)', timeoutTrigger);
    if (timeoutTrigger >= timeout) fail('timeoutTrigger', `less than timeout (${timeout})`, timeoutTrigger);
  }

  const absoluteTimeout = o.absoluteTimeout === undefined ? null : seconds(o.absoluteTimeout, 'absoluteTimeout', false);
  const rolling = o.rolling === undefined ? null : bool(o, 'rolling', false);

  const serializer = (o.serializer ?? sessionSerializer) as Serializer;
  if (serializer === null || typeof serializer !== 'object' || typeof serializer.stringify !== 'function' || typeof serializer.parse !== 'function') {
    fail('serializer', 'an object with stringify(value) and parse(text) functions', serializer);
  }
  if (serializer.check !== undefined && typeof serializer.check !== 'function') fail('serializer.check', 'a function or absent', serializer.check);

  const genId = func<() => string>(o, 'genId');

  const maxSize = o.maxSize ?? 65536;
  if (typeof maxSize !== 'number' || !Number.isInteger(maxSize) || maxSize <= 0) fail('maxSize', 'a whole number of bytes above 0', maxSize);
  const onRedisError = o.onRedisError ?? 'throw';
  if (onRedisError !== 'throw' && onRedisError !== 'continue') fail('onRedisError', '"throw" or "continue"', onRedisError);
  const commandTimeout = o.commandTimeout ?? 1000;
  if (typeof commandTimeout !== 'number' || !Number.isInteger(commandTimeout) || commandTimeout <= 0 || commandTimeout > 2 ** 31 - 1) {
    fail('commandTimeout', 'a whole number of milliseconds above 0', commandTimeout);
  }
  const debug = o.debug;
  if (debug !== undefined && typeof debug !== 'boolean' && typeof debug !== 'function') fail('debug', 'a boolean or a function', debug);
  const traceHeader = bool(o, 'traceHeader', false);
  if (traceHeader && process.env.NODE_ENV === 'production') {
    fail('traceHeader', 'off when NODE_ENV is production (the header shows session internals)', true);
  }

  return {
    redis: redis as SessionOptions['redis'],
    keys,
    prefix,
    contextKey,
    timeout,
    timeoutTrigger,
    absoluteTimeout,
    rolling,
    setRedisTtl: bool(o, 'setRedisTtl', true),
    detectChanges: bool(o, 'detectChanges', true),
    deserializedFailsNew: bool(o, 'deserializedFailsNew', false),
    invalidateEmptySession: bool(o, 'invalidateEmptySession', true),
    cookie: resolveCookie(o.cookie),
    cookieOnException: bool(o, 'cookieOnException', true),
    allowCookies: func(o, 'allowCookies'),
    onInvalid: func(o, 'onInvalid'),
    serializer,
    genId: genId ?? defaultGenId,
    idPattern: genId ? CUSTOM_ID_PATTERN : DEFAULT_ID_PATTERN,
    maxSize,
    onRedisError,
    commandTimeout,
    debug: debug as ResolvedOptions['debug'],
    traceHeader,
  };
}
