/**
 * koa-session-machine: server-side Koa sessions in Redis, one explicit state machine per request
 * whose final state decides the one Redis command sent after `await next()`.
 */
import { koaRedisSession } from './middleware.js';
import type { Session, SessionData } from './session.js';

export { koaRedisSession };
export default koaRedisSession;
export type { SessionMiddleware, UserSessions, SessionListing } from './middleware.js';
export type { SessionTrace } from './trace.js';
export { csrfProtect, type CsrfOptions } from './csrf.js';
export type { SessionOptions, SessionCookieOptions } from './options.js';
export type { Session, SessionData, SessionMembers } from './session.js';
export { RESERVED_MEMBERS } from './session.js';
export type { Serializer } from './payload.js';
export { sessionSerializer } from './values.js';
export type { KeyRing } from './cookie.js';
export {
  InvalidSessionError,
  NoSessionCookieError,
  NotInBackendError,
  DeserializationError,
  PayloadTimeoutError,
  PayloadLegacyError,
  RawDeserializationError,
  SessionSizeError,
  SessionStoreError,
  SessionNotStoredError,
} from './errors.js';
export { sessionMachine } from '../machines/session.machine.js';
export { toDot, toMermaid } from './chart.js';
export type { SessionContext, SessionEvent, SessionOutput, RedisCommand, CookieAction, Failure } from './policy.js';

declare module 'koa' {
  interface ExtendableContext {
    /** The request's session (koa-session-machine). */
    session: Session<SessionData>;
  }
}
