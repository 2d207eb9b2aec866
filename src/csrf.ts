/**
 * `csrfProtect()`: reject unsafe requests that do not carry the session's CSRF token
 * (`ctx.session.getCsrfToken()`), sent in a header or a form field. Mount it after the session
 * middleware (and after a body parser, for the form field).
 */
import type { Context, Middleware, Next } from 'koa';
import { STATE, type SessionState } from './session.js';

export interface CsrfOptions {
  /** Request header that carries the token. @default 'x-csrf-token' */
  header?: string;
  /** Form field that carries the token (read from `ctx.request.body`, as body parsers set it). @default '_csrf' */
  field?: string;
  /** The ctx property of the session. @default 'session' */
  contextKey?: string;
  /** Methods that are never checked. @default GET, HEAD, OPTIONS, TRACE */
  safeMethods?: readonly string[];
}

/** The token the request carries: the header first, then the form field. */
function sentToken(ctx: Context, header: string, field: string): string | undefined {
  const fromHeader = ctx.get(header);
  if (fromHeader) return fromHeader;
  const body = (ctx.request as { body?: unknown }).body;
  if (body !== null && typeof body === 'object') {
    const value = (body as Record<string, unknown>)[field];
    if (typeof value === 'string') return value;
  }
  return undefined;
}

/** A middleware that answers 403 to an unsafe request without the session's CSRF token. */
export function csrfProtect(options: CsrfOptions = {}): Middleware {
  const header = options.header ?? 'x-csrf-token';
  const field = options.field ?? '_csrf';
  const contextKey = options.contextKey ?? 'session';
  const safe = new Set((options.safeMethods ?? ['GET', 'HEAD', 'OPTIONS', 'TRACE']).map((m) => m.toUpperCase()));
  return async function csrfProtect(ctx: Context, next: Next): Promise<void> {
    if (!safe.has(ctx.method)) {
      const session = (ctx as unknown as Record<string, Record<symbol, SessionState> | undefined>)[contextKey];
      const state = session?.[STATE];
      if (!state) throw new TypeError(`csrfProtect: no ctx.${contextKey}; mount csrfProtect() after koaRedisSession()`);
      // Checked against the key ring's HMAC of the loaded id and salt, compared in constant time.
      const sent = sentToken(ctx, header, field);
      if (sent === undefined || !state.csrfValid(sent)) {
        ctx.throw(403, 'invalid or missing CSRF token');
      }
    }
    await next();
  };
}
