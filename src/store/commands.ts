/**
 * The only module that talks to Redis. Before `await next()` it sends the load; after, it turns the
 * final state's output into exactly one ioredis call (an exhaustive switch: a new command means a
 * new final state). Scripts are registered with ioredis `defineCommand`, which sends `EVAL` the first
 * time on each connection and `EVALSHA` after that: one command either way.
 */
import type { Cluster, Redis } from 'ioredis';
import { SessionStoreError } from '../errors.js';
import { FORMAT_VERSION, decodeHash, type LoadedPayload, type Serializer } from '../payload.js';
import type { RedisCommand } from '../policy.js';
import { createLua, loadLua, patchLua, rotateLua } from './scripts.generated.js';

/** The custom commands this module defines on the client (ioredis adds a `…Buffer` variant of each,
 *  whose reply keeps bulk strings as Buffers). Versioned names: a script whose arguments or reply
 *  change gets a new name, so two versions of this package can share one client. */
interface SessionCommands {
  ksmLoadV2Buffer(key: string, now: number, trigger: number, ttl: string, version: number): Promise<[number, number?, Buffer?]>;
  ksmCreateV1(key: string, ttl: number, ...fields: string[]): Promise<number>;
  ksmPatchV1(key: string, ttl: number, pairs: number, ...fields: string[]): Promise<number>;
  ksmRotateV1(oldKey: string, newKey: string, mode: 'move' | 'fresh', ttl: number, pairs: number, ...fields: string[]): Promise<number>;
}

export type RedisClient = Redis | Cluster;

const NON_ASCII = /[^\x00-\x7f]/;

function malformed(): never {
  throw new Error('session store: malformed load reply');
}

/**
 * The fields of load.lua's reply, a MessagePack array of strings (Redis' cmsgpack), back to the flat
 * field, value list HGETALL gives. Only what cmsgpack makes of a Lua array of strings is read:
 * fixarray, array 16/32; fixstr, str 8/16/32 (and bin, which older packers use for the same).
 * Anything else is a broken reply, never a session. An ASCII value (plain JSON of ASCII data, the
 * usual case) is cut from one decoding of the whole reply instead of decoded on its own.
 */
export function unpackFields(packed: Buffer | undefined): string[] {
  if (packed === undefined || packed.length === 0) return malformed();
  const end = packed.length;
  let at = 1;
  const head = packed[0] as number;
  let count: number;
  if (head >= 0x90 && head <= 0x9f) count = head & 0x0f;
  else if (head === 0xdc && end >= 3) (count = packed.readUInt16BE(1)), (at = 3);
  else if (head === 0xdd && end >= 5) (count = packed.readUInt32BE(1)), (at = 5);
  else return malformed();
  if (count > end - at) return malformed(); // each item takes a byte at least: no huge allocation
  const out = new Array<string>(count);
  const text = packed.toString('latin1');
  for (let i = 0; i < count; i++) {
    const type = packed[at++];
    let length: number;
    if (type === undefined) return malformed();
    if (type >= 0xa0 && type <= 0xbf) length = type & 0x1f;
    else if ((type === 0xd9 || type === 0xc4) && at + 1 <= end) length = packed[at++] as number;
    else if ((type === 0xda || type === 0xc5) && at + 2 <= end) (length = packed.readUInt16BE(at)), (at += 2);
    else if ((type === 0xdb || type === 0xc6) && at + 4 <= end) (length = packed.readUInt32BE(at)), (at += 4);
    else return malformed();
    if (at + length > end) return malformed();
    const piece = text.slice(at, at + length);
    out[i] = NON_ASCII.test(piece) ? packed.toString('utf8', at, at + length) : piece;
    at += length;
  }
  if (at !== end) return malformed();
  return out;
}

/** Result of the load. */
export type LoadResult =
  | { readonly status: 'found'; readonly refreshed: boolean; readonly payload: LoadedPayload }
  | { readonly status: 'missing' | 'expired' | 'legacy' };

const MISSING: LoadResult = { status: 'missing' };
const EXPIRED: LoadResult = { status: 'expired' };
const LEGACY: LoadResult = { status: 'legacy' };

/** What a write needs from the session, computed only for the command that needs it. */
export interface WriteSource {
  /** Id of the stored session (patch, delete, rotate's old key). */
  readonly storedId: string | null;
  readonly created: number;
  readonly timeout: number | null;
  /** The timeout was changed by this request (a TTL may have to be removed). */
  readonly timeoutChanged: boolean;
  /** `invalidate()` was called: a rotate stores fresh data instead of moving the stored session. */
  readonly invalidated: boolean;
  /** Every field as field, value pairs (create, rotate). */
  allFields(): string[];
  /** Changed fields as field, value pairs, and removed fields (patch). */
  changes(): { set: string[]; del: string[] };
  /** The id a create or rotate stores under: a fresh draw on each call after a collision. */
  drawId(attempt: number): string;
}

/** What the write did. `id` is the id the session now lives under, or null if it has none. */
export type WriteResult =
  | { readonly stored: true; readonly id: string | null }
  | { readonly stored: false; readonly id: null; readonly reason: 'gone' };

export interface StoreSettings {
  prefix: string;
  timeoutTrigger: number | null;
  setRedisTtl: boolean;
  serializer: Serializer;
  /** Milliseconds a command may take before it counts as failed. */
  commandTimeout: number;
}

/** How many fresh ids a create or rotate may draw before giving up. */
const MAX_ID_DRAWS = 3;

export class SessionStore {
  readonly #redis: RedisClient & SessionCommands;
  readonly #settings: StoreSettings;
  readonly #trigger: number;
  readonly #ttlFlag: string;
  /** A Redis Cluster: the old and the new key of a rotate live in different slots. */
  readonly #cluster: boolean;
  /** The client's own `commandTimeout` (ioredis), when it bounds commands at least as tightly as
   *  ours: then no second timer per command. Clients this package creates are always set so. */
  readonly #clientTimeout: number | null;

  constructor(redis: RedisClient, settings: StoreSettings) {
    redis.defineCommand('ksmLoadV2', { numberOfKeys: 1, lua: loadLua });
    redis.defineCommand('ksmCreateV1', { numberOfKeys: 1, lua: createLua });
    redis.defineCommand('ksmPatchV1', { numberOfKeys: 1, lua: patchLua });
    redis.defineCommand('ksmRotateV1', { numberOfKeys: 2, lua: rotateLua });
    this.#redis = redis as RedisClient & SessionCommands;
    this.#settings = settings;
    this.#trigger = settings.timeoutTrigger ?? -1;
    this.#ttlFlag = settings.setRedisTtl ? '1' : '0';
    this.#cluster = (redis as { isCluster?: boolean }).isCluster === true;
    const own = this.#cluster ? undefined : (redis as Redis).options?.commandTimeout;
    this.#clientTimeout = typeof own === 'number' && own > 0 && own <= settings.commandTimeout ? own : null;
  }

  key(id: string): string {
    return this.#settings.prefix + id;
  }

  /**
   * Send one command, bounded by `commandTimeout` whoever owns the client (by the client's own
   * timer when it has one at least as tight, else by ours), with any failure turned
   * into a `SessionStoreError` (raw ioredis errors never reach the application; the original is its
   * `cause`). A command that times out may still run later; it is reported as failed all the same,
   * never as saved.
   */
  /**
   * Coalesce the commands of concurrent requests into one socket write. The first command sent in
   * an event-loop turn corks the client's socket; the check phase of that turn (`setImmediate`)
   * uncorks it, and every command written meanwhile (the loads of all requests whose HTTP data
   * arrived in the same poll, the writes of all requests whose loads were answered by one read)
   * goes out in one `writev`. Redis then reads them in one go and answers in one write too. Same
   * commands, same order, a write later by at most the rest of the turn; measured in issue 5, the
   * per-command syscall was a fifth of a request's server CPU, and Redis' own CPU per request fell
   * by half. Not on a Cluster, whose command reaches a node picked per key.
   */
  #batch(): void {
    if (this.#corked !== null || this.#cluster) return;
    const client = this.#redis as Redis;
    const stream = client.stream;
    if (client.status !== 'ready' || typeof stream?.cork !== 'function' || stream.destroyed) return;
    stream.cork();
    this.#corked = stream;
    setImmediate(this.#uncork);
  }

  #corked: { uncork(): void } | null = null;
  readonly #uncork = (): void => {
    const stream = this.#corked;
    this.#corked = null;
    stream?.uncork();
  };

  async #send<T>(command: string, id: string | null, call: () => Promise<T>): Promise<T> {
    this.#batch();
    if (this.#clientTimeout !== null) {
      try {
        return await call();
      } catch (err) {
        if (err instanceof Error && err.message === 'Command timed out') {
          throw new SessionStoreError(`session store unavailable: ${command} did not answer within ${this.#clientTimeout} ms (option commandTimeout)`, id, command, { cause: err });
        }
        throw this.#failed(command, id, err);
      }
    }
    const ms = this.#settings.commandTimeout;
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new SessionStoreError(`session store unavailable: ${command} did not answer within ${ms} ms (option commandTimeout)`, id, command)),
        ms,
      );
    });
    try {
      return await Promise.race([call(), expired]);
    } catch (err) {
      if (err instanceof SessionStoreError) throw err;
      throw this.#failed(command, id, err);
    } finally {
      clearTimeout(timer);
    }
  }

  #failed(command: string, id: string | null, err: unknown): SessionStoreError {
    const message = err instanceof Error ? err.message : String(err);
    return new SessionStoreError(`session store unavailable: ${command} failed: ${message}`, id, command, { cause: err });
  }

  /** The one load: read the session, fold in a due refresh, remove an expired or legacy key.
   *  Throws `RawDeserializationError` when a value cannot be decoded. */
  async load(id: string, now: number): Promise<LoadResult> {
    const reply = await this.#send('load', id, () => this.#redis.ksmLoadV2Buffer(this.key(id), now, this.#trigger, this.#ttlFlag, FORMAT_VERSION));
    switch (reply[0]) {
      case 1:
        return { status: 'found', refreshed: reply[1] === 1, payload: decodeHash(id, unpackFields(reply[2]), this.#settings.serializer) };
      case 2:
        return EXPIRED;
      case 3:
        return LEGACY;
      default:
        return MISSING;
    }
  }

  /** The command of a final state. Exactly one ioredis call, except a create or rotate whose fresh
   *  id collided with an existing key, which draws again. */
  async write(command: RedisCommand, source: WriteSource, now: number): Promise<WriteResult> {
    switch (command) {
      case 'none':
        return { stored: true, id: source.storedId };
      case 'create':
        return this.#create(source, now, null);
      case 'rotate':
        if (this.#cluster) return this.#rotateAcrossSlots(source, now);
        return source.invalidated ? this.#create(source, now, source.storedId) : this.#move(source, now);
      case 'patch': {
        const id = source.storedId as string;
        const { set, del } = this.#changes(source, now);
        const ttl = this.#patchTtl(source);
        const applied = await this.#send('patch', id, () => this.#redis.ksmPatchV1(this.key(id), ttl, set.length / 2, ...set, ...del));
        return applied === 1 ? { stored: true, id } : { stored: false, id: null, reason: 'gone' };
      }
      case 'delete': {
        const id = source.storedId as string;
        await this.#send('delete', id, () => this.#redis.del(this.key(id)));
        return { stored: true, id: null };
      }
      default: {
        const unknown: never = command;
        throw new TypeError(`session store: unknown command ${String(unknown)}`);
      }
    }
  }

  /** This request's changes, with the expiry moved when the session has a timeout. */
  #changes(source: WriteSource, now: number): { set: string[]; del: string[] } {
    const { set, del } = source.changes();
    if (source.timeout !== null) set.push('x', String(now + source.timeout));
    return { set, del };
  }

  /** TTL for a write of changes: a timeout adjusted to "never" removes the key's TTL (-1: PERSIST). */
  #patchTtl(source: WriteSource): number {
    return source.timeout === null && source.timeoutChanged && this.#settings.setRedisTtl ? -1 : this.#ttl(source.timeout);
  }

  /** regenerate(): the stored session moves to a new id with this request's changes applied. */
  async #move(source: WriteSource, now: number): Promise<WriteResult> {
    const oldId = source.storedId as string;
    const { set, del } = this.#changes(source, now);
    const ttl = this.#patchTtl(source);
    return this.#underFreshId(source, (id) =>
      this.#send('rotate', oldId, () => this.#redis.ksmRotateV1(this.key(oldId), this.key(id), 'move', ttl, set.length / 2, ...set, ...del)),
    );
  }

  /**
   * Store under a freshly drawn id: `store(id)` answers 1 (stored), 0 (the id is taken: draw again)
   * or -1 (the session it moves no longer exists). With 256-bit ids a second draw is already a
   * once-in-the-universe event; a custom genId that repeats itself fails loudly.
   */
  async #underFreshId(source: WriteSource, store: (id: string) => Promise<number>): Promise<WriteResult> {
    for (let attempt = 0; attempt < MAX_ID_DRAWS; attempt++) {
      const id = source.drawId(attempt);
      const result = await store(id);
      if (result === 1) return { stored: true, id };
      if (result === -1) return { stored: false, id: null, reason: 'gone' };
    }
    throw new Error(`session store: ${MAX_ID_DRAWS} generated session ids in a row already existed; genId does not produce unique ids`);
  }

  #ttl(timeout: number | null): number {
    return timeout !== null && this.#settings.setRedisTtl ? timeout : 0;
  }

  /**
   * Rotate on Redis Cluster, where one script cannot touch two keys of different slots (CROSSSLOT):
   * create the new key first, then delete the old one. Two commands instead of one atomic script;
   * at no moment does the session exist under neither id.
   */
  async #rotateAcrossSlots(source: WriteSource, now: number): Promise<WriteResult> {
    const result = await this.#create(source, now, null);
    const oldId = source.storedId as string;
    await this.#send('delete', oldId, () => this.#redis.del(this.key(oldId)));
    return result;
  }

  async #create(source: WriteSource, now: number, oldId: string | null): Promise<WriteResult> {
    const t = source.timeout;
    const fields = ['c', String(source.created), 'v', String(FORMAT_VERSION)];
    if (t !== null) fields.push('t', String(t), 'x', String(now + t));
    for (const f of source.allFields()) fields.push(f);
    const ttl = this.#ttl(t);
    return this.#underFreshId(source, (id) =>
      oldId !== null
        ? // After invalidate(): the old session goes and fresh data is stored under a new id, in one script.
          this.#send('rotate', oldId, () => this.#redis.ksmRotateV1(this.key(oldId), this.key(id), 'fresh', ttl, fields.length / 2, ...fields))
        : this.#send('create', null, () => this.#redis.ksmCreateV1(this.key(id), ttl, ...fields)),
    );
  }
}
