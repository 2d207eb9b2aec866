/**
 * What went over the wire: Redis MONITOR on the private server, bracketed by ECHO markers from a
 * separate connection so that exactly the commands sent while a function ran are returned.
 * Commands a Lua script ran are kept apart (`lua: true`): they cost no round trip.
 */
import { createHash } from 'node:crypto';
import { Redis } from 'ioredis';
import {
  createLua,
  endLua,
  handoffLua,
  loadLua,
  patchLua,
  rotateLua,
  userLua,
} from '../../src/store/scripts.generated.js';

export interface WireCommand {
  /** MONITOR's timestamp (seconds.microseconds): orders commands seen by different servers. */
  readonly time: number;
  /** Command name, lower case; a script call is named after its script: load, patch, end;
   *  rotate.lua after its mode: move or replace. A `SET … NX` is a create, and so is create.lua (a
   *  session in a user's index from its first write); user.lua is user. */
  readonly op: string;
  readonly args: readonly string[];
  /** The key the command addresses (the first key). */
  readonly key: string | undefined;
  /** Run by a script, inside the command that called it. */
  readonly lua: boolean;
}

const SCRIPTS = new Map<string, string>(
  Object.entries({
    load: loadLua,
    patch: patchLua,
    rotate: rotateLua,
    end: endLua,
    create: createLua,
    user: userLua,
    handoff: handoffLua,
  }).flatMap(([name, lua]) => [[createHash('sha1').update(lua).digest('hex'), name]]),
);

function describe(time: number, args: string[], lua: boolean): WireCommand {
  const name = (args[0] ?? '').toLowerCase();
  if (name === 'evalsha' || name === 'eval') {
    // EVAL carries the script text (MONITOR shows it escaped): its header names the file.
    const script = SCRIPTS.get(args[1] ?? '') ?? /-- (\w+)\.lua:/.exec(args[1] ?? '')?.[1] ?? `${name}?`;
    const op = script === 'rotate' ? (args[5] ?? script) : script;
    return { time, op, args: args.slice(3), key: args[3], lua };
  }
  // A create is one plain SET … NX (src/store/commands.ts); a script never sends one.
  const op = name === 'set' && !lua && args.some((a) => a.toUpperCase() === 'NX') ? 'create' : name;
  return { time, op, args: args.slice(1), key: args[1], lua };
}

async function captureRequest<T>(
  on: { capture(fn: () => Promise<unknown>, withLua?: boolean): Promise<WireCommand[]> },
  send: () => PromiseLike<T>,
  withLua: boolean,
): Promise<{ res: T; wire: WireCommand[] }> {
  let res: T | undefined;
  const wire = await on.capture(async () => {
    res = await send();
  }, withLua);
  return { res: res as T, wire };
}

export class Monitor {
  #events: WireCommand[] = [];
  #waiters = new Map<string, () => void>();
  #seq = 0;

  private constructor(
    private readonly monitor: Redis,
    private readonly marker: Redis,
  ) {
    monitor.on('error', () => undefined);
    marker.on('error', () => undefined);
    monitor.on('monitor', (time: string, args: string[], source: string) => {
      if (args[0]?.toLowerCase() === 'echo' && args[1]?.startsWith('ksm-marker-')) {
        this.#waiters.get(args[1])?.();
        return;
      }
      this.#events.push(describe(Number(time), args, source === 'lua'));
    });
  }

  static async start(url: string): Promise<Monitor> {
    // The marker connection also starts the monitor (ioredis opens a dedicated connection for it).
    const marker = new Redis(url);
    const monitor = await marker.monitor();
    return new Monitor(monitor, marker);
  }

  async #mark(): Promise<void> {
    const label = `ksm-marker-${++this.#seq}`;
    const seen = new Promise<void>((resolve) => this.#waiters.set(label, resolve));
    await this.marker.echo(label);
    await seen;
    this.#waiters.delete(label);
  }

  /** Start recording: every command seen from now on (after a marker round trip). */
  async begin(): Promise<void> {
    await this.#mark();
    this.#events = [];
  }

  /** Stop recording: the commands seen since begin(), client commands only unless `withLua`. */
  async end(withLua = false): Promise<WireCommand[]> {
    await this.#mark();
    const events = this.#events;
    this.#events = [];
    return withLua ? events : events.filter((e) => !e.lua);
  }

  /** Run fn and return the commands sent meanwhile, client commands only unless `withLua`. */
  async capture(fn: () => Promise<unknown>, withLua = false): Promise<WireCommand[]> {
    await this.begin();
    await fn();
    return this.end(withLua);
  }

  /** Send one request and return its response with the client commands it caused. */
  request<T>(send: () => PromiseLike<T>, withLua = false): Promise<{ res: T; wire: WireCommand[] }> {
    return captureRequest(this, send, withLua);
  }

  async stop(): Promise<void> {
    this.monitor.disconnect();
    this.marker.disconnect();
  }
}

/** MONITOR on several servers at once (the masters of a Cluster): one list of what all of them saw. */
export class MultiMonitor {
  private constructor(private readonly monitors: Monitor[]) {}

  static async start(urls: string[]): Promise<MultiMonitor> {
    return new MultiMonitor(await Promise.all(urls.map((url) => Monitor.start(url))));
  }

  async capture(fn: () => Promise<unknown>, withLua = false): Promise<WireCommand[]> {
    await Promise.all(this.monitors.map((m) => m.begin()));
    await fn();
    return (await Promise.all(this.monitors.map((m) => m.end(withLua)))).flat().sort((a, b) => a.time - b.time);
  }

  request<T>(send: () => PromiseLike<T>, withLua = false): Promise<{ res: T; wire: WireCommand[] }> {
    return captureRequest(this, send, withLua);
  }

  async stop(): Promise<void> {
    await Promise.all(this.monitors.map((m) => m.stop()));
  }
}
