/**
 * `ctx.session` (or the `contextKey` option's name): a property defined once on each app's context
 * prototype, reading the request's state from a private symbol (README, "`ctx.session`").
 */
import type { Context } from 'koa';
import type { SessionState } from './session.js';

/**
 * A function that defines the property on a request's context prototype the first time it sees that
 * prototype: a getter that makes the session's Proxy on first use, and a setter for koa-session's
 * idioms (`= null` invalidates, `= {...}` replaces the data).
 */
export function sessionProperty(contextKey: string, stateKey: symbol): (ctx: Context) => void {
  const prototypes = new WeakSet<object>();
  return (ctx) => {
    const proto = Object.getPrototypeOf(ctx) as object;
    if (prototypes.has(proto)) return;
    prototypes.add(proto);
    Object.defineProperty(proto, contextKey, {
      configurable: true,
      enumerable: false,
      get(this: Record<symbol, SessionState | undefined>) {
        return this[stateKey]?.proxy;
      },
      set(this: Record<symbol, SessionState | undefined>, value: unknown) {
        const state = this[stateKey];
        if (!state) throw new TypeError(`ctx.${contextKey} can only be set after the session middleware ran`);
        if (value === null || value === undefined) state.invalidate();
        else if (typeof value === 'object' && !Array.isArray(value)) state.replace(value as Record<string, unknown>);
        else
          throw new TypeError(`ctx.${contextKey} can be set to null (invalidate) or a plain object (replace the data)`);
      },
    });
  };
}
