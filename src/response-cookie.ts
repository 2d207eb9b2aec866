/**
 * Writing the session cookie on a response: set (the signed id), clear, and carry both through an
 * error response. Which of them a response gets is the machine's decision; this module only does it.
 */
import type { Context } from 'koa';
import type { CookieCodec } from './cookie.js';
import type { ResolvedOptions } from './options.js';

export class ResponseCookie {
  readonly name: string;
  readonly #secure: boolean | undefined;
  readonly #set: ReadonlyArray<Readonly<Record<string, unknown>>>;
  readonly #clear: ReadonlyArray<Readonly<Record<string, unknown>>>;

  constructor(cookie: ResolvedOptions['cookie']) {
    this.name = cookie.name;
    this.#secure = cookie.secure;
    // Attributes are made once, for a plain-HTTP and an HTTPS request (`secure` follows the request
    // unless the option fixes it); `cookies` copies them into each Cookie it makes.
    this.#set = [false, true].map((secure) =>
      Object.freeze({ ...cookie, secure: cookie.secure ?? secure, signed: false, overwrite: true }),
    );
    this.#clear = [false, true].map((secure) =>
      Object.freeze({
        path: cookie.path,
        domain: cookie.domain,
        secure: cookie.secure ?? secure,
        httpOnly: cookie.httpOnly,
        sameSite: cookie.sameSite,
        partitioned: cookie.partitioned,
        signed: false,
        overwrite: true,
      }),
    );
  }

  #index(ctx: Context): number {
    return (this.#secure ?? ctx.secure) ? 1 : 0;
  }

  /** Koa's cookies refuse a Secure cookie on a plain-HTTP request (`cookie.secure` set, no TLS and no
   *  `app.proxy`): the machine's `insecureCookie` veto. */
  secureOk(ctx: Context): boolean {
    return this.#secure !== true || ctx.cookies.secure;
  }

  /** Send the signed id. `lifetime`: the session's own cookie lifetime in ms (null: a browser-session
   *  cookie; undefined: the options'). `deadline`: the session's absolute timeout, epoch seconds, or
   *  null: a persistent cookie never outlives it (README, "Cookie lifetimes"). */
  set(
    ctx: Context,
    codec: CookieCodec,
    id: string,
    lifetime: number | null | undefined,
    deadline: number | null,
  ): void {
    let attributes = this.#set[this.#index(ctx)] as Record<string, unknown>;
    if (lifetime !== undefined || deadline !== null) {
      const { expires, maxAge, ...rest } = attributes;
      let ms: number | null =
        lifetime !== undefined
          ? lifetime
          : typeof maxAge === 'number'
            ? maxAge
            : expires instanceof Date
              ? expires.getTime() - Date.now()
              : null;
      if (ms !== null && deadline !== null) ms = Math.min(ms, deadline * 1000 - Date.now());
      // Past the deadline already (a request that crossed it): a cookie that has expired, not a
      // browser-session one (`cookies` drops a zero maxAge).
      attributes = ms === null ? rest : ms < 1000 ? { ...rest, expires: new Date(0) } : { ...rest, maxAge: ms };
    }
    ctx.cookies.set(this.name, codec.encode(id), attributes);
    ctx.vary('Cookie');
  }

  clear(ctx: Context): void {
    ctx.cookies.set(this.name, '', this.#clear[this.#index(ctx)]);
  }

  /** Copy our cookie headers onto an error, so Koa's `ctx.onerror` (which removes every header
   *  before answering) still sends them: what `cookieOnException` promises. */
  carry(ctx: Context, err: unknown): void {
    if (err === null || typeof err !== 'object') return;
    const header = ctx.response.get('Set-Cookie') as string | string[] | undefined;
    if (!header) return;
    const ours = (Array.isArray(header) ? header : [header]).filter((h) => h.startsWith(`${this.name}=`));
    if (ours.length === 0) return;
    const e = err as { headers?: Record<string, unknown> };
    // Keep the error's own cookies (an app may set one on an error: `ctx.throw(401, { headers })`),
    // whatever the case of its header name; ours replace only an earlier copy of ours.
    const headers: Record<string, unknown> = {};
    const theirs: string[] = [];
    let vary = '';
    for (const [name, value] of Object.entries(e.headers ?? {})) {
      const lower = name.toLowerCase();
      if (lower === 'vary') vary = String(value);
      else if (lower !== 'set-cookie') headers[name] = value;
      else
        for (const c of Array.isArray(value) ? value : [value])
          if (!String(c).startsWith(`${this.name}=`)) theirs.push(String(c));
    }
    headers['Set-Cookie'] = [...theirs, ...ours];
    if (ours.some((h) => !h.startsWith(`${this.name}=;`)) && !/(^|,)\s*(cookie|\*)\s*(,|$)/i.test(vary))
      vary = vary ? `${vary}, Cookie` : 'Cookie';
    if (vary) headers.Vary = vary;
    e.headers = headers;
  }
}
