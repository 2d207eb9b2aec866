/**
 * The default serializer: JSON that carries faithfully what JSON alone would change without a word.
 *
 * Plain JSON data is stored as plain JSON, byte for byte what `JSON.stringify` gives. Values JSON
 * cannot carry are stored as tagged objects `{"$t": tag, "v": …}` and come back as they went in:
 *
 *   Date → d   Map → m   Set → s   BigInt → b   NaN, ±Infinity, -0 → n   undefined in an array → u
 *
 * (an object of the application's that itself has a `$t` key is wrapped as `o`, so it cannot be
 * mistaken for a tag). Anything else that is not plain data (functions, symbols, class instances,
 * RegExp, Buffer, Error, Promise…) and circular structures are refused with a `TypeError` naming the
 * path (`ctx.session.cart.items[2]`), at the assignment and again when the request ends: never a
 * silent change of value. An object property holding `undefined` is left out, as JSON does (reading
 * it gives `undefined` either way).
 *
 * Decoding never lets data reach an object prototype: `__proto__` keys are dropped, and so is a
 * `constructor` key holding a `prototype` (jshttp/cookie keeps a NullObject for the same reason:
 * https://github.com/jshttp/cookie). The slower reviving walk only runs on text that contains a tag or either name.
 */
import type { Serializer } from './payload.js';

const TAG = '$t';

function describe(value: unknown): string {
  if (typeof value === 'function') return 'a function';
  if (typeof value === 'symbol') return 'a symbol';
  const name = (Object.getPrototypeOf(value) as { constructor?: { name?: string } } | null)?.constructor?.name;
  return name ? `an instance of ${name}` : 'a non-plain object';
}

function refuse(path: string, why: string): never {
  throw new TypeError(
    `${path} cannot be stored in the session: ${why}; ` +
      'store plain data (objects, arrays, strings, numbers, booleans, null, Date, Map, Set, BigInt)',
  );
}

function encode(value: unknown, path: string, ancestors: object[]): unknown {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return value;
    case 'number':
      if (Number.isFinite(value) && !Object.is(value, -0)) return value;
      return { [TAG]: 'n', v: Object.is(value, -0) ? '-0' : String(value) };
    case 'bigint':
      return { [TAG]: 'b', v: value.toString() };
    case 'undefined':
      return { [TAG]: 'u' };
    case 'function':
    case 'symbol':
      return refuse(path, describe(value));
  }
  if (value === null) return null;
  const object = value as object;
  if (ancestors.includes(object)) refuse(path, 'it is circular (it contains itself)');
  const proto = Object.getPrototypeOf(object) as unknown;
  ancestors.push(object);
  try {
    if (Array.isArray(object) && proto === Array.prototype) {
      const out = new Array<unknown>(object.length);
      for (let i = 0; i < object.length; i++) out[i] = encode(object[i], `${path}[${i}]`, ancestors);
      return out;
    }
    if (proto === Object.prototype || proto === null) {
      const out: Record<string, unknown> = {};
      for (const key of Object.keys(object)) {
        if (key === '__proto__') refuse(`${path}.__proto__`, 'the key "__proto__" is reserved by JavaScript');
        const v = (object as Record<string, unknown>)[key];
        if (key === 'constructor' && v !== null && typeof v === 'object' && Object.hasOwn(v, 'prototype')) {
          refuse(`${path}.constructor`, 'a "constructor" key holding a "prototype" is refused (decoding drops it)');
        }
        if (v === undefined) continue;
        out[key] = encode(v, `${path}.${key}`, ancestors);
      }
      // Wrapped only when a `$t` key is stored: `{ $t: undefined }` encodes as `{}`, which decodes
      // and encodes again to the same text (no spurious write).
      return Object.hasOwn(out, TAG) ? { [TAG]: 'o', v: out } : out;
    }
    if (object instanceof Date && proto === Date.prototype) {
      const time = object.getTime();
      return { [TAG]: 'd', v: Number.isNaN(time) ? null : object.toISOString() };
    }
    if (object instanceof Map && proto === Map.prototype) {
      let i = 0;
      const entries: unknown[] = [];
      for (const [k, v] of object) {
        entries.push([encode(k, `${path}<key ${i}>`, ancestors), encode(v, `${path}<value ${i}>`, ancestors)]);
        i++;
      }
      return { [TAG]: 'm', v: entries };
    }
    if (object instanceof Set && proto === Set.prototype) {
      let i = 0;
      const items: unknown[] = [];
      for (const v of object) items.push(encode(v, `${path}<item ${i++}>`, ancestors));
      return { [TAG]: 's', v: items };
    }
    return refuse(path, describe(object));
  } finally {
    ancestors.pop();
  }
}

function badTag(tag: unknown): never {
  throw new SyntaxError(`unknown session value tag ${JSON.stringify(tag)}`);
}

function revive(value: unknown): unknown {
  if (value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) value[i] = revive(value[i]);
    return value;
  }
  const object = value as Record<string, unknown>;
  if (Object.hasOwn(object, TAG)) {
    const v = object.v;
    switch (object[TAG]) {
      case 'u':
        return undefined;
      case 'n':
        return v === '-0' ? -0 : Number(v);
      case 'b':
        return BigInt(String(v));
      case 'd':
        return new Date(v === null ? Number.NaN : String(v));
      case 'm':
        return new Map((v as unknown[][]).map(([k, x]) => [revive(k), revive(x)]));
      case 's':
        return new Set((v as unknown[]).map(revive));
      case 'o':
        return reviveProperties(v as Record<string, unknown>);
      default:
        return badTag(object[TAG]);
    }
  }
  return reviveProperties(object);
}

function reviveProperties(object: Record<string, unknown>): Record<string, unknown> {
  for (const key of Object.keys(object)) {
    const v = object[key];
    if (
      key === '__proto__' ||
      (key === 'constructor' && v !== null && typeof v === 'object' && Object.hasOwn(v, 'prototype'))
    ) {
      delete object[key];
    } else {
      object[key] = revive(v);
    }
  }
  return object;
}

const ownProperty = Object.prototype.hasOwnProperty;

/**
 * Whether JSON.stringify alone encodes this value exactly as `encode()` would: only strings,
 * finite numbers other than -0, booleans, null, dense arrays without undefined, and plain objects
 * without a `$t`, `__proto__` or prototype-carrying `constructor` key. A walk without allocation,
 * so the common case (plain data) is encoded natively; anything else takes the full encoder, which
 * tags or refuses it. Deep or circular values also take the full encoder.
 */
function isPlainJson(value: unknown, depth: number): boolean {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return true;
    case 'number':
      return Number.isFinite(value) && !Object.is(value, -0);
    case 'object':
      break;
    default:
      return false;
  }
  if (value === null) return true;
  if (depth > 64) return false;
  // Strings, the usual leaves, are passed over without a call.
  if (Array.isArray(value)) {
    if (Object.getPrototypeOf(value) !== Array.prototype) return false;
    for (let i = 0; i < value.length; i++) {
      const v: unknown = value[i];
      if (typeof v === 'string' ? !(i in value) : !isPlainJson(v, depth + 1) || !(i in value)) return false;
    }
    return true;
  }
  const proto = Object.getPrototypeOf(value) as unknown;
  if (proto !== Object.prototype && proto !== null) return false;
  for (const key in value) {
    // hasOwnProperty.call, not Object.hasOwn: V8 answers it from the for-in's own key cache (a
    // quarter of the walk's time: bench/README.md, "New session").
    if (!ownProperty.call(value, key)) continue;
    if (key === TAG || key === '__proto__' || key === 'constructor') return false;
    const v = (value as Record<string, unknown>)[key];
    if (typeof v === 'string' || v === undefined) continue;
    if (!isPlainJson(v, depth + 1)) return false;
  }
  return true;
}

/** Encode one session value (see the module comment). `path` names it in errors. */
export function encodeValue(value: unknown, path = 'value'): string {
  return isPlainJson(value, 0) ? JSON.stringify(value) : JSON.stringify(encode(value, path, []));
}

/** Decode one session value. Throws on text that is not JSON or carries an unknown tag. */
export function decodeValue(text: string): unknown {
  const parsed: unknown = JSON.parse(text);
  // A string, number, boolean or null carries no key: nothing to revive or drop.
  if (parsed === null || typeof parsed !== 'object') return parsed;
  // JSON may spell a key with \u escapes ("\u005f_proto__"): such text takes the reviving walk too.
  if (!NEEDS_REVIVING.test(text)) return parsed;
  return revive(parsed);
}

/** Text that may hold a tag, a `__proto__` or `prototype` key, or a key spelled with escapes. */
const NEEDS_REVIVING = /\$t|__proto__|prototype|\\u/;

/** Throw what `encodeValue` would throw, without making the text: plain data is only walked. */
export function checkValue(value: unknown, path = 'value'): void {
  if (!isPlainJson(value, 0)) encode(value, path, []);
}

/** `encodeValue`'s text of plain JSON data, or undefined for any other value (which takes
 *  `encodeValue`, with the path it names in an error): the session asks this first, so the common
 *  value costs no path text (src/session.ts). */
export function plainText(value: unknown): string | undefined {
  return isPlainJson(value, 0) ? JSON.stringify(value) : undefined;
}

/** Whether `checkValue` passes `value` as plain JSON data, by the same walk, without a path. */
export function isPlainData(value: unknown): boolean {
  return isPlainJson(value, 0);
}

/** The default serializer of koa-session-machine. */
export const sessionSerializer: Serializer = {
  stringify: (value, path) => encodeValue(value, path),
  parse: decodeValue,
  check: (value, path) => checkValue(value, path),
};
