/**
 * `ctx.session`: plain property data, plus reserved non-enumerable members (SPEC §3).
 *
 * The object the handler sees is a Proxy over one `SessionState` per request, made on first access
 * only (a route that never reads the session pays nothing). Top-level assignments and deletions are
 * recorded as they happen; nested mutation is caught at the end by comparing each object value's
 * encoding with the text that was loaded (`detectChanges`, pyramid: detect_changes). A value equal
 * to the loaded one is no change: assigning it sends no write.
 */
import { inspect, types } from 'node:util';
import type { MachineRun } from './fsm.js';
import { DATA_PREFIX, type LoadedPayload, type Serializer } from './payload.js';
import type { WriteSource } from './store/commands.js';

/** The data a session holds. Declaration-merge into it to type `ctx.session`:
 *  `declare module 'koa-session-machine' { interface SessionData { views: number } }`. */
// eslint-disable-next-line @typescript-eslint/no-empty-object-type
export interface SessionData {}

/** The reserved members of `ctx.session`, beside the data. */
export interface SessionMembers {
  /** The session id, or null while the session exists only in memory (new, or just invalidated). */
  readonly id: string | null;
  /** True when no stored session backs this one (no valid cookie, or after `invalidate()`). */
  readonly isNew: boolean;
  /** When the session was created, epoch seconds. */
  readonly created: number;
  /** This session's idle timeout in seconds, or null for never. */
  readonly timeout: number | null;
  /** Drop the data and the stored session. Writing afterwards starts a new session under a new id,
   *  stored in the same command that deletes the old one. */
  invalidate(): void;
  /** Keep the data under a new id and delete the old key, in one command (call it at login, against
   *  session fixation). The new cookie is sent on this response. */
  regenerate(): void;
  /** Force a write of every value, e.g. after mutating nested data with `detectChanges: false`. */
  changed(): void;
  /** Send the cookie again on this response. */
  recookie(): void;
}

/** Member names reserved on `ctx.session` (SPEC §3): assigning data to one throws a TypeError. */
export const RESERVED_MEMBERS: ReadonlySet<string> = new Set([
  'id', 'isNew', 'created', 'timeout', 'invalidate', 'regenerate', 'changed', 'flash', 'peekFlash',
  'popFlash', 'newCsrfToken', 'getCsrfToken', 'adjustTimeout', 'adjustCookieMaxAge', 'recookie',
]);

type Loose = { [key: string]: any }; // eslint-disable-line @typescript-eslint/no-explicit-any

/** The type of `ctx.session`: the application's `SessionData` (every key optional, as a session
 *  may not hold it yet) and the members. Without a `SessionData` declaration any key is allowed. */
export type Session<T extends object = SessionData> = (keyof T extends never ? Loose : Partial<T>) & SessionMembers;

/** Facts the session needs from the middleware, shared by every request. */
export interface SessionSettings {
  serializer: Serializer;
  detectChanges: boolean;
  timeout: number | null;
  genId: () => string;
  idPattern: RegExp;
}

const NO_CHANGES = { set: [] as string[], del: [] as string[] };

/** One request's session. Not exported from the package: the handler sees its Proxy. */
export class SessionState implements WriteSource {
  data: Record<string, unknown>;
  /** The encoded text of each value as loaded; empty for a session with no stored counterpart. */
  raw: ReadonlyMap<string, string>;
  /** Keys assigned or deleted since the load (or since `invalidate()`). */
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
  #proxy: object | null = null;
  #written = false;
  #changes: { set: string[]; del: string[] } | null = null;
  #bound: Record<string, unknown> | null = null;

  constructor(
    readonly settings: SessionSettings,
    readonly run: MachineRun,
    readonly now: number,
    id: string | null,
    loaded: LoadedPayload | null,
  ) {
    this.storedId = id;
    if (loaded) {
      this.data = loaded.data;
      this.raw = loaded.raw;
      this.created = loaded.created;
      this.timeout = loaded.timeout;
    } else {
      this.data = Object.create(null) as Record<string, unknown>;
      this.raw = new Map();
      this.created = now;
      this.timeout = settings.timeout;
    }
  }

  /** The `ctx.session` object. */
  get proxy(): object {
    return (this.#proxy ??= new Proxy(this, handler));
  }

  /** Whether a handler ever looked at the session. */
  get accessed(): boolean {
    return this.#proxy !== null;
  }

  get id(): string | null {
    return this.invalidated ? null : (this.nextId ?? this.storedId);
  }

  get isNew(): boolean {
    return this.storedId === null || this.invalidated;
  }

  // -- data -----------------------------------------------------------------------------------

  write(key: string, value: unknown): void {
    if (value === undefined) {
      this.remove(key);
      return;
    }
    this.data[key] = value;
    this.#touch(key);
  }

  remove(key: string): void {
    if (!(key in this.data)) return;
    delete this.data[key];
    this.#touch(key);
  }

  #touch(key: string): void {
    (this.touched ??= new Set()).add(key);
    if (!this.#written) {
      this.#written = true;
      this.run.send({ type: 'data.written' });
    }
  }

  hasData(): boolean {
    for (const _ in this.data) return true;
    return false;
  }

  #encode(key: string): string {
    const text = this.settings.serializer.stringify(this.data[key]);
    if (typeof text !== 'string') {
      throw new TypeError(`ctx.session.${key}: the serializer cannot encode this value (${typeof this.data[key]})`);
    }
    return text;
  }

  /** The changed fields (`:key, value` pairs) and removed fields, computed once at the end. */
  changes(): { set: string[]; del: string[] } {
    if (this.#changes) return { set: [...this.#changes.set], del: [...this.#changes.del] };
    // Untouched and never handed out: nothing can have changed, not even nested values.
    if (!this.accessed && this.touched === null && !this.forced) return (this.#changes = NO_CHANGES);
    const set: string[] = [];
    const del: string[] = [];
    const candidates = new Set<string>(this.touched);
    if (this.forced) {
      for (const key in this.data) candidates.add(key);
      for (const key of this.raw.keys()) candidates.add(key);
    } else if (this.settings.detectChanges) {
      for (const key in this.data) {
        const value = this.data[key];
        if (value !== null && typeof value === 'object') candidates.add(key);
      }
    }
    for (const key of candidates) {
      if (key in this.data) {
        const text = this.#encode(key);
        if (this.forced || this.raw.get(key) !== text) set.push(DATA_PREFIX + key, text);
      } else if (this.raw.has(key)) {
        del.push(DATA_PREFIX + key);
      }
    }
    this.#changes = { set, del };
    return { set: [...set], del: [...del] };
  }

  /** Every data field as `:key, value` pairs. */
  allFields(): string[] {
    const fields: string[] = [];
    for (const key in this.data) fields.push(DATA_PREFIX + key, this.#encode(key));
    return fields;
  }

  drawId(attempt: number): string {
    if (attempt === 0 && this.nextId !== null) return this.nextId;
    const id = this.settings.genId();
    if (typeof id !== 'string' || !this.settings.idPattern.test(id)) {
      throw new TypeError(
        `koaRedisSession: genId returned ${JSON.stringify(id)}; ids must match ${this.settings.idPattern} (cookie-safe, no ".")`,
      );
    }
    return id;
  }

  // -- members --------------------------------------------------------------------------------

  invalidate(): void {
    this.data = Object.create(null) as Record<string, unknown>;
    this.raw = new Map();
    this.touched = null;
    this.forced = false;
    this.invalidated = true;
    this.nextId = null;
    this.created = this.now;
    this.timeout = this.settings.timeout;
    this.#written = false;
    this.#changes = null;
    this.run.send({ type: 'session.invalidated' });
  }

  regenerate(): void {
    if (!this.isNew) this.nextId = this.drawId(1);
    this.run.send({ type: 'session.regenerated' });
  }

  changed(): void {
    this.forced = true;
    this.#changes = null;
    this.run.send({ type: 'data.written' });
  }

  recookie(): void {
    this.run.send({ type: 'session.recookied' });
  }

  /** Replace all data (the `ctx.session = {...}` setter); keeps the id. */
  replace(value: Record<string, unknown>): void {
    for (const key in this.data) this.remove(key);
    for (const key of Object.keys(value)) setData(this, key, value[key]);
  }

  /** Bound member functions, made once per session on first use. */
  member(name: string): unknown {
    const bound = (this.#bound ??= {
      invalidate: () => this.invalidate(),
      regenerate: () => this.regenerate(),
      changed: () => this.changed(),
      recookie: () => this.recookie(),
    });
    return bound[name];
  }

  /** util.inspect / console.log show the data only. Node looks this up on the Proxy's target but
   *  calls it with the Proxy as `this`, whose own keys are the data keys. */
  [inspect.custom](): object {
    return types.isProxy(this) ? { ...this } : { ...this.data };
  }
}

function setData(state: SessionState, key: string | symbol, value: unknown): void {
  if (typeof key !== 'string') throw new TypeError('ctx.session keys must be strings');
  if (RESERVED_MEMBERS.has(key)) {
    throw new TypeError(`ctx.session.${key} is a reserved member and cannot hold data; choose another key`);
  }
  state.write(key, value);
}

/** Value getters of the members; the rest are bound functions. */
const VALUE_MEMBERS: ReadonlyMap<string, (s: SessionState) => unknown> = new Map<string, (s: SessionState) => unknown>([
  ['id', (s) => s.id],
  ['isNew', (s) => s.isNew],
  ['created', (s) => s.created],
  ['timeout', (s) => s.timeout],
]);

/** One handler shared by every session: traps read the state from their target. */
const handler: ProxyHandler<SessionState> = {
  get(state, key) {
    if (typeof key !== 'string') return undefined;
    if (RESERVED_MEMBERS.has(key)) {
      const value = VALUE_MEMBERS.get(key);
      return value ? value(state) : state.member(key);
    }
    return state.data[key];
  },
  set(state, key, value) {
    setData(state, key, value);
    return true;
  },
  deleteProperty(state, key) {
    if (typeof key === 'string' && RESERVED_MEMBERS.has(key)) {
      throw new TypeError(`ctx.session.${key} is a reserved member and cannot be deleted`);
    }
    if (typeof key === 'string') state.remove(key);
    return true;
  },
  has(state, key) {
    return typeof key === 'string' && (RESERVED_MEMBERS.has(key) || key in state.data);
  },
  ownKeys(state) {
    return Object.keys(state.data);
  },
  getOwnPropertyDescriptor(state, key) {
    if (typeof key !== 'string' || !(key in state.data)) return undefined;
    return { value: state.data[key], writable: true, enumerable: true, configurable: true };
  },
  defineProperty(state, key, descriptor) {
    if (!('value' in descriptor) || descriptor.get || descriptor.set) {
      throw new TypeError('ctx.session holds plain data: accessors cannot be defined on it');
    }
    setData(state, key, descriptor.value);
    return true;
  },
  setPrototypeOf() {
    throw new TypeError('ctx.session: the prototype cannot be changed');
  },
  preventExtensions() {
    throw new TypeError('ctx.session cannot be made non-extensible');
  },
};
