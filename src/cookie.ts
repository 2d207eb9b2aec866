/**
 * The session cookie: one cookie, `<id>.<signature>`, the signature a keygrip HMAC of
 * `<name>=<id>` (the same data `cookies` signs for its `.sig` cookies). Any listed key verifies and
 * the newest signs; which key verified is reported so a cookie signed with an older key is
 * re-issued with the newest one, every attribute kept (docs/design.md, "The cookie"; the `cookies`
 * package's own `.sig` re-issue drops the expiry).
 *
 * The id format is checked before the HMAC and before Redis: a bad cookie costs no Redis command.
 */
import { createHmac, randomFillSync, timingSafeEqual } from 'node:crypto';

/** What a key ring must do: keygrip's `sign` and `index` (a `Keygrip` instance fits). */
export interface KeyRing {
  sign(data: string): string;
  index(data: string, digest: string): number;
}

/**
 * The key ring made from a list of secrets: signatures identical to `new Keygrip(keys)`'s (HMAC-SHA1,
 * base64url without padding), so cookies move freely between the two. Verifying costs one HMAC per
 * key tried and a `timingSafeEqual`; keygrip compares through tsscmp, which draws random bytes and
 * computes two more HMACs per key, and was a tenth of the server's CPU on a read (README, "Benchmarks").
 * Every signature of the algorithm has the same length, so checking the length first reveals
 * nothing about the expected one.
 */
export class HmacKeyRing implements KeyRing {
  static readonly SIGNATURE_LENGTH = 27; // base64url of 20 bytes, unpadded
  readonly #keys: ReadonlyArray<string | Buffer>;

  constructor(keys: ReadonlyArray<string | Buffer>) {
    this.#keys = [...keys];
  }

  sign(data: string): string {
    return createHmac('sha1', this.#keys[0] as string | Buffer).update(data).digest('base64url');
  }

  index(data: string, digest: string): number {
    if (digest.length !== HmacKeyRing.SIGNATURE_LENGTH) return -1;
    const given = Buffer.from(digest, 'base64url');
    // A digest that is not canonical base64url (stray bits in its last character) decodes like
    // another one; keygrip compares the text, so this does too.
    if (given.length !== 20 || given.toString('base64url') !== digest) return -1;
    for (let i = 0; i < this.#keys.length; i++) {
      if (timingSafeEqual(this.#digest(data, this.#keys[i] as string | Buffer), given)) return i;
    }
    return -1;
  }

  #digest(data: string, key: string | Buffer): Buffer {
    return createHmac('sha1', key).update(data).digest();
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
    // An empty key, of either type, would let anyone sign a cookie for any id.
    if (keys.length === 0 || !keys.every((k) => (typeof k === 'string' || Buffer.isBuffer(k)) && k.length > 0)) {
      throw new TypeError(`${source} must be a non-empty array of non-empty strings or Buffers, newest key first`);
    }
    return new HmacKeyRing(keys as Array<string | Buffer>);
  }
  if (keys && typeof keys === 'object' && typeof (keys as KeyRing).sign === 'function' && typeof (keys as KeyRing).index === 'function') {
    return keys as KeyRing;
  }
  throw new TypeError(`${source} must be an array of secrets (newest first) or a Keygrip instance`);
}
