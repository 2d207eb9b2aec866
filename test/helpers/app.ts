/**
 * Koa apps for the tests, on Koa 3 or Koa 2, and small factories for what a response must show
 * (cookies style: `expectCookieSet(res)`).
 */
import assert from 'node:assert/strict';
import Koa3 from 'koa';
import Koa2 from 'koa2';
import type { Context, Middleware } from 'koa';
import request, { type Response } from 'supertest';
import { koaRedisSession, type SessionMiddleware, type SessionOptions } from '../../src/index.js';
import { closeable } from './cleanup.js';

export const KEYS = ['newest-secret', 'older-secret'];

export type KoaVersion = 2 | 3;
export const KOA_VERSIONS: readonly KoaVersion[] = [3, 2];

export interface TestApp {
  readonly session: SessionMiddleware;
  /** GET a path with an optional Cookie header. */
  get(path: string, cookie?: string): Promise<Response>;
  /** Wait until the middleware's Redis client is connected, so its handshake is not captured. */
  ready(): Promise<void>;
  /** Close the middleware's client; the after hooks close any app a failed test left open. */
  close(): Promise<void>;
}

/** An app whose every request runs `handler` behind the session middleware. */
export function makeApp(
  version: KoaVersion,
  options: SessionOptions,
  handler: (ctx: Context) => unknown | Promise<unknown>,
  before?: Middleware,
): TestApp {
  const app = version === 3 ? new Koa3() : (new Koa2() as unknown as Koa3);
  app.keys = KEYS;
  app.silent = true;
  if (before) app.use(before);
  const session = koaRedisSession(options);
  app.use(session);
  app.use(async (ctx) => {
    const body = await handler(ctx);
    if (body !== undefined) ctx.body = body;
    else if (ctx.body === undefined) ctx.body = 'ok';
  });
  const callback = app.callback();
  return {
    session,
    get: (path, cookie) => {
      const req = request(callback).get(path);
      return cookie ? req.set('Cookie', cookie) : req;
    },
    ready: async () => {
      await session.redis.ping();
    },
    close: closeable(() => session.close()),
  };
}

/** A middleware for in front of the session: it keeps the error the request failed with in
 *  `into.error` and lets it go on to Koa, which answers it. */
export function catchError(into: { error?: unknown }): Middleware {
  return async (_ctx, next) => {
    try {
      await next();
    } catch (err) {
      into.error = err;
      throw err;
    }
  };
}

export interface SetCookie {
  name: string;
  value: string;
  attributes: Record<string, string | true>;
  raw: string;
}

export function setCookies(res: Response): SetCookie[] {
  const header = res.headers['set-cookie'] as string[] | string | undefined;
  const list = header === undefined ? [] : Array.isArray(header) ? header : [header];
  return list.map((raw) => {
    const [pair = '', ...attrs] = raw.split(/;\s*/);
    const eq = pair.indexOf('=');
    const attributes: Record<string, string | true> = {};
    for (const a of attrs) {
      const i = a.indexOf('=');
      attributes[(i < 0 ? a : a.slice(0, i)).toLowerCase()] = i < 0 ? true : a.slice(i + 1);
    }
    return { name: pair.slice(0, eq), value: pair.slice(eq + 1), attributes, raw };
  });
}

/** The one session cookie the response set (not a clear), as a Cookie header value. */
export function expectCookieSet(res: Response, name = 'session'): { cookie: string; id: string } {
  const cookies = setCookies(res).filter((c) => c.name === name);
  assert.equal(
    cookies.length,
    1,
    `expected one Set-Cookie for ${name}, got ${JSON.stringify(res.headers['set-cookie'])}`,
  );
  const c = cookies[0] as SetCookie;
  assert.notEqual(c.value, '', 'expected the cookie to be set, not cleared');
  assert.match(String(res.headers.vary ?? ''), /cookie/i, 'a set cookie must come with Vary: Cookie');
  return { cookie: `${name}=${c.value}`, id: c.value.slice(0, c.value.lastIndexOf('.')) };
}

/** The response cleared the session cookie. */
export function expectCookieCleared(res: Response, name = 'session'): SetCookie {
  const cookies = setCookies(res).filter((c) => c.name === name);
  assert.equal(
    cookies.length,
    1,
    `expected one Set-Cookie for ${name}, got ${JSON.stringify(res.headers['set-cookie'])}`,
  );
  const c = cookies[0] as SetCookie;
  assert.equal(c.value, '', 'expected the cookie to be cleared');
  assert.match(String(c.attributes.expires), /1970/);
  return c;
}

/** The response carries no Set-Cookie at all. */
export function expectNoCookie(res: Response): void {
  assert.equal(
    res.headers['set-cookie'],
    undefined,
    `expected no Set-Cookie, got ${JSON.stringify(res.headers['set-cookie'])}`,
  );
}
