/**
 * The session cookie: one cookie, `<id>.<signature>`, the signature a keygrip HMAC of
 * `<name>=<id>` (the same data `cookies` signs for its `.sig` cookies). Any listed key verifies and
 * the newest signs; which key verified is reported so a cookie signed with an older key is
 * re-issued with the newest one, every attribute kept (docs/design.md, "The cookie"; the `cookies`
 * package's own `.sig` re-issue drops the expiry).
 *
 * The id format is checked before the HMAC and before Redis: a bad cookie costs no Redis command.
 */
import { createSecretKey, randomFillSync, timingSafeEqual } from 'node:crypto';
import Keygrip from 'keygrip';

/** What a key ring must do: keygrip's `sign` and `index` (a `Keygrip` instance fits). */
export interface KeyRing {
  sign(data: string): string;
  index(data: string, digest: string): number;
}

/** Text compare in constant time, not keygrip's tsscmp (two more HMACs per key, README "Benchmarks");
 *  a ring's signatures all have one length, so checking it first reveals nothing. */
function sameSignature(expected: string, given: string): boolean {
  if (expected.length !== given.length) return false;
  const a = Buffer.from(expected);
  const b = Buffer.from(given);
  return a.length === b.length && timingSafeEqual(a, b);
}

/** The ring from a list of secrets: one default (SHA-1) `Keygrip` per secret, so signatures are
 *  `new Keygrip(keys)`'s and existing cookies stay valid (docs/design.md, "The cookie"). */
export class KeygripKeyRing implements KeyRing {
  /** HMAC-SHA1 in unpadded base64url: any other length is refused without an HMAC. */
  static readonly SIGNATURE_LENGTH = 27;
  readonly #rings: readonly Keygrip[];

  constructor(keys: ReadonlyArray<string | Buffer>) {
    if (keys.length === 0) throw new TypeError('KeygripKeyRing: at least one key, newest first');
    // keygrip hands its key to createHmac and its encoding to digest: a KeyObject made once spares
    // preparing the secret on each HMAC, and 'base64url' is natively the text keygrip's default
    // base64 gives after its replacements (a signature in about two thirds of the time:
    // bench/README.md, "New session").
    this.#rings = keys.map(
      (key) =>
        new Keygrip([createSecretKey(typeof key === 'string' ? Buffer.from(key) : key) as never], 'sha1', 'base64url'),
    );
  }

  sign(data: string): string {
    return (this.#rings[0] as Keygrip).sign(data);
  }

  index(data: string, digest: string): number {
    if (digest.length !== KeygripKeyRing.SIGNATURE_LENGTH) return -1;
    for (let i = 0; i < this.#rings.length; i++) {
      if (sameSignature((this.#rings[i] as Keygrip).sign(data), digest)) return i;
    }
    return -1;
  }
}

/** The application's own ring (`app.keys = new Keygrip(keys, 'sha256')`, README "Options"): the newest
 *  key is checked by `sign()` and `sameSignature`, only other signatures go to its slower `index()`. */
export class WrappedKeyRing implements KeyRing {
  readonly #ring: KeyRing;

  constructor(ring: KeyRing) {
    this.#ring = ring;
  }

  sign(data: string): string {
    return this.#ring.sign(data);
  }

  index(data: string, digest: string): number {
    return sameSignature(this.#ring.sign(data), digest) ? 0 : this.#ring.index(data, digest);
  }
}

const ID_BYTES = 32;
const POOLED_IDS = 128;
const idPool = Buffer.alloc(ID_BYTES * POOLED_IDS);
let nextPooled = POOLED_IDS;

/**
 * The default id: 32 random bytes (256 bits) from the CSPRNG, base64url, 43 characters. The bytes
 * are drawn 128 ids at a time, as Node's own `randomUUID()` does: each draw is a call into OpenSSL
 * whose fixed cost was a sixth of a new-session request's CPU when made per id (README, "Benchmarks").
 * Every byte of the pool is handed out once.
 */
export function defaultGenId(): string {
  if (nextPooled === POOLED_IDS) {
    randomFillSync(idPool);
    nextPooled = 0;
  }
  const start = ID_BYTES * nextPooled++;
  return idPool.toString('base64url', start, start + ID_BYTES);
}

/** A default id (43 characters), or on Redis Cluster one drawn for a regenerate: the session's
 *  8-character hash tag followed by a whole fresh id (51). */
export const DEFAULT_ID_PATTERN = /^(?:[A-Za-z0-9_-]{8})?[A-Za-z0-9_-]{43}$/;

/** Ids a custom `genId` may make: cookie-octets (RFC 6265 §4.1.1) without `.`, 1 to 200 chars. */
export const CUSTOM_ID_PATTERN = /^[\x21\x23-\x2b\x2d\x2f-\x3a\x3c-\x5b\x5d-\x7e]{1,200}$/;

/** A keygrip signature, base64url or hex (a subset): at most a SHA-512 HMAC in hex, 128 chars. */
const SIGNATURE_PATTERN = /^[A-Za-z0-9_-]{1,128}$/;

/** Longest cookie value read at all (a 200-char custom id, the dot and a 128-char signature);
 *  anything longer is rejected without hashing. */
export const MAX_COOKIE_VALUE = 200 + 1 + 128;

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
    // An empty key, of either type, would let anyone sign a cookie for any id.
    if (keys.length === 0 || !keys.every((k) => (typeof k === 'string' || Buffer.isBuffer(k)) && k.length > 0)) {
      throw new TypeError(`${source} must be a non-empty array of non-empty strings or Buffers, newest key first`);
    }
    return new KeygripKeyRing(keys as Array<string | Buffer>);
  }
  if (keys instanceof KeygripKeyRing || keys instanceof WrappedKeyRing) return keys;
  if (
    keys &&
    typeof keys === 'object' &&
    typeof (keys as KeyRing).sign === 'function' &&
    typeof (keys as KeyRing).index === 'function'
  ) {
    return new WrappedKeyRing(keys as KeyRing);
  }
  throw new TypeError(`${source} must be an array of secrets (newest first) or a Keygrip instance`);
}
