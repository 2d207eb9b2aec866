/**
 * Type tests of the published declarations with a declared SessionData: compiled by `npm test`
 * (tsc -p test/types/strict). Each `@ts-expect-error` line must fail to compile, each `expectType`
 * must hold exactly.
 */
import Koa, { type Middleware, type ParameterizedContext } from 'koa';
import {
  csrfProtect,
  koaRedisSession,
  type InvalidSessionError,
  type Session,
  type SessionListing,
  type SessionMiddleware,
  type SessionOptions,
  type UserSessions,
} from 'koa-session-machine';

declare module 'koa-session-machine' {
  interface SessionData {
    views: number;
    user: { name: string; roles: string[] };
    seen: Set<string>;
  }
}

type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
/** Compiles only when the value's type is exactly T: not a narrower type (a subtype, `never`) and
 *  not `any`, which a plain `(value: T)` parameter would accept. Use: `expectType<T>()(value)`. */
function expectType<T>() {
  return <U>(value: U, ..._exactly: Equal<T, U> extends true ? [] : ['the type is not exactly T']): U => value;
}
function expectTrue<T extends true>(_: T): void {}

const app = new Koa();
const mw: SessionMiddleware = koaRedisSession({ timeout: 600 });
app.use(mw);
app.use(csrfProtect({ header: 'x-token' }));

app.use((ctx) => {
  // data: declared keys with their types, optional because a session may not hold them yet
  expectTrue<Equal<typeof ctx.session.views, number | undefined>>(true);
  expectTrue<Equal<typeof ctx.session.user, { name: string; roles: string[] } | undefined>>(true);
  ctx.session.views = (ctx.session.views ?? 0) + 1;
  ctx.session.user = { name: 'ada', roles: [] };
  ctx.session.seen = new Set(['/']);
  delete ctx.session.user;
  // @ts-expect-error a wrong value type
  ctx.session.views = 'one';
  // @ts-expect-error a wrong nested value type
  ctx.session.user = { name: 42, roles: [] };
  // @ts-expect-error a key that SessionData does not declare
  ctx.session.viewz = 1;
  // @ts-expect-error reading an undeclared key
  void ctx.session.nothing;

  // members: typed and read-only
  expectType<string | null>()(ctx.session.id);
  expectType<boolean>()(ctx.session.isNew);
  expectType<number>()(ctx.session.created);
  expectType<number | null>()(ctx.session.timeout);
  expectType<string | null>()(ctx.session.handle);
  expectType<void>()(ctx.session.invalidate());
  expectType<void>()(ctx.session.regenerate());
  expectType<void>()(ctx.session.changed());
  expectType<void>()(ctx.session.recookie());
  expectType<void>()(ctx.session.flash('saved'));
  expectType<void>()(ctx.session.flash({ text: 'x' }, 'errors', false));
  expectType<unknown[]>()(ctx.session.peekFlash('errors'));
  expectType<unknown[]>()(ctx.session.popFlash());
  expectType<string>()(ctx.session.newCsrfToken());
  expectType<string>()(ctx.session.getCsrfToken());
  expectType<void>()(ctx.session.adjustTimeout(3600));
  expectType<void>()(ctx.session.adjustTimeout(null));
  expectType<void>()(ctx.session.adjustCookieMaxAge(86_400_000));
  expectType<void>()(ctx.session.rememberFor(30 * 86_400));
  expectType<void>()(ctx.session.save());
  expectType<boolean>()(ctx.session.populated);
  expectType<number | 'session' | undefined>()(ctx.session.maxAge);
  ctx.session.maxAge = 86_400_000; // koa-session's idiom: the session's cookie lifetime
  ctx.session.maxAge = 'session';
  // @ts-expect-error maxAge is milliseconds or 'session'
  ctx.session.maxAge = '1 day';
  // @ts-expect-error populated is read-only
  ctx.session.populated = true;
  // @ts-expect-error id is read-only
  ctx.session.id = 'mine';
  // @ts-expect-error isNew is read-only
  ctx.session.isNew = false;
  // @ts-expect-error handle is read-only
  ctx.session.handle = 'mine';
  // @ts-expect-error a member cannot be replaced
  ctx.session.invalidate = () => undefined;
  // @ts-expect-error flash queue names are strings
  ctx.session.flash('x', 1);
  // @ts-expect-error adjustTimeout takes seconds
  ctx.session.adjustTimeout('1h');
  // @ts-expect-error adjustCookieMaxAge takes milliseconds
  ctx.session.adjustCookieMaxAge(new Date());
});

// a middleware typed with Koa's own types sees the same session
const typed: Middleware = async (ctx, next) => {
  expectTrue<Equal<typeof ctx.session, Session>>(true);
  await next();
};
app.use(typed);

// an app with its own context type keeps the session (ExtendableContext augmentation)
interface AppContext {
  requestId: string;
}
const custom = new Koa<Koa.DefaultState, AppContext>();
custom.use((ctx: ParameterizedContext<Koa.DefaultState, AppContext>) => {
  expectType<string>()(ctx.requestId);
  expectType<number | undefined>()(ctx.session.views);
});

// a user's sessions (option userKey): middleware.sessions
expectType<UserSessions>()(mw.sessions);
void (async () => {
  const listed = await mw.sessions.list(42);
  expectType<SessionListing[]>()(listed);
  const one = listed[0] as SessionListing;
  expectType<string>()(one.handle);
  expectType<number>()(one.created);
  expectType<number | null>()(one.lastActive);
  expectType<number | null>()(one.expires);
  expectType<Record<string, unknown> | null>()(one.info);
  expectType<number>()(await mw.sessions.revoke(42, one.handle));
  expectType<number>()(await mw.sessions.revokeAll(42, { except: null }));
  expectType<number>()(await mw.sessions.revokeAll('ada'));
  // @ts-expect-error a handle is a string
  await mw.sessions.revoke(42, 1);
  // @ts-expect-error a listing is read-only
  one.handle = 'other';
})();
// @ts-expect-error the middleware's sessions are not replaced
mw.sessions = { ...mw.sessions };

// options
const options: SessionOptions = {
  timeout: null,
  timeoutTrigger: null,
  cookie: { sameSite: 'strict', maxAge: 60_000, priority: 'high' },
  onInvalid: (ctx, err) => {
    expectType<InvalidSessionError>()(err);
    expectType<string>()(ctx.path);
  },
  allowCookies: (ctx) => !ctx.response.get('Cache-Control'),
  genId: () => 'id',
  userKey: 'userId',
  sessionInfo: (ctx) => ({ agent: ctx.get('User-Agent'), ip: ctx.ip }),
  maxSize: 1024,
};
void options;
// @ts-expect-error an option that does not exist
const unknownOption: SessionOptions = { tiemout: 5 };
// @ts-expect-error cookie times are milliseconds (numbers)
const badCookie: SessionOptions = { cookie: { maxAge: '1d' } };
// @ts-expect-error sameSite values are checked
const badSameSite: SessionOptions = { cookie: { sameSite: 'loose' } };
void unknownOption;
void badCookie;
void badSameSite;
// @ts-expect-error sessionInfo describes the request with an object
const badInfo: SessionOptions = { userKey: 'userId', sessionInfo: (ctx) => ctx.ip };
void badInfo;

// the explicit generic form, for code that prefers a type parameter to declaration merging
interface Cart {
  items: string[];
}
function cartOf(session: Session<Cart>): string[] {
  expectTrue<Equal<typeof session.items, string[] | undefined>>(true);
  // @ts-expect-error Session<Cart> has no views
  void session.views;
  return session.items ?? [];
}
void cartOf;
