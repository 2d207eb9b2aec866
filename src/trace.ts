/**
 * Per-request traces: the path the machine took, the commands sent, the cookie action, the write's
 * answer and the status, for the `debug` option, `DEBUG=koa-session-machine`, the
 * `X-Session-Trace` header and `sessionChart()`.
 */
import type { Context } from 'koa';
import type { MachineRun, TraceStep } from './fsm.js';
import type { ResolvedOptions } from './options.js';
import type { CookieAction, Failure } from './policy.js';

/** What one request did. */
export interface SessionTrace {
  readonly method: string;
  readonly path: string;
  /** Every transition taken, in order. */
  readonly steps: readonly TraceStep[];
  /** The final state (or where the machine stopped, when the request failed before the end). */
  readonly final: string;
  /** Redis commands the request sent: the load, then the write. */
  readonly redis: readonly string[];
  readonly cookie: CookieAction;
  /** Why the session was not stored as the handler left it, if it was not. */
  readonly failure: Failure | null;
  /** Milliseconds spent in the middleware, the handler included. */
  readonly ms: number;
  /** All of the above on one line. */
  readonly line: string;
}

/** `DEBUG=koa-session-machine` (or `*`, or a list holding either), as the `debug` module reads it. */
function debugFromEnv(): boolean {
  return (process.env.DEBUG ?? '').split(/[\s,]+/).some((p) => p === '*' || p === 'koa-session-machine' || p === 'koa-session-machine*');
}

export class Tracer {
  readonly #observers = new Set<(trace: SessionTrace) => void>();
  readonly #log: ((trace: SessionTrace) => void) | undefined;
  readonly #debug: ResolvedOptions['debug'];
  readonly #header: boolean;

  constructor(opts: Pick<ResolvedOptions, 'debug' | 'traceHeader'>) {
    this.#debug = opts.debug;
    this.#header = opts.traceHeader;
    this.#log = opts.debug === true || (opts.debug === undefined && debugFromEnv()) ? (t) => console.error(`koa-session-machine ${t.line}`) : undefined;
  }

  /** Whether this request should record its steps. */
  get on(): boolean {
    return this.#log !== undefined || typeof this.#debug === 'function' || this.#header || this.#observers.size > 0;
  }

  observe(listener: (trace: SessionTrace) => void): () => void {
    this.#observers.add(listener);
    return () => this.#observers.delete(listener);
  }

  finish(ctx: Context, run: MachineRun, start: number): void {
    const steps = run.trace ?? [];
    const output = run.output;
    const redis: string[] = [];
    if (steps.some((s) => s.event === 'cookie.verified')) redis.push('load');
    const plan = run.context.plan;
    if (plan !== 'none' && steps.some((s) => s.event.startsWith('write.'))) redis.push(plan);
    const cookie = output?.cookie ?? 'none';
    const failure = output?.failure ?? null;
    const ms = performance.now() - start;
    const path = steps.length ? `${steps[0]?.from} ${steps.map((s) => `-${s.event}-> ${s.to}`).join(' ')}` : run.value;
    const line = `${ctx.method} ${ctx.path} ${path} | redis: ${redis.join(', ') || 'none'} | cookie: ${cookie}${failure ? ` | ${failure}` : ''} | ${ms.toFixed(2)} ms`;
    const trace: SessionTrace = { method: ctx.method, path: ctx.path, steps, final: run.value, redis, cookie, failure, ms, line };
    if (this.#header) ctx.set('X-Session-Trace', line);
    this.#log?.(trace);
    if (typeof this.#debug === 'function') this.#debug(trace, ctx);
    for (const listener of this.#observers) listener(trace);
  }
}
