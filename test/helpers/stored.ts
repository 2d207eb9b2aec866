/**
 * What is stored under a session key, read the way a test asserts it (docs/design.md, "Storage"):
 * one string, a header and a MessagePack map (src/store/layout.ts).
 */
import type { Cluster, Redis } from 'ioredis';
import { FORMAT_VERSION, entrySize, header, packSession, readMap, unpackSession } from '../../src/store/layout.js';

/**
 * The stored session as a flat record: the header as `v`, `c`, `t`, `x` (absent when empty), the
 * user index key as `u` (absent when none) and
 * every field of the map by name (`:key`, `f:queue`, `k`, `l`, `o`). A marker a regenerate left is
 * `{ m, o }`; nothing stored is `{}`. Anything else throws.
 */
export async function stored(redis: Redis | Cluster, key: string): Promise<Record<string, string>> {
  const value = await redis.getBuffer(key);
  if (value === null) return {};
  const out: Record<string, string> = {};
  let fields: string[];
  if (value.subarray(0, 2).toString() === 'm ') {
    fields = readMap(value, 2);
  } else {
    const session = unpackSession(value);
    out.v = String(session.version);
    out.c = String(session.created);
    if (session.timeout !== null) out.t = String(session.timeout);
    if (session.expires !== null) out.x = String(session.expires);
    if (session.index !== null) out.u = session.index;
    fields = session.fields;
  }
  for (let i = 0; i + 1 < fields.length; i += 2) out[fields[i] as string] = fields[i + 1] as string;
  return out;
}

/** Whether a session (not a marker) is stored under `key`. */
export async function isSession(redis: Redis | Cluster, key: string): Promise<boolean> {
  return (await stored(redis, key)).v !== undefined;
}

/**
 * Store a session as this version would: `c` (default now), `t` and `x` go to the header, every
 * other entry to the map. `ttl` seconds sets a Redis TTL.
 */
export async function seed(
  redis: Redis | Cluster,
  key: string,
  fields: Record<string, string | number>,
  ttl?: number,
): Promise<void> {
  const { c, t, x, v, ...rest } = fields;
  const head = header(
    Number(c ?? Math.floor(Date.now() / 1000)),
    t === undefined ? null : Number(t),
    x === undefined ? null : Number(x),
  );
  const value = packSession(
    v === undefined ? head : head.replace(/^\d+/, String(v)),
    Object.entries(rest).flatMap(([f, val]) => [f, String(val)]),
  );
  if (ttl !== undefined) await redis.set(key, value, 'EX', ttl);
  else await redis.set(key, value);
}

export { FORMAT_VERSION };

/** Change entries of a stored session in place (header numbers `c`, `t`, `x` or map fields; an
 *  `undefined` removes a field), keeping its TTL: what a test does to age a session or plant data. */
export async function update(
  redis: Redis | Cluster,
  key: string,
  changes: Record<string, string | number | undefined>,
): Promise<void> {
  const current = await stored(redis, key);
  if (current.v === undefined) throw new Error(`update: no session stored at ${key}`);
  const next: Record<string, string | number> = {};
  for (const [field, value] of Object.entries({ ...current, ...changes })) if (value !== undefined) next[field] = value;
  const ttl = await redis.pttl(key);
  await seed(redis, key, next);
  if (ttl > 0) await redis.pexpire(key, ttl);
}

/** Add `by` to a number stored in a session (a header number `c`, `t`, `x`, or a map field),
 *  keeping its TTL, as HINCRBY did to a field of the hash: returns the new value. */
export async function increment(redis: Redis | Cluster, key: string, field: string, by: number): Promise<number> {
  const next = Number((await stored(redis, key))[field] ?? 0) + by;
  await update(redis, key, { [field]: next });
  return next;
}

/** Fields of `stored()` that are no entry of the map a session's size counts: the header's numbers
 *  and the remembered operations `o`. */
const UNCOUNTED = new Set(['v', 'c', 't', 'x', 'o']);

/** What `maxSize` counts of a stored session: `entrySize` of every field of its packed map, the map's
 *  own header, the value's header (v c t x) and the operation record `o` aside (layout.lua, `measure`). */
export function sizeOf(session: Record<string, string>): number {
  let size = 0;
  for (const [field, value] of Object.entries(session)) if (!UNCOUNTED.has(field)) size += entrySize(field, value);
  return size;
}

/** `sizeOf` the session stored at `key`. */
export async function storedSize(redis: Redis | Cluster, key: string): Promise<number> {
  return sizeOf(await stored(redis, key));
}

/** What layout.lua's `measure` counts from the value itself: the bytes of the packed map after the
 *  value's header, less the map's own header and the `o` entry. Equal to `storedSize` when the map
 *  holds what `entrySize` assumes (cmsgpack's string headers). */
export async function packedSize(redis: Redis | Cluster, key: string): Promise<number> {
  const value = await redis.getBuffer(key);
  if (value === null) throw new Error(`packedSize: nothing stored at ${key}`);
  let at = 0;
  for (let i = 0; i < 4; i++) at = value.indexOf(0x20, at) + 1;
  const head = value[at];
  let size = value.length - at - (head === 0xde ? 3 : head === 0xdf ? 5 : 1);
  const o = (await stored(redis, key)).o;
  if (o !== undefined) size -= entrySize('o', o);
  return size;
}
