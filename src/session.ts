/**
 * `ctx.session`: plain property data, plus reserved non-enumerable members (README, "`ctx.session`").
 *
 * The object the handler sees is a Proxy over one `SessionState` per request, made on first access
 * only (a route that never reads the session pays nothing). Top-level assignments and deletions are
 * recorded as they happen; nested mutation is caught at the end by comparing each object value's
 * encoding with the text that was loaded (`detectChanges`, pyramid: detect_changes). A value equal
 * to the loaded one is no change: assigning it sends no write.
 */
import { randomBytes } from 'node:crypto';
import type { Context } from 'koa';
import { inspect, types } from 'node:util';
import type { KeyRing } from './cookie.js';
import type { MachineRun } from './fsm.js';
import { isSeconds, toTimeout } from './options.js';
import {
  CSRF_FIELD,
  DATA_PREFIX,
  FLASH_PREFIX,
  HANDLE_FIELD,
  INFO_FIELD,
  LIFETIME_FIELD,
  NullRecord,
  frame,
  type LoadedPayload,
  type Serializer,
} from './payload.js';
import type { WriteIntent, WriteSource } from './store/commands.js';
import { allAscii, entriesSize } from './store/layout.js';
import { fieldChanges, flashChanges, type FlashChange } from './changes.js';
import { RESERVED_MEMBERS, STATE, checkKey, checkName, sessionHandler } from './session-proxy.js';
import { isPlainData, plainText, sessionSerializer } from './values.js';

export { RESERVED_MEMBERS, STATE };

/** The data a session holds. Declaration-merge into it to type `ctx.session`:
 *  `declare module 'koa-session-machine' { interface SessionData { views: number } }`. */
// biome-ignore lint/suspicious/noEmptyInterface: empty on purpose, for applications to declaration-merge into
export interface SessionData {}

/** The reserved members of `ctx.session`, beside the data. */
export interface SessionMembers {
  /** The session id, or null while the session exists only in memory (new, or just invalidated). */
  readonly id: string | null;
  /** True when no stored session backs this one (no valid cookie, or after `invalidate()`). */
  readonly isNew: boolean;
  /** When the session was created, epoch seconds. */
  readonly created: number;
  /** The session's name in its user's list (`middleware.sessions`, option `userKey`): null while it
   *  holds no user, or without the option. Opaque and stable; never the id. */
  readonly handle: string | null;
  /** This session's idle timeout in seconds, or null for never. */
  readonly timeout: number | null;
  /** Drop the data and the stored session. Writing afterwards starts a new session under a new id,
   *  stored in the same command that deletes the old one. */
  readonly invalidate: () => void;
  /** Keep the data under a new id and delete the old key, in one command (call it at login, against
   *  session fixation). The new cookie is sent on this response. */
  readonly regenerate: () => void;
  /** Force a write of every value, e.g. after mutating nested data with `detectChanges: false`. */
  readonly changed: () => void;
  /** Send the cookie again on this response. */
  readonly recookie: () => void;
  /** Add a message to a flash queue (default queue ''); with `allowDuplicate` false, a message
   *  already queued is not added twice. Messages are any storable value. (pyramid: flash) */
  readonly flash: (message: unknown, queue?: string, allowDuplicate?: boolean) => void;
  /** The messages of a queue, left in place. */
  readonly peekFlash: (queue?: string) => unknown[];
  /** The messages of a queue, removed from the session; an empty queue costs no write. */
  readonly popFlash: (queue?: string) => unknown[];
  /** Make a new CSRF token for this session (the old one stops being valid). */
  readonly newCsrfToken: () => string;
  /** The session's CSRF token: stable across requests, the same in concurrent requests, and new
   *  after `regenerate()` or `invalidate()` (it is bound to the id). */
  readonly getCsrfToken: () => string;
  /** Set this session's own idle timeout in seconds (0 or null: never expires). Stored in the
   *  session; the expiry moves with it at once (fixing pyramid's B5). */
  readonly adjustTimeout: (seconds: number | null) => void;
  /** Make this session's cookie lifetime `ms` milliseconds (null: a browser-session cookie),
   *  stored with the session: this response and every later cookie for it (key rotation,
   *  `regenerate()`, `recookie()`, rolling) carry it, in place of the `cookie.maxAge`/`expires`
   *  options. */
  readonly adjustCookieMaxAge: (ms: number | null) => void;
  /** "Remember me": this session's idle timeout becomes `seconds` and its cookie a persistent one
   *  of the same lifetime, both stored with it; the cookie rolls with the expiry from then on
   *  (README, "Cookie lifetimes"). Call it at login, after `regenerate()`. */
  readonly rememberFor: (seconds: number) => void;
  /** koa-session's `maxAge`: this session's cookie lifetime in milliseconds, `'session'` for a
   *  browser-session cookie (undefined when the `cookie.expires` option fixes a date). Setting it
   *  is `adjustCookieMaxAge()`: stored with the session. */
  maxAge: number | 'session' | undefined;
  /** koa-session's `populated`: the session holds at least one data key. */
  readonly populated: boolean;
  /** koa-session's `save()`: write every value and send the cookie on this response, changed or
   *  not. (A session holding nothing is still not stored.) */
  readonly save: () => void;
}

// biome-ignore lint/suspicious/noExplicitAny: no SessionData declared: any key, any value (koa-session)
type Loose = { [key: string]: any };

/** The type of `ctx.session`: the application's `SessionData` (every key optional, as a session
 *  may not hold it yet) and the members. Without a `SessionData` declaration any key is allowed. */
export type Session<T extends object = SessionData> = (keyof T extends never ? Loose : Partial<T>) & SessionMembers;

/** Facts the session needs from the middleware, shared by every request. */
export interface SessionSettings {
  serializer: Serializer;
  detectChanges: boolean;
  timeout: number | null;
  /** A fresh id for a session; `lineage` is the id it replaces or moves, `user` the user key's value
   *  as stored when the session holds one (the store's `drawId`). */
  drawId: (lineage: string | null, user: string | null) => string;
  /** Whether a session under `id` is outside the Cluster slot of `user`'s index (the store's
   *  `outsideUserSlot`): giving it that user then moves it, as `regenerate()` does. */
  outsideUserSlot: (id: string, user: string) => boolean;
  /** The cookie lifetime of the `cookie` options, as `maxAge` reads it: milliseconds, 'session', or
   *  undefined when `cookie.expires` fixes a date. */
  defaultLifetime: number | 'session' | undefined;
  /** The `userKey` option: the data key a user's index follows, or null. */
  userKey: string | null;
  /** The `sessionInfo` option. */
  sessionInfo: ((ctx: Context) => Record<string, unknown>) | undefined;
}

/** What a CSRF token signs: the id and the salt, in a form no cookie signature (`name=id`) takes. */
function csrfData(id: string, salt: string): string {
  return `csrf\n${id}\n${salt}`;
}

/** No fields, and no encodings of them. Shared, as they are only ever read. */
const NO_FIELDS: readonly string[] = [];
const NO_TEXTS: ReadonlyMap<string, string> = new Map<string, string>();

/** What a session with no stored counterpart loaded: nothing. Shared, as it is only ever read. */
const NOTHING_LOADED: ReadonlyMap<string, never> = new Map<string, never>();

/** What a field is called in errors. */
function fieldPath(field: string): string {
  if (field.startsWith(DATA_PREFIX)) return `ctx.session.${field.slice(DATA_PREFIX.length)}`;
  if (field.startsWith(FLASH_PREFIX))
    return `ctx.session.flash(…, ${JSON.stringify(field.slice(FLASH_PREFIX.length))})`;
  return `ctx.session (${field})`;
}

/** A serializer's refusal as a TypeError naming the value's path. */
function refused(path: string, err: unknown): never {
  if (err instanceof TypeError && err.message.includes(path)) throw err;
  throw new TypeError(`${path} cannot be stored in the session: ${err instanceof Error ? err.message : String(err)}`, {
    cause: err,
  });
}

/** The longest cookie lifetime taken: 2^31 seconds. Longer ones make no valid expiry date. */
const MAX_LIFETIME = 2 ** 31 * 1000;

function checkLifetime(ms: unknown, what: string): number | null {
  if (ms === null) return null;
  if (typeof ms !== 'number' || !Number.isFinite(ms) || Math.round(ms) < 1 || ms > MAX_LIFETIME) {
    throw new TypeError(
      `${what} must be a number of milliseconds from 1 to 2^31 seconds, ` +
        `or ${what.startsWith('ctx.session.maxAge') ? "'session'" : 'null'} for a browser-session cookie; ` +
        `got ${String(ms)}`,
    );
  }
  return Math.round(ms);
}

/**
 * One request's session. Not exported from the package: the handler sees its Proxy.
 *
 * Everything it stores is a field of the session's hash: `:key` for data, `f:queue` for flash
 * queues, `k` for the CSRF token. `raw` and `touched` are keyed by field name, so one change
 * computation serves them all.
 */
export class SessionState implements WriteSource {
  /** The application's data. */
  data: Record<string, unknown>;
  /** Flash queues and the CSRF token, by field name: not data, never in `Object.keys(ctx.session)`. */
  extras: Record<string, unknown>;
  /** The encoded text of each field as loaded; empty for a session with no stored counterpart. */
  raw: ReadonlyMap<string, string>;
  /** Fields assigned or deleted since the load (or since `invalidate()`). */
  touched: Set<string> | null = null;
  forced = false;
  /** Id of the stored session this request loaded (null if none): the key a patch, delete or
   *  rotate addresses, even after `invalidate()`. */
  readonly storedId: string | null;
  /** `invalidate()` was called: the data in memory no longer belongs to the stored session. */
  invalidated = false;
  /** Id a `regenerate()` moves the session to. */
  nextId: string | null = null;
  created: number;
  timeout: number | null;
  /** `adjustTimeout()` changed the timeout: the write sends it, and the TTL follows. */
  timeoutChanged = false;
  /** This session's own cookie lifetime in ms, as loaded or set: undefined = the options' lifetime,
   *  null = a browser-session cookie. */
  cookieLifetime: number | null | undefined;
  /** `adjustCookieMaxAge()` changed it: the write stores it. */
  lifetimeChanged = false;
  #proxy: object | null = null;
  /** Data keys whose object value the handler was handed: only these can have changed in place. */
  #seen: Set<string> | null = null;
  #written = false;
  #changes: { set: string[]; del: string[] } | null = null;
  #flash: Map<string, FlashChange> | null = null;
  /** The flash queue changes as sent, computed once at the end (each frame gets its message id). */
  #flashSent: { ops: string[]; queues: number } | null = null;
  /** The frames of each flash queue as loaded. */
  #frames: ReadonlyMap<string, { frames: string[]; legacy: boolean }>;
  #allFields: string[] | null = null;
  /** `storedSize()`, kept with `#allFields`: the fits check and the create both ask. */
  #size: number | null = null;
  /** `asciiFields()`, kept with `#allFields` too. */
  #ascii: boolean | null = null;
  #bound: Record<string, unknown> | null = null;
  /** The handle as loaded (a session in a user's index), and the one drawn for a write that puts
   *  the session in a user's index (or another user's). */
  #handle: string | null;
  #newHandle: string | null = null;
  #info: string | null = null;

  constructor(
    readonly settings: SessionSettings,
    readonly run: MachineRun,
    readonly now: number,
    id: string | null,
    loaded: LoadedPayload | null,
    /** The signing keys of this request's app: a CSRF token is their HMAC of the id and the salt. */
    readonly keys: KeyRing,
    /** The request (what `sessionInfo` describes). */
    readonly ctx: Context,
  ) {
    this.storedId = id;
    this.#handle = loaded?.handle ?? null;
    if (loaded) {
      this.data = loaded.data;
      this.extras = loaded.extras;
      this.raw = loaded.raw;
      this.#frames = loaded.frames;
      this.created = loaded.created;
      this.timeout = loaded.timeout;
      this.cookieLifetime = loaded.cookieLifetime;
      // Data an older version stored under a name now reserved stays out of sight: the member wins.
      for (const name of RESERVED_MEMBERS) if (name in this.data) delete this.data[name];
    } else {
      this.data = new NullRecord();
      this.extras = new NullRecord();
      this.raw = NOTHING_LOADED;
      this.#frames = NOTHING_LOADED;
      this.created = now;
      this.timeout = settings.timeout;
      this.cookieLifetime = undefined;
    }
  }

  /** The `ctx.session` object. */
  get proxy(): object {
    return (this.#proxy ??= new Proxy(this, sessionHandler));
  }

  /** Whether a handler ever looked at the session. */
  get accessed(): boolean {
    return this.#proxy !== null;
  }

  get id(): string | null {
    return this.isNew ? null : (this.nextId ?? this.storedId);
  }

  get isNew(): boolean {
    return this.storedId === null || this.invalidated;
  }

  // -- fields ---------------------------------------------------------------------------------

  /** A field's encoding now, or undefined when the session no longer holds it. */
  #current(field: string): string | undefined {
    if (!field.startsWith(DATA_PREFIX))
      return field in this.extras ? this.#encode(field, this.extras[field]) : undefined;
    const key = field.slice(DATA_PREFIX.length);
    return key in this.data ? this.#encode(field, this.data[key]) : undefined;
  }

  /** Encode a value with the serializer; any failure is a TypeError naming the field. */
  #encode(field: string, value: unknown): string {
    const { serializer } = this.settings;
    // The default serializer's plain data needs no path (only an error names it): its text at once.
    const plain = serializer === sessionSerializer ? plainText(value) : undefined;
    if (plain !== undefined) return plain;
    const path = fieldPath(field);
    let text: unknown;
    try {
      text = serializer.stringify(value, path);
    } catch (err) {
      refused(path, err);
    }
    if (typeof text !== 'string')
      throw new TypeError(`${path} cannot be stored in the session: the serializer returned no text`);
    return text;
  }

  /** Refuse, at the assignment, a value that could not be stored (its text is made at the end). */
  #check(field: string, value: unknown): void {
    const { serializer } = this.settings;
    if (serializer === sessionSerializer && isPlainData(value)) return; // no path made: see #encode
    if (serializer.check === undefined) {
      this.#encode(field, value);
      return;
    }
    const path = fieldPath(field);
    try {
      serializer.check(value, path);
    } catch (err) {
      refused(path, err);
    }
  }

  #touch(field: string): void {
    (this.touched ??= new Set()).add(field);
    this.#changes = null;
    this.#markWritten();
  }

  #markWritten(): void {
    this.#allFields = null;
    this.#size = null;
    this.#ascii = null;
    this.#flashSent = null;
    if (!this.#written) {
      this.#written = true;
      this.run.send({ type: 'data.written' });
    }
  }

  /** A data value, as the handler reads it through `ctx.session`. */
  read(key: string): unknown {
    const value = this.data[key];
    if (value !== null && typeof value === 'object') (this.#seen ??= new Set()).add(key);
    return value;
  }

  write(key: string, value: unknown): void {
    if (value === undefined) {
      this.remove(key);
      return;
    }
    const field = DATA_PREFIX + key;
    this.#check(field, value); // refuse what cannot be stored at the assignment itself
    this.data[key] = value;
    this.#touch(field);
    if (key === this.settings.userKey) this.#followUser();
  }

  remove(key: string): void {
    if (!(key in this.data)) return;
    delete this.data[key];
    this.#touch(DATA_PREFIX + key);
  }

  #setExtra(field: string, value: unknown): void {
    this.#check(field, value);
    this.extras[field] = value;
    this.#touch(field);
  }

  /** The session holds something worth storing: data, flash messages or a CSRF token. */
  hasData(): boolean {
    for (const _ in this.data) return true;
    for (const _ in this.extras) return true;
    return false;
  }

  #fields(): string[] {
    const fields: string[] = [];
    for (const key in this.data) fields.push(DATA_PREFIX + key);
    for (const field in this.extras) fields.push(field);
    return fields;
  }

  /** Whether the request changed anything a patch would send (the machine's `changed`). */
  hasChanges(): boolean {
    if (this.timeoutChanged || this.lifetimeChanged) return true;
    if (this.raw === NOTHING_LOADED) {
      // Nothing loaded to compare with (a new or invalidated session): every field it holds was
      // assigned in this request, so any one is a change, and nothing is encoded to know it (a
      // create encodes each value once, in allFields()).
      for (const _ in this.data) return true;
      for (const field in this.extras) if (!field.startsWith(FLASH_PREFIX)) return true;
      return this.#flashOps().queues > 0;
    }
    const { set, del } = this.#changed();
    return set.length + del.length > 0 || this.#flashOps().queues > 0;
  }

  /** What a patch or move sends: changed fields, removed fields and flash queue changes. */
  intent(): WriteIntent {
    const { set, del } = this.#changed(); // only read by the store: not copied
    const { ops, queues } = this.#flashOps();
    return { set, del, flash: ops, flashQueues: queues };
  }

  /** Flash queue changes, per queue: field, frames appended, k, and the k loaded frames popped.
   *  Computed once: `hasChanges()` and `intent()` both ask. */
  #flashOps(): { ops: string[]; queues: number } {
    if (this.#flashSent !== null) return this.#flashSent;
    if (this.#flash === null) return (this.#flashSent = { ops: [], queues: 0 });
    return (this.#flashSent = flashChanges(
      this.#flash,
      this.#frames,
      (field) => this.extras[field] as unknown[] | undefined,
      (field, message) => this.#encode(field, message),
    ));
  }

  /** The changed fields (field, value pairs) and removed fields, flash queues aside, computed once
   *  at the end. Each call returns fresh arrays. */
  changes(): { set: string[]; del: string[] } {
    const { set, del } = this.#changed();
    return { set: [...set], del: [...del] };
  }

  /** `changes()`, computed once and shared: for the callers here, which only read it. */
  #changed(): { readonly set: string[]; readonly del: string[] } {
    if (this.#changes) return this.#changes;
    // Untouched and never handed out: nothing can have changed, not even nested values.
    if (!this.accessed && this.touched === null && !this.forced && !this.timeoutChanged && !this.lifetimeChanged) {
      return (this.#changes = { set: [], del: [] });
    }
    // What was assigned or removed: data keys and the CSRF field, never a flash queue (those are
    // sent as appends and pops: #flashOps). Copied only when more is added.
    let candidates: Iterable<string> = this.touched ?? NO_FIELDS;
    if (this.forced) {
      const all = new Set<string>(this.touched);
      for (const field of this.#fields()) if (!field.startsWith(FLASH_PREFIX)) all.add(field);
      for (const field of this.raw.keys()) if (!field.startsWith(FLASH_PREFIX)) all.add(field);
      candidates = all;
    } else if (this.settings.detectChanges && this.#seen !== null) {
      // Nested changes: an object value the handler was handed. One it never saw is as loaded; not
      // re-encoding it is what keeps a read of one key from paying for the whole session.
      const all = new Set<string>(this.touched);
      for (const key of this.#seen) if (key in this.data) all.add(DATA_PREFIX + key);
      candidates = all;
    }
    const { set, del } = fieldChanges(candidates, this.raw, this.forced, (field) => this.#current(field));
    if (this.lifetimeChanged) set.push(LIFETIME_FIELD, this.#lifetimeText());
    return (this.#changes = { set, del });
  }

  /** Every field as field, value pairs (reusing the encodings a change computation made, if one ran). */
  allFields(): string[] {
    if (this.#allFields) return this.#allFields;
    const written = this.#changes === null ? NO_TEXTS : this.#writtenTexts();
    const out: string[] = [];
    for (const key in this.data) {
      const field = DATA_PREFIX + key;
      out.push(field, written.get(field) ?? this.#encode(field, this.data[key]));
    }
    for (const field in this.extras) {
      if (field.startsWith(FLASH_PREFIX)) {
        let text = '';
        for (const message of this.extras[field] as unknown[]) text += frame(this.#encode(field, message));
        out.push(field, text);
      } else {
        out.push(field, written.get(field) ?? this.#encode(field, this.extras[field]));
      }
    }
    if (this.cookieLifetime !== undefined) out.push(LIFETIME_FIELD, this.#lifetimeText());
    // Stored whole (create, replace), the session is new: in a user's index under a new handle.
    const { userKey } = this.settings;
    if (userKey !== null && userKey in this.data) {
      out.push(HANDLE_FIELD, this.newHandle());
      const info = this.info();
      if (info !== '') out.push(INFO_FIELD, info);
    }
    return (this.#allFields = out);
  }

  /** The stored form of the session's own cookie lifetime: ms, or 0 for a browser-session cookie. */
  #lifetimeText(): string {
    return String(this.cookieLifetime ?? 0);
  }

  /** Whether a cookie sent for this session now is persistent (it has an expiry). */
  persistentCookie(): boolean {
    return this.cookieLifetime !== undefined
      ? this.cookieLifetime !== null
      : this.settings.defaultLifetime !== 'session';
  }

  /** The encodings of the fields this request's write changes, by field. */
  #writtenTexts(): Map<string, string> {
    const { set } = this.#changed();
    const written = new Map<string, string>();
    for (let i = 0; i + 1 < set.length; i += 2) written.set(set[i] as string, set[i + 1] as string);
    return written;
  }

  /** Bytes the whole session's fields take as create and replace store them: what `maxSize` limits
   *  there (the stored total of a session written by a patch is checked by its script, counted the
   *  same way). */
  storedSize(): number {
    if (this.#size !== null) return this.#size;
    return (this.#size = entriesSize(this.allFields(), this.asciiFields()));
  }

  /** Whether every text of `allFields()` is ASCII (src/store/layout.ts, `allAscii`): the size check
   *  and a create's packing both need it, and ask once. */
  asciiFields(): boolean {
    return (this.#ascii ??= allAscii(this.allFields()));
  }

  /** The user key's value as stored, when the session holds one (and the option is set). */
  #user(): string | null {
    const { userKey } = this.settings;
    if (userKey === null || !(userKey in this.data)) return null;
    return this.#encode(DATA_PREFIX + userKey, this.data[userKey]);
  }

  /** A fresh id: on Cluster, in the slot of the user's index when the session holds a user. */
  #draw(): string {
    return this.settings.drawId(this.storedId, this.#user());
  }

  /**
   * The user key was assigned: on Cluster a session whose id is outside that user's slot moves into
   * it, as `regenerate()` moves it (a login: one command more there, README, "A user's sessions");
   * an id already drawn for it elsewhere is drawn again.
   */
  #followUser(): void {
    const user = this.#user();
    if (user === null) return;
    const id = this.nextId ?? (this.isNew ? null : this.storedId);
    if (id === null || !this.settings.outsideUserSlot(id, user)) return;
    if (this.isNew) this.nextId = null;
    else this.regenerate();
  }

  /**
   * At the end of the request, before the machine hears of it: a user key's value that may have
   * changed in place (an object the handler was handed, or a `save()`) is followed as an assignment
   * is (#followUser). Its index is taken from the value as written, so on Cluster the id must be in
   * that user's slot, or the write's script would reach into another slot.
   */
  followUserAtEnd(): void {
    const { userKey } = this.settings;
    if (userKey !== null && (this.#seen?.has(userKey) || this.forced)) this.#followUser();
  }

  /** The handle a write stores when it puts the session in a user's index, or in another user's
   *  (drawn once: `ctx.session.handle` shows it before the write). 96 random bits: a name, not a key. */
  newHandle(): string {
    return (this.#newHandle ??= randomBytes(12).toString('base64url'));
  }

  /** What the `sessionInfo` option describes of this request, encoded ('' without the option). */
  info(): string {
    if (this.#info !== null) return this.#info;
    const describe = this.settings.sessionInfo;
    if (describe === undefined) return (this.#info = '');
    try {
      return (this.#info = this.#encode(INFO_FIELD, describe(this.ctx) ?? {}));
    } catch (err) {
      throw new TypeError(
        'koaRedisSession: option "sessionInfo" failed or described what cannot be stored: ' +
          (err instanceof Error ? err.message : String(err)),
        { cause: err },
      );
    }
  }

  /** `ctx.session.handle`: the session's name in its user's list, null while it is in none (or new
   *  and not yet holding the user key). */
  get handle(): string | null {
    const user = this.#user();
    if (user === null) return null;
    // The user as loaded: the stored handle; else this request puts it in the user's index.
    if (!this.isNew && this.#handle !== null && this.raw.get(DATA_PREFIX + this.settings.userKey) === user)
      return this.#handle;
    return this.newHandle();
  }

  /** The id a create, move or replace stores under: the one already drawn (regenerate(), or a CSRF
   *  token made for it), then fresh ones after a collision. */
  drawId(attempt: number): string {
    if (attempt === 0 && this.nextId !== null) return this.nextId;
    return this.#draw();
  }

  // -- members --------------------------------------------------------------------------------

  invalidate(): void {
    this.data = new NullRecord();
    this.extras = new NullRecord();
    this.raw = NOTHING_LOADED;
    this.#frames = NOTHING_LOADED;
    this.touched = null;
    this.#seen = null;
    this.forced = false;
    this.invalidated = true;
    this.nextId = null;
    this.created = this.now;
    this.timeout = this.settings.timeout;
    this.timeoutChanged = false;
    this.cookieLifetime = undefined;
    this.lifetimeChanged = false;
    this.#handle = null;
    this.#newHandle = null;
    this.#written = false;
    this.#changes = null;
    this.#flash = null;
    this.#flashSent = null;
    this.#allFields = null;
    this.#size = null;
    this.#ascii = null;
    this.run.send({ type: 'session.invalidated' });
  }

  regenerate(): void {
    if (!this.isNew) this.nextId = this.#draw();
    this.run.send({ type: 'session.regenerated' });
  }

  changed(): void {
    this.forced = true;
    this.#changes = null;
    this.#allFields = null;
    this.#size = null;
    this.#ascii = null;
    this.run.send({ type: 'data.written' });
  }

  recookie(): void {
    this.run.send({ type: 'session.recookied' });
  }

  #flashChange(field: string): FlashChange {
    const changes = (this.#flash ??= new Map());
    let change = changes.get(field);
    if (change === undefined) changes.set(field, (change = { popped: false, added: [] }));
    return change;
  }

  flash(message: unknown, queue = '', allowDuplicate = true): void {
    if (typeof queue !== 'string') throw new TypeError('ctx.session.flash(message, queue): queue must be a string');
    checkName(queue, 'ctx.session.flash() queue');
    const field = FLASH_PREFIX + queue;
    const current = (this.extras[field] as unknown[] | undefined) ?? [];
    if (!allowDuplicate) {
      const text = this.#encode(field, message);
      if (current.some((m) => this.#encode(field, m) === text)) return;
    }
    this.#check(field, message);
    this.extras[field] = [...current, message];
    this.#flashChange(field).added.push(message);
    this.#markWritten();
  }

  peekFlash(queue = ''): unknown[] {
    return [...((this.extras[FLASH_PREFIX + queue] as unknown[] | undefined) ?? [])];
  }

  popFlash(queue = ''): unknown[] {
    const field = FLASH_PREFIX + queue;
    const messages = (this.extras[field] as unknown[] | undefined) ?? [];
    if (messages.length === 0) return messages;
    delete this.extras[field];
    // Takes what it loaded (if no other request took it first) and drops what it added unstored.
    const change = this.#flashChange(field);
    change.popped = this.#frames.has(field);
    change.added = [];
    this.#markWritten();
    return messages;
  }

  /**
   * CSRF tokens are HMACs, with the signing keys, of the session id and a stored salt (OWASP's
   * HMAC-based token pattern:
   * https://cheatsheetseries.owasp.org/cheatsheets/Cross-Site_Request_Forgery_Prevention_Cheat_Sheet.html).
   * Bound to the id, the token needs no write and concurrent first uses agree; a regenerate or a
   * new session gives a new one. A session not stored yet keeps an empty salt so it is stored.
   */
  getCsrfToken(): string {
    if (this.isNew && !(CSRF_FIELD in this.extras)) this.#setExtra(CSRF_FIELD, '');
    return this.#csrfToken();
  }

  newCsrfToken(): string {
    this.#setExtra(CSRF_FIELD, randomBytes(16).toString('hex'));
    return this.#csrfToken();
  }

  #csrfToken(): string {
    // The id this request leaves the session under: drawn now for a session not stored yet.
    const id = this.isNew ? (this.nextId ??= this.#draw()) : (this.nextId ?? (this.storedId as string));
    return this.keys.sign(csrfData(id, this.#salt()));
  }

  #salt(): string {
    const salt = this.extras[CSRF_FIELD];
    return typeof salt === 'string' ? salt : '';
  }

  /** Whether `sent` is the CSRF token of the session this request loaded (any key of the ring). */
  csrfValid(sent: string): boolean {
    if (this.storedId === null || this.invalidated) return false;
    return this.keys.index(csrfData(this.storedId, this.#salt()), sent) >= 0;
  }

  adjustTimeout(seconds: number | null): void {
    const timeout = toTimeout(seconds); // the `timeout` option's rule
    if (timeout === undefined) {
      throw new TypeError(
        'ctx.session.adjustTimeout(seconds): seconds must be a whole number of seconds, ' +
          `or 0/null for never; got ${String(seconds)}`,
      );
    }
    this.timeout = timeout;
    this.timeoutChanged = true;
    this.#changes = null;
    this.#markWritten();
  }

  adjustCookieMaxAge(ms: number | null, what = 'ctx.session.adjustCookieMaxAge(ms): ms'): void {
    this.cookieLifetime = checkLifetime(ms, what);
    this.lifetimeChanged = true;
    this.#changes = null;
    this.#markWritten();
    this.run.send({ type: 'session.recookied' });
  }

  rememberFor(seconds: number): void {
    if (!isSeconds(seconds))
      throw new TypeError(
        `ctx.session.rememberFor(seconds): seconds must be a whole number of seconds above 0; got ${String(seconds)}`,
      );
    this.adjustTimeout(seconds);
    this.adjustCookieMaxAge(seconds * 1000);
  }

  /** `maxAge`, as koa-session reads it. */
  get maxAge(): number | 'session' | undefined {
    if (this.cookieLifetime !== undefined) return this.cookieLifetime ?? 'session';
    return this.settings.defaultLifetime;
  }

  set maxAge(value: unknown) {
    this.adjustCookieMaxAge(
      value === 'session' ? null : (value as number),
      "ctx.session.maxAge (koa-session's cookie lifetime)",
    );
  }

  populated(): boolean {
    for (const _ in this.data) return true;
    return false;
  }

  save(): void {
    this.changed();
    this.recookie();
  }

  /** Replace all data (the `ctx.session = {...}` setter); keeps the id. All or nothing: every key
   *  and value is checked before anything changes. `maxAge` sets the cookie lifetime, as koa-session's
   *  constructor does. */
  replace(value: Record<string, unknown>): void {
    const keys = Object.keys(value);
    for (const key of keys) {
      if (key === 'maxAge')
        checkLifetime(
          value.maxAge === 'session' ? null : value.maxAge,
          "ctx.session.maxAge (koa-session's cookie lifetime)",
        );
      else {
        checkKey(key, value[key]);
        if (value[key] !== undefined) this.#check(DATA_PREFIX + key, value[key]);
      }
    }
    for (const key in this.data) this.remove(key);
    // Every key was checked above: written without checking (or encoding) it a second time.
    for (const key of keys) {
      if (key === 'maxAge') this.maxAge = value.maxAge;
      else if (value[key] === undefined) this.remove(key);
      else {
        this.data[key] = value[key];
        this.#touch(DATA_PREFIX + key);
      }
    }
    if (this.settings.userKey !== null && this.settings.userKey in value) this.#followUser();
  }

  /** Bound member functions, made once per session on first use. */
  member(name: string): unknown {
    const bound = (this.#bound ??= {
      invalidate: () => this.invalidate(),
      regenerate: () => this.regenerate(),
      changed: () => this.changed(),
      recookie: () => this.recookie(),
      flash: (message: unknown, queue?: string, allowDuplicate?: boolean) => this.flash(message, queue, allowDuplicate),
      peekFlash: (queue?: string) => this.peekFlash(queue),
      popFlash: (queue?: string) => this.popFlash(queue),
      newCsrfToken: () => this.newCsrfToken(),
      getCsrfToken: () => this.getCsrfToken(),
      adjustTimeout: (seconds: number | null) => this.adjustTimeout(seconds),
      adjustCookieMaxAge: (ms: number | null) => this.adjustCookieMaxAge(ms),
      rememberFor: (seconds: number) => this.rememberFor(seconds),
      save: () => this.save(),
    });
    return bound[name];
  }

  /** util.inspect / console.log show the data only. Node looks this up on the Proxy's target but
   *  calls it with the Proxy as `this`, whose own keys are the data keys. */
  [inspect.custom](): object {
    return types.isProxy(this) ? { ...this } : { ...this.data };
  }
}
