/**
 * The session cookie: one cookie, `<id>.<signature>`, the signature a keygrip HMAC of
 * `<name>=<id>` (the same data `cookies` signs for its `.sig` cookies). Any listed key verifies and
 * the newest signs; which key verified is reported so a cookie signed with an older key is
 * re-issued with the newest one, every attribute kept (SPEC §7; cookies' own `.sig` re-issue drops
 * the expiry, reference/node_session_peers.md §1 item 6).
 *
 * The id format is checked before the HMAC and before Redis: a bad cookie costs no Redis command.
 */
import { randomBytes } from 'node:crypto';
import Keygrip from 'keygrip';

/** What a key ring must do: keygrip's `sign` and `index` (a `Keygrip` instance fits). */
export interface KeyRing {
  sign(data: string): string;
  index(data: string, digest: string): number;
}

/** The default id: 32 random bytes (256 bits), base64url, 43 characters. */
export function defaultGenId(): string {
  return randomBytes(32).toString('base64url');
}

/** Ids the default generator makes. */
export const DEFAULT_ID_PATTERN = /^[A-Za-z0-9_-]{43}$/;

/** Ids a custom `genId` may make: cookie-octets (RFC 6265 §4.1.1) without `.`, 1 to 200 chars. */
export const CUSTOM_ID_PATTERN = /^[\x21\x23-\x2b\x2d\x2f-\x3a\x3c-\x5b\x5d-\x7e]{1,200}$/;

/** A keygrip signature: base64url, at most the length of a SHA-512 HMAC (86 chars). */
const SIGNATURE_PATTERN = /^[A-Za-z0-9_-]{1,86}$/;

/** Longest cookie value read at all; anything longer is rejected without hashing. */
export const MAX_COOKIE_VALUE = 300;

export type ParsedCookie =
  | { readonly kind: 'missing' }
  | { readonly kind: 'invalid'; readonly reason: 'format' | 'signature' }
  | { readonly kind: 'valid'; readonly id: string; readonly keyIndex: number };

const MISSING: ParsedCookie = { kind: 'missing' };
const BAD_FORMAT: ParsedCookie = { kind: 'invalid', reason: 'format' };
const BAD_SIGNATURE: ParsedCookie = { kind: 'invalid', reason: 'signature' };

/** Encodes and verifies session cookie values for one cookie name and key ring. */
export class CookieCodec {
  constructor(
    readonly name: string,
    readonly keys: KeyRing,
    readonly idPattern: RegExp,
  ) {}

  /** `<id>.<signature>` with the newest key. */
  encode(id: string): string {
    return `${id}.${this.keys.sign(`${this.name}=${id}`)}`;
  }

  /** Classify a raw cookie value. Never throws. */
  decode(raw: string | undefined): ParsedCookie {
    if (raw === undefined || raw === '') return MISSING;
    if (raw.length > MAX_COOKIE_VALUE) return BAD_FORMAT;
    const dot = raw.lastIndexOf('.');
    if (dot <= 0) return BAD_FORMAT;
    const id = raw.slice(0, dot);
    const signature = raw.slice(dot + 1);
    if (!this.idPattern.test(id) || !SIGNATURE_PATTERN.test(signature)) return BAD_FORMAT;
    const keyIndex = this.keys.index(`${this.name}=${id}`, signature);
    return keyIndex < 0 ? BAD_SIGNATURE : { kind: 'valid', id, keyIndex };
  }
}

/** A key ring from the `keys` option or `app.keys`: a list of secrets (newest first) or a Keygrip. */
export function toKeyRing(keys: unknown, source: string): KeyRing {
  if (Array.isArray(keys)) {
    if (keys.length === 0 || !keys.every((k) => (typeof k === 'string' && k.length > 0) || Buffer.isBuffer(k))) {
      throw new TypeError(`${source} must be a non-empty array of non-empty strings, newest key first`);
    }
    return new Keygrip(keys as string[]);
  }
  if (keys && typeof keys === 'object' && typeof (keys as KeyRing).sign === 'function' && typeof (keys as KeyRing).index === 'function') {
    return keys as KeyRing;
  }
  throw new TypeError(`${source} must be an array of secrets (newest first) or a Keygrip instance`);
}
