/**
 * What the handler sees as `ctx.session`: a Proxy over the request's `SessionState` (src/session.ts).
 * Data keys read and write the state's data; the reserved names are the members (README,
 * "`ctx.session`"). The traps are the only place that decides what a key may be: a name Redis could
 * not keep apart, `__proto__`, a `constructor` holding a `prototype`, a member's name.
 */
import type { SessionState } from './session.js';

/** Member names reserved on `ctx.session` (README, "`ctx.session`"): assigning data to one throws a TypeError. */
export const RESERVED_MEMBERS: ReadonlySet<string> = new Set([
  'id',
  'isNew',
  'created',
  'timeout',
  'invalidate',
  'regenerate',
  'changed',
  'flash',
  'peekFlash',
  'popFlash',
  'newCsrfToken',
  'getCsrfToken',
  'adjustTimeout',
  'adjustCookieMaxAge',
  'recookie',
  'rememberFor',
  'maxAge',
  'populated',
  'save',
  'handle',
]);

/** Gives `csrfProtect()` the state behind a `ctx.session` Proxy; not reachable from data. */
export const STATE = Symbol('koa-session-machine state');

/** A lone UTF-16 surrogate: field names are stored as UTF-8, where it becomes U+FFFD, so two such
 *  keys would overwrite each other. */
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** A name that becomes a field of the stored session (a data key, a flash queue) must be well-formed. */
export function checkName(name: string, what: string): void {
  if (LONE_SURROGATE.test(name))
    throw new TypeError(
      `${what} ${JSON.stringify(name)} is not well-formed Unicode (a lone surrogate); it cannot be stored`,
    );
}

function setData(state: SessionState, key: string | symbol, value: unknown): void {
  checkKey(key, value);
  state.write(key as string, value);
}

/** Refuse a key that cannot hold data (with the value it would hold). */
export function checkKey(key: string | symbol, value: unknown): void {
  if (typeof key !== 'string') throw new TypeError('ctx.session keys must be strings');
  if (key === '__proto__')
    throw new TypeError('ctx.session.__proto__ cannot hold data: the key "__proto__" is reserved by JavaScript');
  checkName(key, 'ctx.session key');
  if (key === 'constructor' && value !== null && typeof value === 'object' && Object.hasOwn(value, 'prototype')) {
    // Refused at the top as at every depth: `{ ...ctx.session }` would carry it as a gadget.
    throw new TypeError(
      'ctx.session.constructor cannot be stored in the session: ' +
        'a "constructor" key holding a "prototype" is refused (decoding drops it)',
    );
  }
  if (RESERVED_MEMBERS.has(key)) {
    throw new TypeError(`ctx.session.${key} is a reserved member and cannot hold data; choose another key`);
  }
}

/** Value getters of the members; the rest are bound functions. */
const VALUE_MEMBERS: ReadonlyMap<string, (s: SessionState) => unknown> = new Map<string, (s: SessionState) => unknown>([
  ['id', (s) => s.id],
  ['isNew', (s) => s.isNew],
  ['created', (s) => s.created],
  ['timeout', (s) => s.timeout],
  ['maxAge', (s) => s.maxAge],
  ['populated', (s) => s.populated()],
  ['handle', (s) => s.handle],
]);

/** One handler shared by every session: traps read the state from their target. */
export const sessionHandler: ProxyHandler<SessionState> = {
  get(state, key) {
    if (typeof key !== 'string') return key === STATE ? state : undefined;
    if (RESERVED_MEMBERS.has(key)) {
      const value = VALUE_MEMBERS.get(key);
      return value ? value(state) : state.member(key);
    }
    return state.read(key);
  },
  set(state, key, value) {
    if (key === 'maxAge')
      state.maxAge = value; // koa-session's idiom: `ctx.session.maxAge = ms`
    else setData(state, key, value);
    return true;
  },
  deleteProperty(state, key) {
    if (typeof key === 'string' && RESERVED_MEMBERS.has(key)) {
      throw new TypeError(`ctx.session.${key} is a reserved member and cannot be deleted`);
    }
    if (typeof key === 'string') state.remove(key);
    return true;
  },
  has(state, key) {
    return typeof key === 'string' && (RESERVED_MEMBERS.has(key) || key in state.data);
  },
  ownKeys(state) {
    return Object.keys(state.data);
  },
  getOwnPropertyDescriptor(state, key) {
    if (typeof key !== 'string' || !(key in state.data)) return undefined;
    return { value: state.read(key), writable: true, enumerable: true, configurable: true };
  },
  defineProperty(state, key, descriptor) {
    if (!('value' in descriptor) || descriptor.get || descriptor.set) {
      throw new TypeError('ctx.session holds plain data: accessors cannot be defined on it');
    }
    setData(state, key, descriptor.value);
    return true;
  },
  setPrototypeOf() {
    throw new TypeError('ctx.session: the prototype cannot be changed');
  },
  preventExtensions() {
    throw new TypeError('ctx.session cannot be made non-extensible');
  },
};
