/**
 * Errors of koa-session-machine.
 *
 * The `InvalidSessionError` family mirrors pyramid_session_redis' `InvalidSession_*` exceptions: each
 * says why a cookie did not lead to a usable session, and is handed to `onInvalid(ctx, err)`. They are
 * reports, never thrown at the application (pyramid: func_invalid_logger).
 */

/** Base class: a cookie did not lead to a usable session, so the request got a fresh one. */
export class InvalidSessionError extends Error {
  override name = 'InvalidSessionError';
  constructor(
    message: string,
    /** The session id the cookie named, when it got that far. */
    readonly sessionId: string | null = null,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/** A session cookie was sent but is unusable: malformed, of a wrong id format, or badly signed.
 *  (pyramid: InvalidSession_NoSessionCookie, which also covers a bad signature.) Redis is not asked. */
export class NoSessionCookieError extends InvalidSessionError {
  override name = 'NoSessionCookieError';
  constructor(
    message: string,
    /** Why the cookie was rejected. */
    readonly reason: 'format' | 'signature',
  ) {
    super(message);
  }
}

/** The cookie is validly signed but Redis has no such session (expired by TTL, deleted, evicted). */
export class NotInBackendError extends InvalidSessionError {
  override name = 'NotInBackendError';
}

/** The stored payload could not be decoded; only reported with `deserializedFailsNew`. */
export class DeserializationError extends InvalidSessionError {
  override name = 'DeserializationError';
  constructor(
    message: string,
    sessionId: string,
    /** The session data key whose value failed to decode. */
    readonly key: string,
    options?: ErrorOptions,
  ) {
    super(message, sessionId, options);
  }
}

/** The payload's own expiry (`x`) had passed; the key was deleted by the load. */
export class PayloadTimeoutError extends InvalidSessionError {
  override name = 'PayloadTimeoutError';
}

/** The payload was written by an older or foreign format; the key was deleted by the load. */
export class PayloadLegacyError extends InvalidSessionError {
  override name = 'PayloadLegacyError';
}

/**
 * Redis failed a session command or did not answer within `commandTimeout`. With `onRedisError:
 * 'throw'` (the default) the request fails with 503 carrying this error; with 'continue' it is
 * reported to `onInvalid` and the request goes on (a failed load gives an in-memory session that is
 * never written; a failed write is not reported as saved: no cookie is set for it).
 */
export class SessionStoreError extends InvalidSessionError {
  override name = 'SessionStoreError';
  constructor(
    message: string,
    sessionId: string | null,
    /** The session command that failed: load, create, patch, move, replace or delete. */
    readonly command: string,
    options?: ErrorOptions,
  ) {
    super(message, sessionId, options);
  }
}

/**
 * A stored session value could not be decoded and `deserializedFailsNew` is off (pyramid's default,
 * its RawDeserializationError): the request fails with status 500. Set `deserializedFailsNew: true`
 * to give such requests a fresh session instead.
 */
export class RawDeserializationError extends Error {
  override name = 'RawDeserializationError';
  readonly status = 500;
  readonly expose = false;
  constructor(
    /** The session id whose payload failed. */
    readonly sessionId: string,
    /** The session data key whose value failed to decode; '' when the stored session itself is
     *  damaged (its fields cannot be unpacked). */
    readonly key: string,
    cause: unknown,
  ) {
    // The id stays out of the message (it is a credential, and messages end up in logs).
    const what =
      key === ''
        ? 'the stored session cannot be unpacked'
        : `the stored value of key "${key}" cannot be decoded by the serializer`;
    super(
      `session payload: ${what} (${cause instanceof Error ? cause.message : String(cause)}); ` +
        'set deserializedFailsNew to start a fresh session instead',
      { cause },
    );
  }
}

/** The session's stored data would exceed `maxSize`: nothing was written (status 500). */
export class SessionSizeError extends RangeError {
  override name = 'SessionSizeError';
  readonly status = 500;
  readonly expose = false;
  constructor(
    /** Bytes the session would take, or null when the write script found the stored total (with
     *  what other requests stored) would pass the limit. */
    readonly size: number | null,
    /** The `maxSize` option. */
    readonly maxSize: number,
  ) {
    super(
      size === null
        ? `session data would pass the maxSize option (${maxSize} bytes) with this request's changes added to ` +
            'what is stored; nothing was written'
        : `session data is ${size} bytes, over the maxSize option (${maxSize} bytes); nothing was written`,
    );
  }
}

/**
 * The session this request left could not be stored because the cookie it needs cannot be sent on
 * this response (`allowCookies` refused it, or an error response without `cookieOnException`):
 * nothing was written, rather than a key no cookie names or, after `regenerate()`, logged-in data
 * under the old id. Reported to `onInvalid`; the request itself goes on.
 */
export class SessionNotStoredError extends InvalidSessionError {
  override name = 'SessionNotStoredError';
}
