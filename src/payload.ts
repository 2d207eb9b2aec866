/**
 * The stored form of a session: one Redis hash per session (SPEC §6).
 *
 *   c   created, epoch seconds          (pyramid: c)
 *   t   idle timeout, seconds; absent = never expires   (pyramid: t)
 *   x   payload expiry, epoch seconds; absent with t    (pyramid: x)
 *   v   format version                  (pyramid: v)
 *   :k  the data key k, its value encoded by the serializer on its own
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

/** Encodes one session value to a string and back. */
export interface Serializer {
  stringify(value: unknown): string;
  parse(text: string): unknown;
}

/** A decoder that never lets data reach an object prototype: `__proto__` keys are dropped, and so
 *  is a `constructor` key holding a `prototype` (SPEC §7; jshttp/cookie keeps a NullObject for the
 *  same reason). The reviver only runs on the rare text that mentions either name. */
function safeReviver(this: unknown, key: string, value: unknown): unknown {
  if (key === '__proto__') return undefined;
  if (key === 'constructor' && value !== null && typeof value === 'object' && Object.hasOwn(value, 'prototype')) {
    return undefined;
  }
  return value;
}

/** The default serializer: JSON with prototype-safe parsing. */
export const jsonSerializer: Serializer = {
  stringify: (value) => JSON.stringify(value),
  parse: (text) =>
    text.includes('__proto__') || text.includes('prototype') ? JSON.parse(text, safeReviver) : JSON.parse(text),
};

/** Session metadata as stored. */
export interface Meta {
  created: number;
  timeout: number | null;
}

/** A loaded session: its metadata, its decoded data and the raw text of each value (for change
 *  detection: a value is written only when its encoding differs from what was loaded). */
export interface LoadedPayload extends Meta {
  data: Record<string, unknown>;
  raw: Map<string, string>;
}

/**
 * Decode the flat `HGETALL` reply of a found session. Data objects are prototype-less.
 * Throws `RawDeserializationError` naming the first key whose value the serializer rejects.
 */
export function decodeHash(id: string, fields: readonly string[], serializer: Serializer): LoadedPayload {
  const data: Record<string, unknown> = Object.create(null);
  const raw = new Map<string, string>();
  let created = 0;
  let timeout: number | null = null;
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const field = fields[i] as string;
    const value = fields[i + 1] as string;
    if (field.startsWith(DATA_PREFIX)) {
      const key = field.slice(DATA_PREFIX.length);
      try {
        data[key] = serializer.parse(value);
      } catch (err) {
        throw new RawDeserializationError(id, key, err);
      }
      raw.set(key, value);
    } else if (field === 'c') {
      created = Number(value);
    } else if (field === 't') {
      timeout = Number(value);
    }
  }
  return { created, timeout, data, raw };
}
