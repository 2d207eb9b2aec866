/**
 * The only module that talks to Redis. Before `await next()` it sends the load; after, it turns the
 * final state's output into exactly one ioredis call (an exhaustive switch: a new command means a
 * new final state). Scripts are registered with ioredis `defineCommand`, which sends `EVAL` the first
 * time on each connection and `EVALSHA` after that: one command either way.
 */
import { randomBytes } from 'node:crypto';
import type { Cluster, Redis } from 'ioredis';
import { RawDeserializationError, SessionStoreError } from '../errors.js';
import { decodeFields, type LoadedPayload, type Serializer } from '../payload.js';
import type { RedisCommand } from '../policy.js';
import { FORMAT_VERSION, header, packSession, type StoredSession, unpackSession } from './layout.js';
import { endLua, loadLua, patchLua, rotateLua } from './scripts.generated.js';

/** The custom commands this module defines on the client (ioredis adds a `…Buffer` variant of each,
 *  whose reply keeps bulk strings as Buffers). Versioned names: a script whose arguments or reply
 *  change gets a new name, so two versions of this package can share one client. */
interface SessionCommands {
  ksmLoadV6Buffer(
    key: string,
    now: number,
    trigger: number,
    ttl: string,
    version: number,
    absolute: number,
    timeout: number,
  ): Promise<[number, number?, Buffer?]>;
  // Arguments go as arrays (ioredis flattens them): spreading 100 000 fields into a call would
  // overflow the JavaScript stack.
  ksmPatchV4(key: string, intent: ReadonlyArray<string | number>): Promise<number>;
  ksmRotateV4(
    oldKey: string,
    newKey: string,
    mode: 'move' | 'replace',
    ...args: Array<string | number | Buffer | ReadonlyArray<string | number>>
  ): Promise<number>;
  ksmEndV2(key: string): Promise<number>;
}

export type RedisClient = Redis | Cluster;

/** Result of the load. */
export type LoadResult =
  | {
      readonly status: 'found';
      readonly refreshed: boolean;
      readonly refreshRefused: boolean;
      readonly payload: LoadedPayload;
    }
  | { readonly status: 'missing' | 'expired' | 'legacy' };

const MISSING: LoadResult = { status: 'missing' };
const EXPIRED: LoadResult = { status: 'expired' };
const LEGACY: LoadResult = { status: 'legacy' };

/** What a write needs from the session, computed only for the command that needs it. */
export interface WriteSource {
  /** Id of the stored session (patch, move, replace and delete address it). */
  readonly storedId: string | null;
  readonly created: number;
  /** The session's timeout as this request leaves it (what create and replace store). */
  readonly timeout: number | null;
  /** `adjustTimeout()` was called: the write carries the new timeout as an intent. */
  readonly timeoutChanged: boolean;
  /** Every field as field, value pairs (create, replace). */
  allFields(): string[];
  /** Bytes the fields of `allFields()` take as stored (src/store/layout.ts, `entrySize`): the
   *  session's size as create and replace store it. */
  storedSize(): number;
  /** This request's changes (patch, move): fields to set (field, value pairs), fields to delete,
   *  and flash queue changes. */
  intent(): WriteIntent;
  /** The id a create, move or replace stores under: a fresh draw on each call after a collision. */
  drawId(attempt: number): string;
}

export interface WriteIntent {
  readonly set: readonly string[];
  readonly del: readonly string[];
  /** Per flash queue changed: field, frames appended, k, the k loaded frames popped. */
  readonly flash: readonly string[];
  readonly flashQueues: number;
}

/** What Redis answered to a write (the machine's `write.*` events), and the id the session now
 *  lives under (null when it has none). */
export type WriteAnswer = 'stored' | 'ended' | 'gone' | 'tooLarge';
export interface WriteResult {
  readonly answer: WriteAnswer;
  readonly id: string | null;
}

export interface StoreSettings {
  prefix: string;
  /** The `timeout` option: what `timeoutTrigger` is set against (a session's own timeout scales it). */
  timeout: number | null;
  timeoutTrigger: number | null;
  absoluteTimeout: number | null;
  setRedisTtl: boolean;
  serializer: Serializer;
  /** Milliseconds a command may take before it counts as failed. */
  commandTimeout: number;
  /** Largest stored session, in bytes: patch and move scripts check it against the stored total. */
  maxSize: number;
  /** A patch that leaves no data field deletes the session. */
  invalidateEmptySession: boolean;
  genId: () => string;
  idPattern: RegExp;
}

/** Characters of an id that form its Redis Cluster hash tag (48 bits at the default alphabet). */
export const TAG_LENGTH = 8;

/** How many fresh ids a create or rotate may draw before giving up. */
const MAX_ID_DRAWS = 3;

export class SessionStore {
  readonly #redis: RedisClient & SessionCommands;
  readonly #settings: StoreSettings;
  readonly #trigger: number;
  /** absoluteTimeout in seconds, -1 for none, as the scripts take it. */
  readonly #absolute: number;
  readonly #ttlFlag: string;
  /** A Redis Cluster: commands are batched per node (every master's socket is corked). */
  readonly #cluster: boolean;
  /** Whether this store corks sockets at all: not when the client autopipelines our scripts
   *  (ioredis `enableAutoPipelining`), which batches them per node already. */
  readonly #batching: boolean;
  /** Keys carry a hash tag made of the id's first characters, which the ids a session is moved to
   *  share: a rotate and a logout that follows the session's moves stay in one slot, one script.
   *  Not when the prefix holds a hash tag of its own: then every session shares one slot already. */
  readonly #tagged: boolean;
  /** The client's own `commandTimeout` (ioredis), when it bounds commands at least as tightly as
   *  ours: then no second timer per command. Clients this package creates are always set so. */
  readonly #clientTimeout: number | null;

  constructor(redis: RedisClient, settings: StoreSettings) {
    for (const [name, script] of Object.entries(SCRIPTS)) redis.defineCommand(name, script);
    this.#redis = redis as RedisClient & SessionCommands;
    this.#settings = settings;
    this.#trigger = settings.timeoutTrigger ?? -1;
    this.#absolute = settings.absoluteTimeout ?? -1;
    this.#ttlFlag = settings.setRedisTtl ? '1' : '0';
    this.#cluster = (redis as { isCluster?: boolean }).isCluster === true;
    this.#batching = !autopipelines(redis);
    this.#tagged = this.#cluster && hashTag(`${settings.prefix}x`) === null;
    if (
      this.#tagged &&
      (hashTag(this.key('AAAAAAAAb')) === null || hashTag(this.key('AAAAAAAAb')) !== hashTag(this.key('AAAAAAAAc')))
    ) {
      throw new TypeError(
        `koaRedisSession: option "prefix" ${JSON.stringify(settings.prefix)} defeats Redis Cluster hash tags (an empty "{}"): a regenerate could not be one command`,
      );
    }
    const own = this.#cluster ? undefined : (redis as Redis).options?.commandTimeout;
    this.#clientTimeout = typeof own === 'number' && own > 0 && own <= settings.commandTimeout ? own : null;
  }

  /** The Redis key of a session id. */
  key(id: string): string {
    if (!this.#tagged) return this.#settings.prefix + id;
    return `${this.#settings.prefix}{${id.slice(0, TAG_LENGTH)}}${id.slice(TAG_LENGTH)}`;
  }

  /**
   * A fresh id, checked against the id format. `lineage` is the id of the session it replaces or
   * moves (null for a new session): on Cluster the new id starts with the lineage's hash tag,
   * followed by a whole fresh id, so the tag (random, and already in the old cookie) takes nothing
   * from the new id's own 256 bits.
   */
  drawId(lineage: string | null): string {
    const fresh = this.#settings.genId();
    if (
      typeof fresh !== 'string' ||
      !this.#settings.idPattern.test(fresh) ||
      (this.#tagged && fresh.length < TAG_LENGTH)
    ) {
      throw new TypeError(
        `koaRedisSession: genId returned ${JSON.stringify(fresh)}; ids must match ${this.#settings.idPattern} (cookie-safe, no ".")${this.#tagged ? ` and have at least ${TAG_LENGTH} characters on Redis Cluster` : ''}`,
      );
    }
    if (!this.#tagged || lineage === null) return fresh;
    const id = lineage.slice(0, TAG_LENGTH) + fresh;
    if (!this.#settings.idPattern.test(id))
      throw new TypeError(
        `koaRedisSession: the id ${JSON.stringify(id)} drawn for a regenerate does not match ${this.#settings.idPattern}`,
      );
    return id;
  }

  /**
   * Coalesce the commands of concurrent requests into one socket write per Redis node. The first
   * command sent in an event-loop turn corks the client's socket (on a Cluster, the socket of every
   * master that is connected and ready: a command goes to the master of its key's slot); the check
   * phase of that turn (`setImmediate`) uncorks them, and every command written meanwhile (the loads
   * of all requests whose HTTP data arrived in the same poll, the writes of all requests whose loads
   * were answered by one read) goes out in one `writev` per node. Redis then reads them in one go and
   * answers in one write too. Same commands, same order on each connection, a write later by at most
   * the rest of the turn; the per-command syscall was a fifth of a request's server CPU, and Redis'
   * own CPU per request fell by half (README, "Benchmarks").
   *
   * What is corked is exactly what is uncorked: the stream objects themselves are kept, so a node
   * that reconnects, fails over or is dropped from the Cluster's pool within the turn still has its
   * old socket uncorked (a harmless no-op on a destroyed one, and `end()` uncorks by itself). A node
   * that is not ready, one a MOVED or ASK redirection reaches for the first time, and a Cluster that
   * is not ready are not corked: their commands wait in ioredis' queues and leave as before. Nothing
   * is corked when the client autopipelines (README, "Redis Cluster and Sentinel").
   */
  #batch(): void {
    if (this.#corked !== null || !this.#batching) return;
    const corked: Corkable[] = [];
    if (this.#cluster) {
      const cluster = this.#redis as Cluster;
      if (cluster.status !== 'ready') return;
      for (const node of cluster.nodes('master')) cork(node, corked);
    } else cork(this.#redis as Redis, corked);
    if (corked.length === 0) return;
    this.#corked = corked;
    setImmediate(this.#uncork);
  }

  /** Operation ids: unique per write, so a script resent after a lost reply is known as a replay
   *  (src/store/lua/include/op.lua): this store's random 8-character prefix (its commands reach a
   *  node in order, on one connection) and a counter. No random draw per write. */
  readonly #opPrefix = randomBytes(6).toString('base64url');
  #opCount = 0;

  #nextOp(): string {
    // Never wraps (2^53 writes): a counter that restarted would look like a replay of old operations.
    this.#opCount++;
    return this.#opPrefix + this.#opCount.toString(36);
  }

  /** The streams corked in this turn, null outside one. */
  #corked: Corkable[] | null = null;
  readonly #uncork = (): void => {
    const streams = this.#corked;
    this.#corked = null;
    if (streams !== null) for (const stream of streams) stream.uncork();
  };

  /**
   * Send one command, bounded by `commandTimeout` whoever owns the client (by the client's own
   * timer when it has one at least as tight, else by ours), with any failure turned
   * into a `SessionStoreError` (raw ioredis errors never reach the application; the original is its
   * `cause`). A command that times out may still run later; it is reported as failed all the same,
   * never as saved.
   */
  async #send<T>(command: string, id: string | null, call: () => Promise<T>): Promise<T> {
    this.#batch();
    if (this.#clientTimeout !== null) {
      try {
        return await call();
      } catch (err) {
        if (err instanceof Error && err.message === 'Command timed out') {
          throw new SessionStoreError(
            `session store unavailable: ${command} did not answer within ${this.#clientTimeout} ms (option commandTimeout)`,
            id,
            command,
            { cause: err },
          );
        }
        throw this.#failed(command, id, err);
      }
    }
    const ms = this.#settings.commandTimeout;
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new SessionStoreError(
              `session store unavailable: ${command} did not answer within ${ms} ms (option commandTimeout)`,
              id,
              command,
            ),
          ),
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
    return new SessionStoreError(`session store unavailable: ${command} failed: ${message}`, id, command, {
      cause: err,
    });
  }

  /** The one load: read the session, fold in a due refresh, remove an expired or legacy key.
   *  Throws `RawDeserializationError` when a value cannot be decoded. */
  async load(id: string, now: number): Promise<LoadResult> {
    const reply = await this.#send('load', id, () =>
      this.#redis.ksmLoadV6Buffer(
        this.key(id),
        now,
        this.#trigger,
        this.#ttlFlag,
        FORMAT_VERSION,
        this.#absolute,
        this.#settings.timeout ?? -1,
      ),
    );
    switch (reply[0]) {
      case 1: {
        let stored: StoredSession;
        try {
          stored = unpackSession(reply[2]);
        } catch (err) {
          // A session header over a damaged map (corruption, a foreign writer): an undecodable payload.
          throw new RawDeserializationError(id, '', err);
        }
        const payload = decodeFields(id, stored.created, stored.timeout, stored.fields, this.#settings.serializer);
        return { status: 'found', refreshed: reply[1] === 1, refreshRefused: reply[1] === 2, payload };
      }
      case 2:
        return EXPIRED;
      case 3:
        return LEGACY;
      default:
        return MISSING;
    }
  }

  /** The write the machine chose, and what Redis answered. Exactly one ioredis call, except a
   *  create, move or replace whose fresh id collided with an existing key, which draws again. */
  async write(command: RedisCommand, source: WriteSource, now: number): Promise<WriteResult> {
    switch (command) {
      case 'none':
        return { answer: 'stored', id: source.storedId };
      // An operation id per attempt, not per write: an attempt that found its id taken did nothing,
      // and a retry must not pass for a replay of it (src/store/lua/include/op.lua).
      case 'create':
        return this.#underFreshId(source, (id) => {
          const op = this.#nextOp();
          const { ttl, value } = this.#whole(source, now, op);
          return this.#send('create', null, () => this.#create(this.key(id), ttl, op, value));
        });
      case 'replace': {
        const oldId = source.storedId as string;
        return this.#underFreshId(source, (id) => {
          const op = this.#nextOp();
          const { ttl, value } = this.#whole(source, now, op);
          return this.#send('replace', oldId, () =>
            this.#redis.ksmRotateV4(this.key(oldId), this.key(id), 'replace', ttl, op, value),
          );
        });
      }
      case 'patch': {
        const id = source.storedId as string;
        const intent = this.#intent(source, now);
        return answer(await this.#send('patch', id, () => this.#redis.ksmPatchV4(this.key(id), intent)), id);
      }
      case 'move': {
        const oldId = source.storedId as string;
        return this.#underFreshId(source, (id) => {
          const intent = this.#intent(source, now);
          return this.#send('move', oldId, () =>
            this.#redis.ksmRotateV4(this.key(oldId), this.key(id), 'move', intent),
          );
        });
      }
      case 'delete':
        await this.end(source.storedId as string);
        return { answer: 'ended', id: null };
      default: {
        const unknown: never = command;
        throw new TypeError(`session store: unknown command ${String(unknown)}`);
      }
    }
  }

  /** End a session (and every id it was moved to), outside a request's machine: what a session whose
   *  cookie never reached the browser is undone with. */
  async end(id: string): Promise<void> {
    await this.#send('delete', id, () => this.#redis.ksmEndV2(this.key(id)));
  }

  /**
   * A create: one plain `SET … NX`, the whole session packed here (no script: the value is new, there
   * is nothing stored to decide against). 1 created; 0 the id is taken (draw another). When the key
   * exists, one `GET` tells a collision from this same create resent after a lost reply (the value
   * records its operation, src/store/lua/include/op.lua): a path only a fault or a broken genId takes.
   */
  async #create(key: string, ttl: number, op: string, value: Buffer): Promise<number> {
    const done = ttl > 0 ? await this.#redis.set(key, value, 'EX', ttl, 'NX') : await this.#redis.set(key, value, 'NX');
    if (done === 'OK') return 1;
    const stored = await this.#redis.getBuffer(key);
    return stored !== null && recordedOp(stored, op) ? 1 : 0;
  }

  /** A patch's or move's arguments: the intent include/apply.lua reads. */
  #intent(source: WriteSource, now: number): Array<string | number> {
    const { set, del, flash, flashQueues } = source.intent();
    const timeout = source.timeoutChanged ? String(source.timeout ?? 0) : '';
    const s = this.#settings;
    return [
      now,
      this.#ttlFlag,
      s.maxSize,
      timeout,
      s.invalidateEmptySession ? '1' : '0',
      flashQueues,
      set.length / 2,
      this.#nextOp(),
      this.#absolute,
      ...flash,
      ...set,
      ...del,
    ];
  }

  /** A whole session as create and replace store it (src/store/layout.ts), recording `op`. */
  #whole(source: WriteSource, now: number, op: string): { ttl: number; value: Buffer } {
    const t = source.timeout;
    // The expiry: idle timeout from now, never past the absolute timeout from creation.
    let x = t !== null ? now + t : null;
    if (this.#absolute >= 0 && (x === null || source.created + this.#absolute < x)) x = source.created + this.#absolute;
    const value = packSession(header(source.created, t, x), [...source.allFields(), 'o', `${op}=1`]);
    return { ttl: x !== null && this.#settings.setRedisTtl ? Math.max(1, x - now) : 0, value };
  }

  /**
   * Store under a freshly drawn id: the script answers 0 when the id is taken (draw again), else
   * its answer. With 256-bit ids a second draw is already a once-in-the-universe event; a custom
   * genId that repeats itself fails loudly.
   */
  async #underFreshId(source: WriteSource, store: (id: string) => Promise<number>): Promise<WriteResult> {
    for (let attempt = 0; attempt < MAX_ID_DRAWS; attempt++) {
      const id = source.drawId(attempt);
      const code = await store(id);
      if (code !== 0) return answer(code, id);
    }
    throw new Error(
      `session store: ${MAX_ID_DRAWS} generated session ids in a row already existed; genId does not produce unique ids`,
    );
  }
}

interface Corkable {
  uncork(): void;
}

/** Cork the socket of a client (one server, or one Cluster node) that is ready to write, and note it. */
function cork(client: Redis, into: Corkable[]): void {
  const stream = client.stream;
  if (client.status !== 'ready' || typeof stream?.cork !== 'function' || stream.destroyed || !stream.writable) return;
  stream.cork();
  into.push(stream);
}

/** The scripts, by the names they are defined under on the client (what ioredis'
 *  `autoPipeliningIgnoredCommands` would list). */
const SCRIPTS = {
  ksmLoadV6: { numberOfKeys: 1, lua: loadLua },
  ksmPatchV4: { numberOfKeys: 1, lua: patchLua },
  ksmRotateV4: { numberOfKeys: 2, lua: rotateLua },
  ksmEndV2: { numberOfKeys: 1, lua: endLua },
} as const;
const SCRIPT_NAMES = Object.keys(SCRIPTS);

/**
 * Whether ioredis autopipelines this client's session commands (`enableAutoPipelining` in the Redis
 * or Cluster options): it then gathers the commands of a turn into one pipeline per node itself, and
 * corking as well would only add work. A client that autopipelines but leaves one of our scripts out
 * (`autoPipeliningIgnoredCommands`) is corked as usual: corking under autopipelining is redundant,
 * never wrong.
 */
function autopipelines(redis: RedisClient): boolean {
  const options = (
    redis as { options?: { enableAutoPipelining?: boolean; autoPipeliningIgnoredCommands?: readonly string[] } }
  ).options;
  if (options?.enableAutoPipelining !== true) return false;
  const ignored = options.autoPipeliningIgnoredCommands ?? [];
  return SCRIPT_NAMES.every((name) => !ignored.includes(name));
}

/** The hash tag Redis Cluster hashes a key by (the text between its first `{` and the next `}`), or
 *  null when it hashes the whole key: https://redis.io/docs/latest/operate/oss_and_stack/reference/cluster-spec/#hash-tags */
function hashTag(key: string): string | null {
  const open = key.indexOf('{');
  if (open < 0) return null;
  const close = key.indexOf('}', open + 1);
  return close < 0 || close === open + 1 ? null : key.slice(open + 1, close);
}

/** Whether a stored session value records `op` as done (its writer's last operation, answered 1). */
function recordedOp(value: Buffer, op: string): boolean {
  let stored: StoredSession;
  try {
    stored = unpackSession(value);
  } catch {
    return false; // not a session of this format: a collision
  }
  const { fields } = stored;
  for (let i = 0; i + 1 < fields.length; i += 2) {
    if (fields[i] === 'o') return ` ${fields[i + 1] as string} `.includes(` ${op}=1 `);
  }
  return false;
}

/** A script's reply code as the machine's answer: 1 stored, 2 ended (left empty), -1 gone, -2 too
 *  large (src/store/lua/patch.lua). */
function answer(code: number, id: string): WriteResult {
  switch (code) {
    case 1:
      return { answer: 'stored', id };
    case 2:
      return { answer: 'ended', id: null };
    case -1:
      return { answer: 'gone', id: null };
    case -2:
      return { answer: 'tooLarge', id: null };
    default:
      throw new Error(`session store: unexpected reply ${String(code)} from a write script`);
  }
}
