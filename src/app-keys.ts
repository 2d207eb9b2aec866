/**
 * The signing keys of a request: the `keys` option's, or its app's `app.keys` as they are now, read
 * on every request as Koa's own `ctx.cookies` reads them (README, "Options").
 */
import { CookieCodec, toKeyRing, type KeyRing } from './cookie.js';

interface Made {
  readonly value: unknown;
  readonly items: readonly unknown[];
  readonly codec: CookieCodec;
}

export class AppKeys {
  readonly #fixed: CookieCodec | undefined;
  /** Per app (one middleware may serve several), the codec of its `app.keys` and what it was made
   *  from, rebuilt only when that changes. */
  readonly #byApp = new WeakMap<object, Made>();

  constructor(
    readonly cookieName: string,
    keys: KeyRing | undefined,
    readonly idPattern: RegExp,
  ) {
    this.#fixed = keys ? new CookieCodec(cookieName, keys, idPattern) : undefined;
  }

  /** The codec for a request of `app`. */
  codecFor(app: { keys?: unknown }): CookieCodec {
    if (this.#fixed !== undefined) return this.#fixed;
    const value = app.keys;
    let made = this.#byApp.get(app);
    if (made === undefined || !sameKeys(made, value)) {
      made = {
        value,
        // A Buffer's bytes are kept too: the ring holds them in KeyObjects, which a change in place
        // would not reach.
        items: Array.isArray(value) ? (value as unknown[]).map((k) => (Buffer.isBuffer(k) ? Buffer.from(k) : k)) : [],
        codec: new CookieCodec(this.cookieName, resolveAppKeys(app), this.idPattern),
      };
      this.#byApp.set(app, made);
    }
    return made.codec;
  }
}

/** Whether `app.keys` still holds what the ring was made from: the same value, and for an array
 *  (which an app may change in place, e.g. `app.keys.unshift(newKey)`) the same items, a Buffer's
 *  with the same bytes (as Koa's `ctx.cookies`, through keygrip, reads them at every signature). */
function sameKeys(made: { value: unknown; items: readonly unknown[] }, value: unknown): boolean {
  if (made.value !== value) return false;
  if (!Array.isArray(value)) return true;
  if (value.length !== made.items.length) return false;
  for (let i = 0; i < value.length; i++) {
    const key = value[i];
    const was = made.items[i];
    if (key === was) continue;
    if (!Buffer.isBuffer(key) || !Buffer.isBuffer(was) || !key.equals(was)) return false;
  }
  return true;
}

/** The key ring from `app.keys`, when the option `keys` is not given. */
export function resolveAppKeys(app: { keys?: unknown }): KeyRing {
  if (app.keys === undefined || app.keys === null) {
    throw new TypeError('koaRedisSession: no signing keys; set option "keys" or app.keys (newest key first)');
  }
  return toKeyRing(app.keys, 'koaRedisSession: option "keys" (from app.keys)');
}
