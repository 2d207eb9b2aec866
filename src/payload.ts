/**
 * The stored form of a session: one Redis hash per session (SPEC §6).
 *
 *   c   created, epoch seconds          (pyramid: c)
 *   t   idle timeout, seconds; absent = never expires   (pyramid: t)
 *   x   payload expiry, epoch seconds; absent with t    (pyramid: x)
 *   v   format version                  (pyramid: v)
 *   :k  the data key k, its value encoded by the serializer on its own
 *   f:q the flash queue q (pyramid keeps these in the data as `_f_q`; here they stay out of it)
 *   k   the CSRF token (pyramid: `_csrft_`)
 *
 * One field per top-level data key is what lets a write send only the keys that changed, applied
 * in Redis without decoding or re-encoding anyone's values: two requests changing different keys
 * both survive (SPEC §6). Data fields carry a `:` prefix so no data key can collide with metadata.
 */
import { RawDeserializationError } from './errors.js';

/** The format version written in `v`; lower or missing versions load as legacy and are removed. */
export const FORMAT_VERSION = 1;

/** Prefix of data fields in the hash. */
export const DATA_PREFIX = ':';

/** Prefix of flash queue fields. */
export const FLASH_PREFIX = 'f:';

/** The CSRF token's field. */
export const CSRF_FIELD = 'k';

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
}

const PROTO_FIELD = `${DATA_PREFIX}__proto__`;

/**
 * Decode the flat `HGETALL` reply of a found session. Data objects are prototype-less.
 * Throws `RawDeserializationError` naming the first key whose value the serializer rejects.
 */
export function decodeHash(id: string, fields: readonly string[], serializer: Serializer): LoadedPayload {
  const data: Record<string, unknown> = Object.create(null);
  const extras: Record<string, unknown> = Object.create(null);
  const raw = new Map<string, string>();
  let created = 0;
  let timeout: number | null = null;
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const field = fields[i] as string;
    const value = fields[i + 1] as string;
    const isData = field.startsWith(DATA_PREFIX);
    if (field === PROTO_FIELD) continue; // never stored by us; never let it near a prototype
    if (isData || field.startsWith(FLASH_PREFIX) || field === CSRF_FIELD) {
      try {
        const decoded = serializer.parse(value);
        if (isData) data[field.slice(DATA_PREFIX.length)] = decoded;
        else extras[field] = decoded;
      } catch (err) {
        throw new RawDeserializationError(id, isData ? field.slice(DATA_PREFIX.length) : field, err);
      }
      raw.set(field, value);
    } else if (field === 'c') {
      created = Number(value);
    } else if (field === 't') {
      timeout = Number(value);
    }
  }
  return { created, timeout, data, extras, raw };
}
