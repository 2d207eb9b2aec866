/**
 * Per-request traces: the path the machine took, the commands sent, the cookie action, the write's
 * answer and the status, for the `debug` option, `DEBUG=koa-session-machine`, the
 * `X-Session-Trace` header and `sessionChart()`.
 */
import { STATUS_CODES } from 'node:http';
import createDebug from 'debug';
import type { Context } from 'koa';
import type { KeyRing } from './cookie.js';
import type { MachineRun, TraceStep } from './fsm.js';
import type { ResolvedOptions } from './options.js';
import type { CookieAction, Failure } from './policy.js';

/** What Redis answered to the request's write: `none` when no write was sent. */
export type WriteOutcome = 'stored' | 'ended' | 'gone' | 'tooLarge' | 'failed' | 'none';

/** What one request did. */
export interface SessionTrace {
  readonly method: string;
  readonly path: string;
  /** The HTTP status the response went out with (an error's status when the request failed). */
  readonly status: number;
  /** A short keyed hash of the session's id (never the id), the same on every request of one
   *  session, so one browser's requests can be followed: `a1b2c3d4`, or `a1b2c3d4>e5f6g7h8` when the
   *  request moved the session to a new id; null when the request had no session. */
  readonly session: string | null;
  /** Every transition taken, in order. */
  readonly steps: readonly TraceStep[];
  /** The final state (or where the machine stopped, when the request failed before the end). */
  readonly final: string;
  /** Redis commands the request sent: the load, then the write. */
  readonly redis: readonly string[];
  /** What Redis answered to the write. */
  readonly write: WriteOutcome;
  readonly cookie: CookieAction;
  /** Why the session was not stored as the handler left it, if it was not. */
  readonly failure: Failure | null;
  /** Why no cookie could be sent on this response, if none could (headers already sent…). */
  readonly blocked: string | null;
  /** Milliseconds spent in the middleware, the handler included. */
  readonly ms: number;
  /** All of the above on one line. */
  readonly line: string;
}

/** What the middleware learns about a traced request beside the machine's run. */
export interface TraceNotes {
  write: WriteOutcome;
  blocked: string | null;
  /** The id the request loaded or created, and the one it left the session under. */
  from: string | null;
  to: string | null;
  /** The request's signing keys: a session's tag is their keyed hash of its id. */
  keys: KeyRing | null;
}

export function newNotes(): TraceNotes {
  return { write: 'none', blocked: null, from: null, to: null, keys: null };
}

/** The status Koa answers a thrown error with (its `status` or `statusCode` when a known HTTP
 *  status, else 500), as `ctx.onerror` does: https://github.com/koajs/koa/blob/master/lib/context.js */
export function statusOf(err: unknown): number {
  const e = err as { status?: unknown; statusCode?: unknown } | null;
  const status = typeof e?.status === 'number' ? e.status : typeof e?.statusCode === 'number' ? e.statusCode : 500;
  return STATUS_CODES[status] !== undefined ? status : 500;
}

/** Tracing from the environment, as the `debug` package reads `DEBUG` (its own patterns and
 *  exclusions: `koa-*`, `*,-koa-session-machine`) and with its logger. */
const fromEnv = createDebug('koa-session-machine');

export class Tracer {
  readonly #observers = new Set<(trace: SessionTrace) => void>();
  readonly #debug: ResolvedOptions['debug'];
  readonly #header: boolean;

  constructor(opts: Pick<ResolvedOptions, 'debug' | 'traceHeader'>) {
    this.#debug = opts.debug;
    this.#header = opts.traceHeader;
  }

  /** `debug: true`, or the option left out and `DEBUG` naming this package (asked per request:
   *  `debug.enable()` may change it at run time). */
  get #logs(): boolean {
    return this.#debug === true || (this.#debug === undefined && fromEnv.enabled);
  }

  /** Whether this request should record its steps. */
  get on(): boolean {
    return this.#logs || typeof this.#debug === 'function' || this.#header || this.#observers.size > 0;
  }

  observe(listener: (trace: SessionTrace) => void): () => void {
    this.#observers.add(listener);
    return () => this.#observers.delete(listener);
  }

  /** A session's tag: a keyed hash of its id, never the id (README, "Debugging a session"). */
  #tag(id: string | null, keys: KeyRing | null): string | null {
    return id === null || keys === null ? null : keys.sign(`trace\n${id}`).slice(0, 8);
  }

  /** Make the trace, send it where it goes, and return its line. A listener or `debug` function
   *  that throws does not fail the request: its error goes to the app's `error` event. */
  finish(ctx: Context, run: MachineRun, start: number, notes: TraceNotes, status: number): string {
    const steps = run.trace ?? [];
    const output = run.output;
    const redis: string[] = [];
    if (steps.some((s) => s.event === 'cookie.verified')) redis.push('load');
    const plan = run.context.plan;
    if (plan !== 'none' && notes.write !== 'none') redis.push(plan);
    const cookie = output?.cookie ?? 'none';
    const failure = output?.failure ?? null;
    const ms = performance.now() - start;
    const from = this.#tag(notes.from, notes.keys);
    const to = this.#tag(notes.to, notes.keys);
    const session = from !== null && to !== null && from !== to ? `${from}>${to}` : (from ?? to);
    const path = steps.length ? `${steps[0]?.from} ${steps.map((s) => `-${s.event}-> ${s.to}`).join(' ')}` : run.value;
    const wrote = notes.write === 'none' ? '' : ` -> ${notes.write}`;
    const line =
      `${ctx.method} ${ctx.path} ${status} [${session ?? 'no session'}] ${path} | ` +
      `redis: ${redis.join(', ') || 'none'}${wrote} | cookie: ${cookie}` +
      `${failure ? ` | ${failure}` : ''}` +
      `${notes.blocked ? ` | no cookie possible: ${notes.blocked}` : ''} | ${ms.toFixed(2)} ms`;
    const trace: SessionTrace = {
      method: ctx.method,
      path: ctx.path,
      status,
      session,
      steps,
      final: run.value,
      redis,
      write: notes.write,
      cookie,
      failure,
      blocked: notes.blocked,
      ms,
      line,
    };
    if (this.#header && !ctx.headerSent) ctx.set('X-Session-Trace', line);
    if (this.#debug === true) console.error(`koa-session-machine ${line}`);
    else if (this.#debug === undefined && fromEnv.enabled) fromEnv(line);
    if (typeof this.#debug === 'function') this.#call(ctx, this.#debug, trace);
    for (const listener of this.#observers) this.#call(ctx, listener, trace);
    return line;
  }

  #call(ctx: Context, listener: (trace: SessionTrace, ctx: Context) => void, trace: SessionTrace): void {
    try {
      listener(trace, ctx);
    } catch (err) {
      ctx.app.emit('error', err, ctx);
    }
  }

  /** Whether the line goes in an `X-Session-Trace` header. */
  get header(): boolean {
    return this.#header;
  }
}
