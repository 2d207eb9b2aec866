/**
 * The client's half of the stored form (src/store/lua/include/layout.lua; docs/design.md,
 * "Storage"): a session is one Redis string,
 *
 *   "2 <created> <timeout> <expiry> " + a MessagePack map of strings
 *
 * the header's numbers in base 36 (timeout and expiry empty when the session never expires: an
 * epoch second in 6 characters, since in a small session every byte counts), the map holding every
 * field by name. The scripts merge a write into the map with Redis' cmsgpack; this
 * module packs a whole new session (a create is one plain `SET`) and reads what a load returns.
 * Only what cmsgpack makes of a Lua table of strings is read: fixmap, map 16/32 (and the empty
 * array it packs an empty table as); fixstr, str 8/16/32 (and bin, which older packers use for the
 * same). Anything else is a broken reply, never a session.
 */

/** The format version in the header; a lower one loads as legacy and is removed. Format 1 was a
 *  hash per session, which the scripts migrate on their first contact. */
export const FORMAT_VERSION = 2;

/** A session as stored: the header's numbers and the fields as field, value pairs. */
export interface StoredSession {
  readonly version: number;
  readonly created: number;
  /** Idle timeout in seconds; null: never expires. */
  readonly timeout: number | null;
  /** The expiry, epoch seconds, as stored (a load that refreshed it read the one before). */
  readonly expires: number | null;
  /** The key of the user index the session is in, or null. */
  readonly index: string | null;
  readonly fields: string[];
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: the ASCII range, control characters included, is the point
const NON_ASCII = /[^\x00-\x7f]/;

function malformed(): never {
  throw new Error('session store: malformed session value');
}

/** Bytes of the MessagePack header of a string of `n` bytes, as cmsgpack writes it. */
function stringHead(n: number): number {
  return n < 32 ? 1 : n < 0x100 ? 2 : n < 0x10000 ? 3 : 5;
}

/** Bytes one field takes in the map: what `maxSize` counts (layout.lua's `measure` counts the same). */
export function entrySize(field: string, value: string): number {
  const f = Buffer.byteLength(field);
  const v = Buffer.byteLength(value);
  return stringHead(f) + f + stringHead(v) + v;
}

/** Whether every string is ASCII, so that its length is its UTF-8 byte count: one join and one
 *  native count for them all, instead of a count per string. `entriesSize` and `packValue` take
 *  its answer, so a create asks once. */
export function allAscii(texts: readonly string[]): boolean {
  const joined = texts.join('');
  return Buffer.byteLength(joined) === joined.length;
}

/** Bytes the field, value pairs take in the map: the sum of their `entrySize`, counted in one pass
 *  over their text when it is ASCII (the usual session), where a count per string took as long. */
export function entriesSize(fields: readonly string[], ascii = allAscii(fields)): number {
  let size = 0;
  if (ascii) for (const text of fields) size += stringHead(text.length) + text.length;
  else for (let i = 0; i + 1 < fields.length; i += 2) size += entrySize(fields[i] as string, fields[i + 1] as string);
  return size;
}

/** Byte `n` as a latin1 character: `Buffer.from(text, 'latin1')` writes it as that byte. */
const BYTE = Array.from({ length: 256 }, (_, n) => String.fromCharCode(n));

/** `n` as a big-endian number of `bytes` bytes, in latin1 characters. */
function bigEndian(n: number, bytes: number): string {
  let text = '';
  for (let shift = 8 * (bytes - 1); shift >= 0; shift -= 8) text += BYTE[Math.floor(n / 2 ** shift) % 0x100];
  return text;
}

/** The MessagePack header of a map of `n` entries, as `packSession` below writes it, in latin1 characters. */
function mapHeadText(n: number): string {
  if (n < 16) return BYTE[0x80 | n] as string;
  return n < 0x10000 ? `\xde${bigEndian(n, 2)}` : `\xdf${bigEndian(n, 4)}`;
}

/** The MessagePack header of a string of `n` bytes, as `packSession` below writes it, in latin1 characters. */
function stringHeadText(n: number): string {
  if (n < 32) return BYTE[0xa0 | n] as string;
  if (n < 0x100) return `\xd9${BYTE[n]}`;
  return n < 0x10000 ? `\xda${bigEndian(n, 2)}` : `\xdb${bigEndian(n, 4)}`;
}

/** The header of a session stored now; `index`, the key of the user index it is in (the `userKey`
 *  option), follows it as `~<length in base 36> <key>` (layout.lua, indexOf). */
export function header(created: number, timeout: number | null, expires: number | null, index?: string): string {
  const head =
    `${FORMAT_VERSION.toString(36)} ${created.toString(36)} ` +
    `${timeout?.toString(36) ?? ''} ${expires?.toString(36) ?? ''} `;
  return index === undefined ? head : `${head}~${Buffer.byteLength(index).toString(36)} ${index}`;
}

/** A packed session value: its bytes, or, for an ASCII session, the same as latin1 text (one
 *  character per byte), which a create frames whole (src/store/commands.ts, FramedCommand). */
export type PackedValue = Buffer | string;

/**
 * A whole session value: `head`, then the field, value pairs packed as one MessagePack map (`ascii`:
 * `allAscii(fields)`, when the caller knows it). The usual session is ASCII (plain JSON of ASCII
 * data): its value is then one string, its headers as characters, encoded by one Buffer.from where it
 * is sent, where writing each string into a Buffer on its own took two to three times as long
 * (bench/README.md, "HTTP, side by side").
 */
export function packValue(head: string, fields: readonly string[], ascii = allAscii(fields)): PackedValue {
  if (ascii && Buffer.byteLength(head) === head.length) {
    let text = head + mapHeadText(fields.length / 2);
    for (const field of fields) text += stringHeadText(field.length) + field;
    return text;
  }
  // Otherwise the same headers, each string written as UTF-8 after its byte count.
  let size = Buffer.byteLength(head) + 5;
  for (const text of fields) size += Buffer.byteLength(text) + 5;
  const out = Buffer.allocUnsafe(size);
  let at = out.write(head, 0, 'utf8');
  at += out.write(mapHeadText(fields.length / 2), at, 'latin1');
  for (const text of fields) {
    at += out.write(stringHeadText(Buffer.byteLength(text)), at, 'latin1');
    at += out.write(text, at, 'utf8');
  }
  return out.subarray(0, at);
}

/** A packed value's bytes. */
export function valueBytes(value: PackedValue): Buffer {
  return typeof value === 'string' ? Buffer.from(value, 'latin1') : value;
}

/** `packValue`, as bytes. */
export function packSession(head: string, fields: readonly string[], ascii = allAscii(fields)): Buffer {
  return valueBytes(packValue(head, fields, ascii));
}

/** A header number: base-36 digits (0-9, a-z), or null when empty. */
function headerNumber(value: Buffer, from: number, to: number): number | null {
  if (from === to) return null;
  let n = 0;
  for (let i = from; i < to; i++) {
    const c = value[i] as number;
    const digit = c >= 0x30 && c <= 0x39 ? c - 0x30 : c >= 0x61 && c <= 0x7a ? c - 0x57 : -1;
    if (digit < 0) return malformed();
    n = n * 36 + digit;
  }
  return n;
}

/** Read a session value (what load.lua returns). Throws on anything that is not one. */
export function unpackSession(value: Buffer | undefined): StoredSession {
  if (value === undefined) return malformed();
  const bounds: number[] = [];
  let at = 0;
  // The header: four numbers, each followed by one space.
  while (bounds.length < 4) {
    const space = value.indexOf(0x20, at);
    if (space < 0 || space - at > 12) return malformed();
    bounds.push(space);
    at = space + 1;
  }
  const version = headerNumber(value, 0, bounds[0] as number);
  const created = headerNumber(value, (bounds[0] as number) + 1, bounds[1] as number);
  if (version === null || created === null) return malformed();
  const timeout = headerNumber(value, (bounds[1] as number) + 1, bounds[2] as number);
  const expires = headerNumber(value, (bounds[2] as number) + 1, bounds[3] as number);
  let index: string | null = null;
  if (value[at] === 0x7e) {
    const space = value.indexOf(0x20, at);
    if (space < 0 || space - at > 12) return malformed();
    const length = headerNumber(value, at + 1, space);
    if (length === null || space + 1 + length > value.length) return malformed();
    index = value.toString('utf8', space + 1, space + 1 + length);
    at = space + 1 + length;
  }
  return { version, created, timeout, expires, index, fields: readMap(value, at) };
}

/** The field, value pairs of the MessagePack map that starts at `at` and ends `value`. */
export function readMap(value: Buffer, at: number): string[] {
  const end = value.length;
  const head = value[at];
  let count: number;
  if (head === undefined) return malformed();
  at++;
  if (head >= 0x80 && head <= 0x8f) count = head & 0x0f;
  else if (head === 0x90)
    count = 0; // cmsgpack packs an empty table as an empty array
  else if (head === 0xde && end >= at + 2) {
    count = value.readUInt16BE(at);
    at += 2;
  } else if (head === 0xdf && end >= at + 4) {
    count = value.readUInt32BE(at);
    at += 4;
  } else return malformed();
  count *= 2;
  if (count > end - at) return malformed(); // each string takes a byte at least: no huge allocation
  const fields = new Array<string>(count);
  // An ASCII string (plain JSON of ASCII data, the usual case) is cut from one decoding of the whole
  // value instead of being decoded on its own.
  const text = value.toString('latin1');
  for (let i = 0; i < count; i++) {
    const type = value[at++];
    let length: number;
    if (type === undefined) return malformed();
    if (type >= 0xa0 && type <= 0xbf) length = type & 0x1f;
    else if ((type === 0xd9 || type === 0xc4) && at + 1 <= end) length = value[at++] as number;
    else if ((type === 0xda || type === 0xc5) && at + 2 <= end) {
      length = value.readUInt16BE(at);
      at += 2;
    } else if ((type === 0xdb || type === 0xc6) && at + 4 <= end) {
      length = value.readUInt32BE(at);
      at += 4;
    } else return malformed();
    if (at + length > end) return malformed();
    const piece = text.slice(at, at + length);
    fields[i] = NON_ASCII.test(piece) ? value.toString('utf8', at, at + length) : piece;
    at += length;
  }
  if (at !== end) return malformed();
  return fields;
}
