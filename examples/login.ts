/**
 * Login and logout, done the safe way (README "`ctx.session`" and csrfProtect below it):
 *   npm start            # then open the URL it prints; sign in as ada / lovelace
 *
 * - State changes only by POST forms; a GET never signs anyone in or out.
 * - Every form carries the session's CSRF token in a hidden `_csrf` field; csrfProtect(), mounted
 *   after the session and the body parser, answers 403 to a POST without it.
 * - regenerate() at login (a new id: no session fixation); invalidate() at logout.
 * - "Remember me" is rememberFor(30 days): the session lasts 30 idle days in a 30-day cookie; without
 *   it the cookie ends with the browser and the session after 20 idle minutes (the `timeout` default).
 * - "Your sessions" (README, "A user's sessions"): with `userKey: 'user'` every session holding a
 *   signed-in user is indexed under that user, with what `sessionInfo` noted at login (the browser's
 *   user agent and IP). The page lists them, marks this device by `ctx.session.handle`, and ends any
 *   other one (`revoke`), or all the others (`revokeAll` except this one): their next request finds
 *   no session.
 * - Every value written into the page is HTML-escaped.
 */
import { randomBytes, scryptSync, timingSafeEqual } from 'node:crypto';
import Koa from 'koa';
import { bodyParser } from '@koa/bodyparser';
import { Redis } from 'ioredis';
import { csrfProtect, koaRedisSession, type SessionListing, type SessionMiddleware } from 'koa-session-machine';
import { escapeHtml } from './support/html.js';
import { isMain, listen } from './support/main.js';
import { redisForExample } from './support/redis.js';

export const REMEMBER_SECONDS = 30 * 24 * 3600;

// Demo accounts. A real app keeps a salted slow hash per user (scrypt, argon2, bcrypt) in its database.
const hash = (password: string, salt: Buffer) => scryptSync(password, salt, 32);
const USERS = new Map(
  Object.entries({ ada: 'lovelace', grace: 'hopper' }).map(([name, password]) => {
    const salt = randomBytes(16);
    return [name, { salt, hash: hash(password, salt) }] as const;
  }),
);
const NOBODY = { salt: randomBytes(16), hash: Buffer.alloc(32) };

function passwordOk(name: string, password: string): boolean {
  const user = USERS.get(name);
  // An unknown name costs the same hash: the answer's timing does not tell who has an account.
  const ok = timingSafeEqual(hash(password, (user ?? NOBODY).salt), (user ?? NOBODY).hash);
  return user !== undefined && ok;
}

function page(ctx: Koa.Context, body: string, status = 200): void {
  ctx.status = status;
  ctx.type = 'html';
  ctx.set('Cache-Control', 'no-store');
  ctx.set('Content-Security-Policy', "default-src 'none'; form-action 'self'; frame-ancestors 'none'");
  ctx.body = `<!doctype html>\n<meta charset="utf-8">\n<title>koa-session-machine: login example</title>\n${body}\n`;
}

/** A POST form with the session's CSRF token in the hidden `_csrf` field csrfProtect() reads. */
function form(ctx: Koa.Context, action: string, fields: string, button: string): string {
  return `<form method="post" action="${action}">
<input type="hidden" name="_csrf" value="${escapeHtml(ctx.session.getCsrfToken())}">
${fields}<button>${button}</button>
</form>`;
}

function loginPage(ctx: Koa.Context, name = '', error = ''): string {
  return `<h1>Sign in</h1>
${error ? `<p role="alert">${escapeHtml(error)}</p>\n` : ''}${form(
  ctx,
  '/login',
  `<p><label>Name <input name="name" value="${escapeHtml(name)}" autocomplete="username" required></label></p>
<p><label>Password <input name="password" type="password" autocomplete="current-password" required></label></p>
<p><label><input type="checkbox" name="remember" value="1"> Remember me for 30 days</label></p>
`,
  'Sign in',
)}
<p>Demo accounts: ada / lovelace, grace / hopper.</p>`;
}

/** An epoch-seconds time (what `sessions.list()` gives) as UTC text; null is "never". */
function when(seconds: number | null): string {
  if (seconds === null) return 'never';
  const iso = new Date(seconds * 1000).toISOString();
  return `<time datetime="${iso}">${iso.slice(0, 16).replace('T', ' ')} UTC</time>`;
}

/** The "Your sessions" page: one row per session of the user, this one marked, the others each with
 *  a "Revoke" form; "Log out everywhere else" when there are others. */
function sessionsPage(ctx: Koa.Context, user: string, sessions: SessionListing[]): string {
  const rows = sessions.map((s) => {
    const agent = typeof s.info?.agent === 'string' && s.info.agent ? s.info.agent : 'unknown browser';
    const ip = typeof s.info?.ip === 'string' ? s.info.ip : '';
    const action =
      s.handle === ctx.session.handle
        ? '<b>This device</b>'
        : form(
            ctx,
            '/sessions/revoke',
            `<input type="hidden" name="handle" value="${escapeHtml(s.handle)}">\n`,
            'Revoke',
          );
    return `<tr>
<td>${escapeHtml(agent)}</td><td>${escapeHtml(ip)}</td>
<td>${when(s.created)}</td><td>${when(s.lastActive)}</td><td>${when(s.expires)}</td>
<td>${action}</td>
</tr>`;
  });
  const others = sessions.some((s) => s.handle !== ctx.session.handle);
  return `<h1>Your sessions</h1>
<p>Signed in as <b>${escapeHtml(user)}</b>. <a href="/">Home</a></p>
<table>
<thead><tr><th>Browser</th><th>IP</th><th>Signed in</th><th>Last active</th><th>Expires</th><th></th></tr></thead>
<tbody>
${rows.join('\n')}
</tbody>
</table>
${others ? form(ctx, '/sessions/revoke-others', '', 'Log out everywhere else') : ''}`;
}

function field(body: unknown, name: string): string {
  const value = body !== null && typeof body === 'object' ? (body as Record<string, unknown>)[name] : undefined;
  return typeof value === 'string' ? value : '';
}

const ALLOWED = new Map([
  ['/', 'GET, HEAD'],
  ['/login', 'GET, HEAD, POST'],
  ['/logout', 'POST'],
  ['/sessions', 'GET, HEAD'],
  ['/sessions/revoke', 'POST'],
  ['/sessions/revoke-others', 'POST'],
]);

export function createApp(redisUrl: string): { app: Koa; session: SessionMiddleware } {
  const app = new Koa();
  // Signing keys, newest first; in production they come from your secret store, never the source.
  // Behind a TLS-terminating proxy, set app.proxy = true: the cookie then gets `Secure`.
  app.keys = ['newest-secret', 'older-secret'];
  const session = koaRedisSession({
    redis: new Redis(redisUrl),
    // A prefix of its own: on a Redis you already use, the example's keys never mix with yours.
    prefix: 'example:sess:',
    // The data key that names the signed-in user: sessions holding it are listed per user.
    userKey: 'user',
    // Noted at login, shown on "Your sessions". Behind a proxy, set app.proxy = true for the client's IP.
    sessionInfo: (ctx) => ({ agent: ctx.get('User-Agent'), ip: ctx.ip }),
  });
  app.use(session);
  app.use(bodyParser({ enableTypes: ['form'] }));
  app.use(csrfProtect()); // after the session and the body parser: it reads ctx.request.body._csrf

  app.use(async (ctx) => {
    const method = ctx.method === 'HEAD' ? 'GET' : ctx.method; // Koa sends no body for HEAD
    switch (`${method} ${ctx.path}`) {
      case 'GET /': {
        const user = ctx.session.user as string | undefined; // no cookie: nothing is loaded or stored
        if (!user) return page(ctx, '<p>Not signed in. <a href="/login">Sign in</a></p>');
        const until =
          ctx.session.timeout === REMEMBER_SECONDS ? 'remembered for 30 days' : 'until you close the browser';
        return page(
          ctx,
          `<p>Signed in as <b>${escapeHtml(user)}</b>, ${until}.</p>
<p><a href="/sessions">Your sessions</a></p>
${form(ctx, '/logout', '', 'Sign out')}`,
        );
      }
      case 'GET /sessions': {
        const user = ctx.session.user as string | undefined;
        if (!user) return ctx.redirect('/login');
        const sessions = await session.sessions.list(user); // one command, on the user's index
        sessions.sort((a, b) => b.created - a.created); // the newest first
        return page(ctx, sessionsPage(ctx, user, sessions));
      }
      case 'POST /sessions/revoke': {
        // The signed-in user's own index only: the handle of anyone else's session ends nothing.
        const user = ctx.session.user as string | undefined;
        const handle = field(ctx.request.body, 'handle');
        if (user && handle) await session.sessions.revoke(user, handle);
        ctx.status = 303;
        return ctx.redirect('/sessions');
      }
      case 'POST /sessions/revoke-others': {
        const user = ctx.session.user as string | undefined;
        if (user) await session.sessions.revokeAll(user, { except: ctx.session.handle });
        ctx.status = 303;
        return ctx.redirect('/sessions');
      }
      case 'GET /login':
        return page(ctx, loginPage(ctx)); // creates the session that the form's token belongs to
      case 'POST /login': {
        const name = field(ctx.request.body, 'name');
        if (!passwordOk(name, field(ctx.request.body, 'password'))) {
          return page(ctx, loginPage(ctx, name, 'Unknown name or wrong password.'), 401);
        }
        ctx.session.regenerate();
        ctx.session.user = name;
        if (field(ctx.request.body, 'remember') === '1') ctx.session.rememberFor(REMEMBER_SECONDS);
        ctx.status = 303; // post/redirect/get: a reload does not post the form again
        return ctx.redirect('/');
      }
      case 'POST /logout':
        ctx.session.invalidate();
        ctx.status = 303;
        return ctx.redirect('/');
    }
    const allowed = ALLOWED.get(ctx.path);
    if (allowed) {
      ctx.status = 405; // e.g. GET /logout: a link or an <img> must not sign anyone out
      ctx.set('Allow', allowed);
    }
  });
  return { app, session };
}

if (isMain(import.meta.url)) listen(createApp((await redisForExample()).url).app, 'login example');
