/**
 * `middleware.sessions`: a user's sessions, as the `userKey` option indexes them (README, "A user's
 * sessions"; docs/design.md, "A user's sessions"). Each call is one script on the user's index.
 */
import type { ResolvedOptions } from './options.js';
import type { SessionStore } from './store/commands.js';

/** A user's sessions: what the `userKey` option indexes. `userId` is the value sessions hold under
 *  `userKey` (compared as the serializer encodes it: `42` and `'42'` are two users). */
export interface UserSessions {
  /** The user's live sessions (one command). */
  list(userId: unknown): Promise<SessionListing[]>;
  /** End the user's session named `handle`: its next request gets a fresh session, and a request of
   *  it in flight cannot bring it back. Resolves to the number ended (0 or 1). */
  revoke(userId: unknown, handle: string): Promise<number>;
  /** End all the user's sessions, but `except` (e.g. `ctx.session.handle`, "log out everywhere
   *  else"). Resolves to the number ended. */
  revokeAll(userId: unknown, options?: { except?: string | null }): Promise<number>;
}

/** One session of a user, as `sessions.list()` gives it. Times are epoch seconds. */
export interface SessionListing {
  /** The session's opaque, stable name (`ctx.session.handle`); never its id. */
  readonly handle: string;
  readonly created: number;
  /** When the session's expiry last moved (its last refresh or write); null for a session that
   *  never expires. */
  readonly lastActive: number | null;
  /** When it expires unless used again; null for never. */
  readonly expires: number | null;
  /** What `sessionInfo` described at login, or null. */
  readonly info: Record<string, unknown> | null;
}

/** `middleware.sessions`: the user index's commands, each one script on the user's index. */
export function userSessions(store: SessionStore, opts: ResolvedOptions): UserSessions {
  const indexOf = (userId: unknown, what: string): string => {
    if (opts.userKey === null)
      throw new TypeError(`middleware.sessions.${what}() needs the option "userKey" (the data key naming the user)`);
    if (userId === undefined || userId === null)
      throw new TypeError(
        `middleware.sessions.${what}(userId): userId must be the value sessions hold under "${opts.userKey}"`,
      );
    return store.userIndex(opts.serializer.stringify(userId, `middleware.sessions.${what}(userId)`));
  };
  const now = (): number => Math.floor(Date.now() / 1000);
  return {
    async list(userId) {
      const index = indexOf(userId, 'list');
      return (await store.listUser(index, now())).map((s) => ({
        handle: s.handle,
        created: s.created,
        lastActive: s.timeout === null || s.expires === null ? null : Math.max(s.created, s.expires - s.timeout),
        expires: s.expires,
        info: s.info === '' ? null : (opts.serializer.parse(s.info) as Record<string, unknown>),
      }));
    },
    async revoke(userId, handle) {
      const index = indexOf(userId, 'revoke');
      if (typeof handle !== 'string' || handle === '')
        throw new TypeError("middleware.sessions.revoke(userId, handle): handle must be a session's handle");
      return store.revokeUser(index, now(), 'revoke', handle);
    },
    async revokeAll(userId, options = {}) {
      const index = indexOf(userId, 'revokeAll');
      const except = options.except ?? '';
      if (typeof except !== 'string')
        throw new TypeError('middleware.sessions.revokeAll(userId, { except }): except must be a handle or null');
      return store.revokeUser(index, now(), 'revokeAll', except);
    },
  };
}
