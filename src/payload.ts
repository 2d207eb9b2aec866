/**
 * The fields of a stored session (docs/design.md, "Storage"; src/store/layout.ts packs them, with
 * the created time, timeout and expiry in a header, into one Redis string):
 *
 *   :k  the data key k, its value encoded by the serializer on its own
 *   f:q the flash queue q: its messages, each encoded on its own and framed as
 *       `<message id>:<length>:<text>`, so a flash appends to the queue and a pop takes the frames it
 *       loaded, in Redis, without decoding anyone's messages (pyramid keeps queues in the data as `_f_q`)
 *   k   the CSRF salt: '' until newCsrfToken() draws one; the token is derived from the id and
 *       the salt (src/session.ts, getCsrfToken)
 *   l   this session's own cookie lifetime in milliseconds, 0 for a browser-session cookie; absent =
 *       the `cookie` options' (`ctx.session.maxAge`, `rememberFor()`): every cookie sent for the
 *       session carries it, whatever sends it (README, "Cookie lifetimes")
 *   h   the session's handle, `i` what `sessionInfo` described: a session in a user's index only
 *       (the `userKey` option; src/store/lua/include/users.lua)
 *   o   each writer's last operation (src/store/lua/include/op.lua)
 *
 * One field per top-level data key is what lets a write send only the keys that changed, merged in
 * Redis without decoding or re-encoding anyone's values: two requests changing different keys both
 * survive (docs/design.md, "Concurrency"). Data fields carry a `:` prefix so no data key can collide
 * with the others.
 */
import { randomBytes } from 'node:crypto';
import { RawDeserializationError } from './errors.js';

/** Prefix of data fields in the hash. */
export const DATA_PREFIX = ':';

/** Prefix of flash queue fields. */
export const FLASH_PREFIX = 'f:';

/** The CSRF salt's field. */
export const CSRF_FIELD = 'k';

/** The session's own cookie lifetime's field. */
export const LIFETIME_FIELD = 'l';

/** The handle's field, and the field of what `sessionInfo` described (a session in a user's index). */
export const HANDLE_FIELD = 'h';
export const INFO_FIELD = 'i';

/** Encodes one session value to a string and back. `stringify` gets a path naming the value for
 *  its error messages (e.g. `ctx.session.cart`). The default is `sessionSerializer` (src/values.ts). */
export interface Serializer {
  stringify(value: unknown, path?: string): string;
  parse(text: string): unknown;
  /** Optional: throw if `value` cannot be stored, without encoding it. Called at each assignment to
   *  refuse bad values where they are made; without it, `stringify` is called and its text dropped
   *  (the value is encoded once more when the request ends, as it may have changed meanwhile). */
  check?(value: unknown, path?: string): void;
}

/** Session metadata as stored. */
export interface Meta {
  created: number;
  timeout: number | null;
  /** The session's own cookie lifetime in ms; null = a browser-session cookie; undefined = none
   *  stored (the `cookie` options decide). */
  cookieLifetime: number | null | undefined;
  /** The session's handle, when it is in a user's index. */
  handle: string | null;
}

const MESSAGE_PREFIX = randomBytes(6).toString('base64url');
let messageCount = 0;

/** One flash message as stored in its queue's field: `<message id>:<length>:<text>`. The id makes
 *  each frame unique, so a pop removes exactly the messages it loaded, never an equal one flashed
 *  since. Lengths count UTF-16 code units: only this module reads them; Redis only joins whole
 *  frames and removes them by their exact text. */
export function frame(text: string): string {
  messageCount++; // never wraps: a pop takes frames by their id
  return `${MESSAGE_PREFIX}${messageCount.toString(36)}:${text.length}:${text}`;
}

const FRAME_HEAD = /^([\w-]{1,32}):(\d{1,10}):/;

/** The frames of a queue field and the encoded message of each, or null when the value is not a
 *  well-formed run of frames. */
export function unframe(value: string): Array<{ frame: string; text: string }> | null {
  const out: Array<{ frame: string; text: string }> = [];
  let at = 0;
  while (at < value.length) {
    const head = FRAME_HEAD.exec(value.slice(at, at + 45));
    if (head === null) return null;
    const start = at + head[0].length;
    const end = start + Number(head[2]);
    if (end > value.length) return null;
    out.push({ frame: value.slice(at, end), text: value.slice(start, end) });
    at = end;
  }
  return out;
}

/** A loaded session: its metadata, its decoded data, flash queues and CSRF token, and the raw text
 *  of each field (for change detection: a field is written only when its encoding differs from what
 *  was loaded). */
export interface LoadedPayload extends Meta {
  data: Record<string, unknown>;
  /** Flash queues and the CSRF token, by field name. */
  extras: Record<string, unknown>;
  /** Raw text by field name. */
  raw: Map<string, string>;
  /** The frames of each flash queue as loaded (what a pop takes); a queue stored by an older
   *  version as one encoded array is `legacy`, its whole text one frame, rewritten on change. */
  frames: Map<string, { frames: string[]; legacy: boolean }>;
}

const PROTO_FIELD = `${DATA_PREFIX}__proto__`;
const CONSTRUCTOR_FIELD = `${DATA_PREFIX}constructor`;

function fail(): never {
  throw new TypeError('not a run of framed messages');
}

/**
 * A record of a session's data or extras, with no inherited names (`toString`, `__proto__` are plain
 * keys): an instance of a class whose prototype is an empty prototype-less object, as jshttp/cookie's
 * NullObject (https://github.com/jshttp/cookie). V8 keeps it a fast object, where `Object.create(null)`
 * starts one in dictionary mode: building it and each `for…in` over it took 5 to 30 times as long
 * (bench/README.md, "New session").
 */
export const NullRecord = (() => {
  const Record = function NullRecord() {} as unknown as new () => Record<string, unknown>;
  Record.prototype = Object.create(null) as object;
  return Record;
})();

/**
 * Decode the fields of a found session (field, value pairs), with its header's created time and
 * timeout. Data objects inherit no names (NullRecord). Throws `RawDeserializationError` naming the first key
 * whose value the serializer rejects.
 */
export function decodeFields(
  id: string,
  created: number,
  timeout: number | null,
  fields: readonly string[],
  serializer: Serializer,
): LoadedPayload {
  const data = new NullRecord();
  const extras = new NullRecord();
  const raw = new Map<string, string>();
  const frames = new Map<string, { frames: string[]; legacy: boolean }>();
  let cookieLifetime: number | null | undefined;
  let handle: string | null = null;
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const field = fields[i] as string;
    const value = fields[i + 1] as string;
    const isData = field.startsWith(DATA_PREFIX);
    if (field === PROTO_FIELD) continue; // never stored by us; never let it near a prototype
    if (isData || field.startsWith(FLASH_PREFIX) || field === CSRF_FIELD) {
      try {
        if (isData) {
          const decoded = serializer.parse(value);
          // A top-level `constructor` holding a `prototype` is dropped, as at every depth below.
          if (
            field === CONSTRUCTOR_FIELD &&
            decoded !== null &&
            typeof decoded === 'object' &&
            Object.hasOwn(decoded, 'prototype')
          )
            continue;
          data[field.slice(DATA_PREFIX.length)] = decoded;
        } else if (field === CSRF_FIELD) extras[field] = serializer.parse(value);
        else {
          const parsed = unframe(value);
          if (parsed !== null) {
            extras[field] = parsed.map((p) => serializer.parse(p.text));
            frames.set(field, { frames: parsed.map((p) => p.frame), legacy: false });
          } else {
            const list = serializer.parse(value);
            if (!Array.isArray(list)) fail();
            extras[field] = list;
            frames.set(field, { frames: [value], legacy: true });
          }
        }
      } catch (err) {
        throw new RawDeserializationError(id, isData ? field.slice(DATA_PREFIX.length) : field, err);
      }
      raw.set(field, value);
    } else if (field === LIFETIME_FIELD) {
      const ms = Number(value);
      // Anything but a positive number of milliseconds is a browser-session cookie.
      cookieLifetime = Number.isFinite(ms) && ms > 0 ? ms : null;
    } else if (field === HANDLE_FIELD) {
      handle = value;
    }
  }
  return { created, timeout, cookieLifetime, handle, data, extras, raw, frames };
}
