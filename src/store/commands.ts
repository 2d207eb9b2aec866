/**
 * The only module that talks to Redis. Before `await next()` it sends the load; after, it turns the
 * final state's output into exactly one ioredis call (an exhaustive switch: a new command means a
 * new final state). Scripts are registered with ioredis `defineCommand`, which sends `EVAL` the first
 * time on each connection and `EVALSHA` after that: one command either way.
 */
import { createHash, randomBytes } from 'node:crypto';
import calculateSlot from 'cluster-key-slot';
import { type Cluster, Command, type Redis } from 'ioredis';
import { DEFAULT_ID_PATTERN, defaultGenId } from '../cookie.js';
import { RawDeserializationError, SessionStoreError } from '../errors.js';
import { DATA_PREFIX, decodeFields, HANDLE_FIELD, type LoadedPayload, type Serializer } from '../payload.js';
import type { RedisCommand } from '../policy.js';
import {
  FORMAT_VERSION,
  header,
  type PackedValue,
  packValue,
  type StoredSession,
  unpackSession,
  valueBytes,
} from './layout.js';
import { createLua, endLua, handoffLua, loadLua, patchLua, rotateLua, userLua } from './scripts.generated.js';

/** The custom commands this module defines on the client (ioredis adds a `…Buffer` variant of each,
 *  whose reply keeps bulk strings as Buffers). Versioned names: a script whose arguments or reply
 *  change gets a new name, so two versions of this package can share one client. */
interface SessionCommands {
  ksmLoadV7Buffer(
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
  ksmPatchV5(key: string, intent: ReadonlyArray<string | number>): Promise<number>;
  ksmRotateV5(
    oldKey: string,
    newKey: string,
    mode: 'move' | 'replace',
    args: ReadonlyArray<string | number | Buffer>,
  ): Promise<number | string>;
  ksmEndV3(key: string, mode: '' | 'tombstone'): Promise<number | string>;
  ksmHandoffV1Buffer(
    key: string,
    newKey: string,
    intent: ReadonlyArray<string | number>,
  ): Promise<[number, Buffer?, number?]>;
  ksmCreateV1(key: string, place: ReadonlyArray<string | number | Buffer>): Promise<number>;
  ksmUserV1(index: string, mode: 'list', now: number, absolute: number, handle: string): Promise<string[]>;
  ksmUserV1(
    index: string,
    mode: 'revoke' | 'revokeAll',
    now: number,
    absolute: number,
    handle: string,
  ): Promise<number>;
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
  /** Whether every text of `allFields()` is ASCII (src/store/layout.ts, `allAscii`), asked once. */
  asciiFields(): boolean;
  /** This request's changes (patch, move): fields to set (field, value pairs), fields to delete,
   *  and flash queue changes. */
  intent(): WriteIntent;
  /** The id a create, move or replace stores under: a fresh draw on each call after a collision. */
  drawId(attempt: number): string;
  /** The handle a write that puts the session in a user's index stores (the `userKey` option). */
  newHandle(): string;
  /** What the `sessionInfo` option describes, encoded ('' for nothing): stored at the same time. */
  info(): string;
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
  /** The `userKey` option: the data key a user's index follows (include/users.lua), or null. */
  userKey: string | null;
}

/** One live session of a user, as the index script lists it. */
export interface IndexedSession {
  readonly handle: string;
  readonly created: number;
  readonly timeout: number | null;
  readonly expires: number | null;
  /** What `sessionInfo` described, encoded; '' for nothing. */
  readonly info: string;
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
  /** The field of the `userKey` option (`:userId`), or '' for none: what the scripts take. */
  readonly #userField: string;
  /** A create's `SET` may go as one frame of ours (FramedCommand): the client prefixes no keys and
   *  does not autopipeline (a command sent past its generated methods would skip either). */
  readonly #framing: boolean;
  /** The client's `showFriendlyErrorStack`: a framed command records where it was sent from, as
   *  ioredis' own commands then do. */
  readonly #friendlyStacks: boolean;
  /** Ids come from `defaultGenId` under its own pattern: 43 base64url characters by construction,
   *  so a fresh one needs no check against the pattern (a custom genId's always gets one). */
  readonly #ownIds: boolean;

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
        `koaRedisSession: option "prefix" ${JSON.stringify(settings.prefix)} defeats Redis Cluster hash tags ` +
          '(an empty "{}"): a regenerate could not be one command',
      );
    }
    const own = this.#cluster ? undefined : (redis as Redis).options?.commandTimeout;
    this.#clientTimeout = typeof own === 'number' && own > 0 && own <= settings.commandTimeout ? own : null;
    this.#userField = settings.userKey === null ? '' : DATA_PREFIX + settings.userKey;
    const client = (
      redis as { options?: { keyPrefix?: string; enableAutoPipelining?: boolean; showFriendlyErrorStack?: boolean } }
    ).options;
    this.#framing = client?.enableAutoPipelining !== true && !client?.keyPrefix;
    this.#friendlyStacks = client?.showFriendlyErrorStack === true;
    this.#ownIds = settings.genId === defaultGenId && settings.idPattern === DEFAULT_ID_PATTERN;
  }

  /**
   * The key of a user's index, from the user key's value as stored (its encoding): a SHA-256 of it,
   * so key names never show user ids (the sessions' values hold them, as any data). On Cluster the
   * hash's first characters are its hash tag: the user's sessions are drawn into that slot (drawId).
   */
  userIndex(text: string): string {
    const hash = createHash('sha256').update(text).digest('base64url').slice(0, 27);
    if (!this.#tagged) return `${this.#settings.prefix}user:${hash}`;
    return `${this.#settings.prefix}user:{${hash.slice(0, TAG_LENGTH)}}${hash.slice(TAG_LENGTH)}`;
  }

  /** Whether, on Cluster, a session stored under `id` is outside the slot of the index of `user` (the
   *  user key's value as stored): then giving it that user moves it (docs/design.md, "A user's
   *  sessions"). Never on one server, nor with a prefix that holds its own hash tag. */
  outsideUserSlot(id: string, user: string): boolean {
    return this.#tagged && calculateSlot(this.key(id)) !== calculateSlot(this.userIndex(user));
  }

  /** Hash tags by the Cluster slot they hash to, found as needed: random 8-character tags are drawn
   *  until one lands in the slot asked for (16 384 slots: a few thousand CRC16s, once per slot and
   *  process), and each one drawn is kept for its own slot. A tag tells only the slot: 14 bits of a
   *  hash of the user, never the user. */
  readonly #slotTags: Array<string | undefined> = [];
  #tagFor(slot: number): string {
    for (let tries = 0; this.#slotTags[slot] === undefined && tries < 1000; tries++) {
      const bytes = randomBytes(6 * 256).toString('base64url');
      for (let i = 0; i < bytes.length; i += TAG_LENGTH) {
        const tag = bytes.slice(i, i + TAG_LENGTH);
        this.#slotTags[calculateSlot(tag)] ??= tag;
      }
    }
    const tag = this.#slotTags[slot];
    if (tag === undefined) throw new Error(`session store: no hash tag found for Cluster slot ${slot}`);
    return tag;
  }

  /** A user's live sessions (user.lua, which prunes the index on the way). */
  async listUser(index: string, now: number): Promise<IndexedSession[]> {
    const reply = await this.#send('user', null, () => this.#redis.ksmUserV1(index, 'list', now, this.#absolute, ''));
    const number = (text: string): number | null => (text === '' ? null : Number.parseInt(text, 36));
    const out: IndexedSession[] = [];
    for (let i = 0; i + 4 < reply.length; i += 5) {
      out.push({
        handle: reply[i] as string,
        created: number(reply[i + 1] as string) as number,
        timeout: number(reply[i + 2] as string),
        expires: number(reply[i + 3] as string),
        info: reply[i + 4] as string,
      });
    }
    return out;
  }

  /** End one of a user's sessions by its handle, or all but one ('' for none): how many ended. */
  async revokeUser(index: string, now: number, mode: 'revoke' | 'revokeAll', handle: string): Promise<number> {
    return this.#send('user', null, () => this.#redis.ksmUserV1(index, mode, now, this.#absolute, handle));
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
   * from the new id's own 256 bits. `user`, the user key's value as stored when the session holds
   * one, puts the id in its user index's slot instead (a tag of that slot: #tagFor), so that every
   * write keeps the index in its own script.
   */
  drawId(lineage: string | null, user: string | null = null): string {
    const fresh = this.#settings.genId();
    if (
      !this.#ownIds &&
      (typeof fresh !== 'string' ||
        !this.#settings.idPattern.test(fresh) ||
        (this.#tagged && fresh.length < TAG_LENGTH))
    ) {
      throw new TypeError(
        `koaRedisSession: genId returned ${JSON.stringify(fresh)}; ` +
          `ids must match ${this.#settings.idPattern} (cookie-safe, no ".")` +
          (this.#tagged ? ` and have at least ${TAG_LENGTH} characters on Redis Cluster` : ''),
      );
    }
    if (!this.#tagged || (lineage === null && user === null)) return fresh;
    const tag =
      user !== null ? this.#tagFor(calculateSlot(this.userIndex(user))) : (lineage as string).slice(0, TAG_LENGTH);
    const id = tag + fresh;
    if (!this.#settings.idPattern.test(id))
      throw new TypeError(
        `koaRedisSession: the id ${JSON.stringify(id)} drawn for a regenerate ` +
          `does not match ${this.#settings.idPattern}`,
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
  #send<T>(command: string, id: string | null, call: () => Promise<T>): Promise<T> {
    this.#batch();
    if (this.#clientTimeout === null) return this.#sendTimed(command, id, call);
    // The client's timer bounds it: the call's own promise, no async layer of ours (a create is
    // several calls deep, and each layer cost it a promise and a turn of the microtask queue).
    let sent: Promise<T>;
    try {
      sent = call();
    } catch (err) {
      sent = Promise.reject(err);
    }
    return sent.catch((err: unknown) => {
      throw this.#clientFailure(command, id, err);
    });
  }

  /** A failure of a command the client's own `commandTimeout` bounds, as the application sees it. */
  #clientFailure(command: string, id: string | null, err: unknown): SessionStoreError {
    if (err instanceof Error && err.message === 'Command timed out') {
      return new SessionStoreError(
        `session store unavailable: ${command} did not answer within ${this.#clientTimeout} ms ` +
          '(option commandTimeout)',
        id,
        command,
        { cause: err },
      );
    }
    return this.#failed(command, id, err);
  }

  /** `#send` bounded by a timer of ours (a client passed in without a `commandTimeout` as tight). */
  async #sendTimed<T>(command: string, id: string | null, call: () => Promise<T>): Promise<T> {
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
      this.#redis.ksmLoadV7Buffer(
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
        // Awaited, not returned: an async function resolving its promise with another takes a turn
        // of the microtask queue more.
        return await this.#underFreshId(source, (id) => {
          const op = this.#nextOp();
          const whole = this.#whole(source, now, op, true);
          return this.#send('create', null, () => this.#create(this.key(id), whole, op, now));
        });
      case 'replace': {
        const oldId = source.storedId as string;
        return this.#underFreshId(source, async (id) => {
          const op = this.#nextOp();
          const whole = this.#whole(source, now, op, false);
          if (this.#crossSlot(oldId, id)) {
            // A login on Cluster into its user's slot: two slots, two commands (README, "A user's sessions").
            await this.end(oldId);
            return this.#send('replace', oldId, () => this.#create(this.key(id), whole, op, now));
          }
          const done = await this.#send('replace', oldId, () =>
            this.#redis.ksmRotateV5(this.key(oldId), this.key(id), 'replace', this.#placeArgs(whole, op, now)),
          );
          if (typeof done === 'number') return done;
          // The old session was being moved into another Cluster slot meanwhile: it ends there too.
          await this.#endElsewhere(oldId, done);
          return 1;
        });
      }
      case 'patch': {
        const id = source.storedId as string;
        const intent = this.#intent(source, now);
        return answer(await this.#send('patch', id, () => this.#redis.ksmPatchV5(this.key(id), intent)), id);
      }
      case 'move': {
        const oldId = source.storedId as string;
        return this.#underFreshId(source, (id) => {
          const intent = this.#intent(source, now);
          if (this.#crossSlot(oldId, id)) return this.#handoff(oldId, id, intent, now);
          // A move answers a number (a key in another slot is a replace's answer only).
          return this.#send('move', oldId, () =>
            this.#redis.ksmRotateV5(this.key(oldId), this.key(id), 'move', intent),
          ) as Promise<number>;
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
    const elsewhere = await this.#send('delete', id, () => this.#redis.ksmEndV3(this.key(id), ''));
    if (typeof elsewhere === 'string') await this.#endElsewhere(id, elsewhere);
  }

  /** A login was moving the session into another Cluster slot meanwhile (handoff.lua): end it at
   *  `key` there, and wherever a later change of user moved it on from there (each slot's end.lua
   *  answers the next). */
  async #endElsewhere(id: string, key: string): Promise<void> {
    let elsewhere: number | string = key;
    for (let hops = 0; typeof elsewhere === 'string' && hops < 32; hops++) {
      const next: string = elsewhere;
      elsewhere = await this.#send('delete', id, () => this.#redis.ksmEndV3(next, 'tombstone'));
    }
  }

  /** Whether a move or replace from `oldId` to `id` spans two Cluster slots (a login into its user's). */
  #crossSlot(oldId: string, id: string): boolean {
    return this.#tagged && calculateSlot(this.key(oldId)) !== calculateSlot(this.key(id));
  }

  /**
   * A move into another Cluster slot, in two commands (handoff.lua, then create.lua): the intent
   * applied to the stored session, which leaves a marker at the old key, then the result stored at
   * the new key and named in its user's index. A logout of the old id in between ends it anyway.
   */
  async #handoff(oldId: string, id: string, intent: Array<string | number>, now: number): Promise<number> {
    const [code, value, ttl] = await this.#send('move', oldId, () =>
      this.#redis.ksmHandoffV1Buffer(this.key(oldId), this.key(id), intent),
    );
    // 3: a replay whose first run's reply was lost: the value went with it, the session is lost.
    if (code !== 1) return code === 3 ? -1 : code;
    // The intent's operation id, index and handle (#intent's order).
    const op = intent[7] as string;
    const whole: Whole = {
      ttl: ttl as number,
      value: value as Buffer,
      index: intent[10] as string,
      handle: intent[11] as string,
    };
    const done = await this.#send('move', oldId, () => this.#create(this.key(id), whole, op, now));
    if (done !== 0) return done;
    // The new id was taken (a genId that repeats itself): the marker must not lead a logout there.
    await this.#send('move', oldId, () => this.#redis.del(this.key(oldId)));
    return -1;
  }

  /**
   * A create: one plain `SET … NX`, the whole session packed here (no script: the value is new, there
   * is nothing stored to decide against). 1 created; 0 the id is taken (draw another). When the key
   * exists, one `GET` tells a collision from this same create resent after a lost reply: a path only
   * a fault or a broken genId takes. A resent create finds its own value byte for byte (nothing else
   * can have touched it: no cookie names the id before this reply), so the value records no operation
   * (`o`, 15 bytes that put a small session in a larger allocator class: bench/README.md); only a
   * genId that repeats an id and a session identical to the byte (same second, same data) would pass
   * for a replay, and then share what is already the same.
   * A session in a user's index from its first write is created by create.lua instead, which names
   * it in the index in the same command.
   */
  #create(key: string, whole: Whole, op: string, now: number): Promise<number> {
    const { ttl, value } = whole;
    if (whole.index !== '') return this.#redis.ksmCreateV1(key, this.#placeArgs(whole, op, now));
    const sent =
      typeof value === 'string' && this.#framing && Buffer.byteLength(key) === key.length
        ? this.#framedSet(key, value, ttl)
        : ttl > 0
          ? this.#redis.set(key, valueBytes(value), 'EX', ttl, 'NX')
          : this.#redis.set(key, valueBytes(value), 'NX');
    return sent.then((done) =>
      done === 'OK' ? 1 : this.#redis.getBuffer(key).then((stored) => (stored?.equals(valueBytes(value)) ? 1 : 0)),
    );
  }

  /** A whole session's arguments to include/users.lua's `place` (create.lua, and rotate.lua's
   *  replace), in its order: TTL, operation, value, user index, handle, TTL flag, now, absolute
   *  timeout. */
  #placeArgs(whole: Whole, op: string, now: number): Array<string | number | Buffer> {
    const { ttl, value, index, handle } = whole;
    return [ttl, op, valueBytes(value), index, handle, this.#ttlFlag, now, this.#absolute];
  }

  /** `SET key value [EX ttl] NX` for an ASCII key and a value in latin1 text, as one frame. */
  #framedSet(key: string, value: string, ttl: number): Promise<unknown> {
    const args = ttl > 0 ? [key, value, 'EX', String(ttl), 'NX'] : [key, value, 'NX'];
    const command = new FramedCommand('set', args, this.#friendlyStacks ? new Error() : undefined);
    this.#redis.sendCommand(command);
    return command.promise;
  }

  /** A patch's or move's arguments: the intent include/apply.lua reads. */
  #intent(source: WriteSource, now: number): Array<string | number> {
    const { set, del, flash, flashQueues } = source.intent();
    const timeout = source.timeoutChanged ? String(source.timeout ?? 0) : '';
    const s = this.#settings;
    // The user index of the value this write gives the user key (a login), with the handle and
    // info a session entering an index keeps.
    let index = '';
    let handle = '';
    let info = '';
    if (this.#userField !== '') {
      for (let i = 0; i + 1 < set.length; i += 2) {
        if (set[i] !== this.#userField) continue;
        index = this.userIndex(set[i + 1] as string);
        handle = source.newHandle();
        info = source.info();
        break;
      }
    }
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
      this.#userField,
      index,
      handle,
      info,
      ...flash,
      ...set,
      ...del,
    ];
  }

  /** A whole session as create and replace store it (src/store/layout.ts), recording `op` (but for a
   *  `plain` create: #create); with its user index and handle when it holds the user key ('' for none). */
  #whole(source: WriteSource, now: number, op: string, plain: boolean): Whole {
    const t = source.timeout;
    // The expiry: idle timeout from now, never past the absolute timeout from creation.
    let x = t !== null ? now + t : null;
    if (this.#absolute >= 0 && (x === null || source.created + this.#absolute < x)) x = source.created + this.#absolute;
    const fields = source.allFields();
    let index = '';
    let handle = '';
    if (this.#userField !== '') {
      for (let i = 0; i + 1 < fields.length; i += 2) {
        if (fields[i] === this.#userField) index = this.userIndex(fields[i + 1] as string);
        else if (fields[i] === HANDLE_FIELD) handle = fields[i + 1] as string;
      }
    }
    const head = header(source.created, t, x, index === '' ? undefined : index);
    const stored = plain && index === '' ? fields : [...fields, 'o', `${op}=1`];
    // The operation id is ASCII: the fields' answer holds for it too.
    const value = packValue(head, stored, source.asciiFields());
    return { ttl: x !== null && this.#settings.setRedisTtl ? Math.max(1, x - now) : 0, value, index, handle };
  }

  /**
   * Store under a freshly drawn id: the script answers 0 when the id is taken (draw again), else
   * its answer. With 256-bit ids a second draw is already a once-in-the-universe event; a custom
   * genId that repeats itself fails loudly.
   */
  #underFreshId(source: WriteSource, store: (id: string) => Promise<number>, attempt = 0): Promise<WriteResult> {
    if (attempt === MAX_ID_DRAWS) {
      throw new Error(
        `session store: ${MAX_ID_DRAWS} generated session ids in a row already existed; ` +
          'genId does not produce unique ids',
      );
    }
    const id = source.drawId(attempt);
    // Chained, not awaited in a loop: the usual create is one attempt, and an async layer of its own.
    return store(id).then((code) => (code !== 0 ? answer(code, id) : this.#underFreshId(source, store, attempt + 1)));
  }
}

/**
 * A command whose arguments are all latin1 text (ASCII, or a packed value's one character per byte),
 * framed here in one RESP piece (https://redis.io/docs/latest/develop/reference/protocol-spec/), as
 * ioredis' own scripts override `toWritable`: a new session's packed value is latin1 text already, and
 * its frame takes one Buffer.from, where ioredis sizes and copies each argument of a command that
 * holds a Buffer into a second one (half the cost of a create's command: bench/README.md, "New
 * session"). Sent by `sendCommand` like any other: timeouts, queues, Cluster routing and redirections
 * stay ioredis' own.
 */
class FramedCommand extends Command {
  readonly #frame: Buffer;

  constructor(name: string, args: readonly string[], errorStack: Error | undefined) {
    super(name, [...args], { replyEncoding: 'utf8', errorStack });
    // A latin1 string's length is its byte count.
    let frame = `*${args.length + 1}\r\n$${name.length}\r\n${name}\r\n`;
    for (const arg of args) frame += `$${arg.length}\r\n${arg}\r\n`;
    this.#frame = Buffer.from(frame, 'latin1');
  }

  override toWritable(): Buffer {
    return this.#frame;
  }
}

interface Corkable {
  uncork(): void;
}

/** A whole session to store: its TTL (0: none), its value (src/store/layout.ts: bytes, or the same as
 *  latin1 text), and its user index and handle ('' for none). */
interface Whole {
  readonly ttl: number;
  readonly value: PackedValue;
  readonly index: string;
  readonly handle: string;
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
  ksmLoadV7: { numberOfKeys: 1, lua: loadLua },
  ksmPatchV5: { numberOfKeys: 1, lua: patchLua },
  ksmRotateV5: { numberOfKeys: 2, lua: rotateLua },
  ksmEndV3: { numberOfKeys: 1, lua: endLua },
  ksmCreateV1: { numberOfKeys: 1, lua: createLua },
  ksmHandoffV1: { numberOfKeys: 1, lua: handoffLua },
  ksmUserV1: { numberOfKeys: 1, lua: userLua },
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
 *  null when it hashes the whole key:
 *  https://redis.io/docs/latest/operate/oss_and_stack/reference/cluster-spec/#hash-tags */
function hashTag(key: string): string | null {
  const open = key.indexOf('{');
  if (open < 0) return null;
  const close = key.indexOf('}', open + 1);
  return close < 0 || close === open + 1 ? null : key.slice(open + 1, close);
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
