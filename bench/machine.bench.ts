/**
 * What the session machine costs per request: the compiled interpreter the middleware runs
 * (src/fsm.ts) beside an XState actor of the same chart, on four request stories. Target: the
 * compiled machine at most 3 µs per request . Prints medians of several rounds.
 *   npm run bench:machine
 */
import { createActor } from 'xstate';
import { sessionMachine } from '../machines/session.machine.js';
import { MachineRun } from '../src/fsm.js';
import type { SessionEvent, SessionInput } from '../src/policy.js';
import { numberOption } from './options.js';

const input: SessionInput = {
  invalidateEmptySession: true,
  cookieOnException: true,
  deserializedFailsNew: false,
  continueOnRedisError: false,
  rolling: null,
};
const ended = (hasData: boolean, changed: boolean): SessionEvent => ({
  type: 'request.ended',
  hasData,
  changed,
  cookieAllowed: true,
  errored: false,
  fits: true,
  secureOk: true,
  persistentCookie: false,
});

const STORIES: Record<string, SessionEvent[]> = {
  'read-only (cookie, load, end)': [
    { type: 'cookie.verified', keyIndex: 0 },
    { type: 'load.found', refreshed: true },
    ended(true, false),
  ],
  'write (cookie, load, write, end)': [
    { type: 'cookie.verified', keyIndex: 0 },
    { type: 'load.found', refreshed: true },
    { type: 'data.written' },
    ended(true, true),
    { type: 'write.stored' },
  ],
  'new session (no cookie, write, end)': [
    { type: 'cookie.missing' },
    { type: 'data.written' },
    ended(true, true),
    { type: 'write.stored' },
  ],
  'untouched, no cookie': [{ type: 'cookie.missing' }, ended(false, false)],
};

function nsPerOp(fn: () => void, iterations: number): number {
  const start = process.hrtime.bigint();
  for (let i = 0; i < iterations; i++) fn();
  return Number(process.hrtime.bigint() - start) / iterations;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] as number;
}

let sink: unknown;
const rounds = numberOption('ROUNDS', process.env.ROUNDS, 7);
const results: Array<{ story: string; compiled: number; actor: number }> = [];
for (const [story, events] of Object.entries(STORIES)) {
  const compiled = () => {
    const run = new MachineRun(input);
    for (const e of events) run.send(e);
    sink = run.output;
  };
  const actor = () => {
    const a = createActor(sessionMachine, { input }).start();
    for (const e of events) a.send(e);
    sink = a.getSnapshot().output;
  };
  nsPerOp(compiled, 200_000);
  nsPerOp(actor, 5_000);
  const c: number[] = [];
  const x: number[] = [];
  for (let r = 0; r < rounds; r++) {
    c.push(nsPerOp(compiled, 200_000));
    x.push(nsPerOp(actor, 10_000));
  }
  results.push({ story, compiled: median(c), actor: median(x) });
}
void sink;

const pad = (s: string, n: number) => s.padEnd(n);
console.log(`session machine cost per request (median of ${rounds} rounds, node ${process.version})\n`);
console.log(`${pad('story', 38)}${pad('compiled µs', 14)}${pad('XState actor µs', 18)}actor / compiled`);
for (const r of results) {
  console.log(
    `${pad(r.story, 38)}${pad((r.compiled / 1000).toFixed(3), 14)}${pad((r.actor / 1000).toFixed(2), 18)}${(r.actor / r.compiled).toFixed(0)}×`,
  );
}
const worst = Math.max(...results.map((r) => r.compiled)) / 1000;
console.log(
  `\nworst compiled story: ${worst.toFixed(3)} µs per request (target ≤ 3 µs): ${worst <= 3 ? 'met' : 'NOT met'}`,
);
