/**
 * An oracle for the machine, written apart from the chart and from src/policy.ts: a plain decision
 * table of how a request ends (final state, the command sent, the cookie action, the failure and the
 * status) for every situation a request can be in when the handler returns, every combination of
 * what `request.ended` reports, every option combination and every answer Redis can give to the
 * write. Both runtimes, the XState actor and the compiled table, are checked against it: the
 * equivalence test (machine.test.ts) proves the compiler, this proves the rules.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createActor } from 'xstate';
import { sessionMachine } from '../../machines/session.machine.js';
import { MachineRun } from '../../src/fsm.js';
import type { RequestEndedEvent, SessionEvent, SessionInput, SessionOutput } from '../../src/policy.js';

type Answer = 'stored' | 'ended' | 'gone' | 'tooLarge' | 'failed';
type Command = 'create' | 'patch' | 'move' | 'replace' | 'delete';

interface Situation {
  name: string;
  kind: 'new' | 'invalid' | 'loaded' | 'invalidated' | 'replaced' | 'regenerated' | 'offline';
  events: SessionEvent[];
  refreshed?: boolean;
  /** The cookie is to be re-sent: recookie() or verified with an older key. */
  resend?: boolean;
  /** Only reachable with this option. */
  needs?: Partial<SessionInput>;
}

interface Expected {
  final: string;
  output: SessionOutput;
}

/** What Redis can answer to each command (src/store/lua/*.lua). */
const ANSWERS: Record<Command, Answer[]> = {
  create: ['stored', 'failed'],
  patch: ['stored', 'ended', 'gone', 'tooLarge', 'failed'],
  move: ['stored', 'ended', 'gone', 'tooLarge', 'failed'],
  replace: ['stored', 'failed'],
  delete: ['ended', 'failed'],
};

const done = (
  final: string,
  redis: SessionOutput['redis'],
  cookie: SessionOutput['cookie'],
  failure: SessionOutput['failure'] = null,
  status: SessionOutput['status'] = 0,
): Expected => ({
  final,
  output: { redis, cookie, failure, status },
});

/**
 * The reference: how a request in situation `s` ends, given what the handler left (`e`), the
 * options, and Redis' answer to the write, if one is sent. Returns the command when a write is due
 * and no answer is given.
 */
function reference(s: Situation, o: SessionInput, e: RequestEndedEvent, answer?: Answer): Expected | Command {
  const maySet = e.cookieAllowed && (!e.errored || o.cookieOnException); // pyramid's cookie_on_exception
  const mayClear = e.cookieAllowed;
  const storeFailed = o.continueOnRedisError ? 0 : 503;
  const write = (command: Command, then: Record<Answer, () => Expected>): Expected | Command =>
    answer === undefined ? command : then[answer]();
  const never = (): Expected => {
    throw new Error('an answer this command never gets');
  };
  switch (s.kind) {
    case 'offline':
      // Redis was away at the load: nothing is ever written; the cookie stays for when it is back.
      return done('discarded', 'none', 'none');
    case 'new':
    case 'invalid': {
      const clearStale = s.kind === 'invalid' && mayClear ? 'clear' : 'none';
      if (!e.hasData) return done('untouched', 'none', clearStale);
      // Never an orphan key, and never a secure cookie refused after the write.
      if (!maySet) return done('rejected', 'none', clearStale, 'cookieRefused', 0);
      if (!e.secureOk) return done('rejected', 'none', clearStale, 'insecureCookie', 500);
      if (!e.fits) return done('rejected', 'none', clearStale, 'tooLarge', 500);
      return write('create', {
        stored: () => done('persisted', 'create', 'set'),
        failed: () => done('failed', 'create', 'none', 'storeFailed', storeFailed),
        ended: never,
        gone: never,
        tooLarge: never,
      });
    }
    case 'loaded': {
      const resend = s.resend === true && maySet;
      if (resend && !e.secureOk) return done('rejected', 'none', 'none', 'insecureCookie', 500);
      const kept = resend ? 'set' : 'none';
      // Rolling: when the expiry moves (a refresh, or a stored write) the cookie follows it, if the
      // option says so (by default: a persistent cookie), unless it could not be sent anyway.
      const rolls = (o.rolling ?? e.persistentCookie) && maySet && e.secureOk;
      const moved = resend || rolls ? 'set' : 'none';
      if ((!e.hasData && o.invalidateEmptySession) || e.changed) {
        return write('patch', {
          stored: () => done('persisted', 'patch', moved),
          ended: () => done('destroyed', 'patch', mayClear ? 'clear' : 'none'),
          gone: () => done('gone', 'patch', 'none', 'gone'),
          tooLarge: () => done('rejected', 'none', 'none', 'tooLarge', 500),
          failed: () => done('failed', 'patch', 'none', 'storeFailed', storeFailed),
        });
      }
      return s.refreshed ? done('refreshed', 'none', moved) : done('untouched', 'none', kept);
    }
    case 'invalidated':
    case 'replaced': {
      const logout = (failure: SessionOutput['failure']): Expected | Command =>
        write('delete', {
          ended: () => done('destroyed', 'delete', mayClear ? 'clear' : 'none', failure),
          // A logout stays a logout for this browser even when Redis did not answer.
          failed: () => done('failed', 'delete', mayClear ? 'clear' : 'none', 'storeFailed', storeFailed),
          stored: never,
          gone: never,
          tooLarge: never,
        });
      if (s.kind === 'invalidated' || !e.hasData) return logout(null);
      if (!maySet) return logout('cookieRefused');
      if (!e.secureOk) return done('rejected', 'none', 'none', 'insecureCookie', 500);
      if (!e.fits) return done('rejected', 'none', 'none', 'tooLarge', 500);
      return write('replace', {
        stored: () => done('persisted', 'replace', 'set'),
        failed: () => done('failed', 'replace', 'none', 'storeFailed', storeFailed),
        ended: never,
        gone: never,
        tooLarge: never,
      });
    }
    case 'regenerated':
      // Session fixation defence: the data never lands under the old id.
      if (!maySet) return done('rejected', 'none', 'none', 'cookieRefused', 0);
      if (!e.secureOk) return done('rejected', 'none', 'none', 'insecureCookie', 500);
      return write('move', {
        stored: () => done('persisted', 'move', 'set'),
        ended: () => done('destroyed', 'move', mayClear ? 'clear' : 'none'),
        gone: () => done('gone', 'move', 'none', 'gone'),
        tooLarge: () => done('rejected', 'none', 'none', 'tooLarge', 500),
        failed: () => done('failed', 'move', 'none', 'storeFailed', storeFailed),
      });
  }
}

// ---------------------------------------------------------------------------------------------
// Every situation, reached by the events a request sends before its end.

const verified = (keyIndex: number): SessionEvent => ({ type: 'cookie.verified', keyIndex });
const found = (refreshed: boolean): SessionEvent => ({ type: 'load.found', refreshed });
const W: SessionEvent = { type: 'data.written' };
const INV: SessionEvent = { type: 'session.invalidated' };
const REGEN: SessionEvent = { type: 'session.regenerated' };
const RECOOKIE: SessionEvent = { type: 'session.recookied' };

const SITUATIONS: Situation[] = [
  { name: 'no cookie', kind: 'new', events: [{ type: 'cookie.missing' }] },
  { name: 'no cookie, data written', kind: 'new', events: [{ type: 'cookie.missing' }, W] },
  { name: 'badly signed cookie', kind: 'invalid', events: [{ type: 'cookie.invalid' }, W] },
  { name: 'key missing', kind: 'invalid', events: [verified(0), { type: 'load.stale' }] },
  {
    name: 'undecodable, deserializedFailsNew',
    kind: 'invalid',
    events: [verified(0), { type: 'load.undecodable' }, W],
    needs: { deserializedFailsNew: true },
  },
  {
    name: 'Redis away at the load',
    kind: 'offline',
    events: [verified(1), { type: 'load.failed' }, W, RECOOKIE],
    needs: { continueOnRedisError: true },
  },
  { name: 'new session, invalidate() then data', kind: 'new', events: [{ type: 'cookie.missing' }, W, INV, W] },
];
for (const refreshed of [false, true]) {
  for (const keyIndex of [0, 1]) {
    for (const recookie of [false, true]) {
      const base = [verified(keyIndex), found(refreshed), ...(recookie ? [RECOOKIE] : [])];
      const label = `loaded (refreshed ${refreshed}, key ${keyIndex}, recookie ${recookie})`;
      const resend = recookie || keyIndex > 0;
      SITUATIONS.push(
        { name: label, kind: 'loaded', events: base, refreshed, resend },
        { name: `${label}, written`, kind: 'loaded', events: [...base, W], refreshed, resend },
        { name: `${label}, invalidate()`, kind: 'invalidated', events: [...base, W, INV] },
        { name: `${label}, invalidate(), regenerate()`, kind: 'invalidated', events: [...base, INV, REGEN] },
        { name: `${label}, invalidate() then data`, kind: 'replaced', events: [...base, INV, W] },
        { name: `${label}, invalidate() then data, regenerate()`, kind: 'replaced', events: [...base, INV, W, REGEN] },
        { name: `${label}, replaced then invalidated`, kind: 'invalidated', events: [...base, INV, W, INV] },
        { name: `${label}, regenerate()`, kind: 'regenerated', events: [...base, REGEN] },
        { name: `${label}, regenerate() then data`, kind: 'regenerated', events: [...base, REGEN, W] },
        { name: `${label}, data then regenerate()`, kind: 'regenerated', events: [...base, W, REGEN] },
      );
    }
  }
}

const INPUTS: SessionInput[] = [];
for (const invalidateEmptySession of [false, true])
  for (const cookieOnException of [false, true])
    for (const deserializedFailsNew of [false, true])
      for (const continueOnRedisError of [false, true])
        for (const rolling of [null, true, false])
          INPUTS.push({
            invalidateEmptySession,
            cookieOnException,
            deserializedFailsNew,
            continueOnRedisError,
            rolling,
          });

const ENDINGS: RequestEndedEvent[] = [];
for (const hasData of [false, true])
  for (const changed of [false, true])
    for (const cookieAllowed of [false, true])
      for (const errored of [false, true])
        for (const fits of [false, true])
          for (const secureOk of [false, true])
            for (const persistentCookie of [false, true])
              ENDINGS.push({
                type: 'request.ended',
                hasData,
                changed,
                cookieAllowed,
                errored,
                fits,
                secureOk,
                persistentCookie,
              });

/** Both runtimes on one story: the final state (or where they wait) and the output. */
function runBoth(
  input: SessionInput,
  events: readonly SessionEvent[],
  xstate: boolean,
): { value: string; output: SessionOutput | undefined } {
  const run = new MachineRun(input);
  for (const event of events) run.send(event);
  if (xstate) {
    const actor = createActor(sessionMachine, { input }).start();
    for (const event of events) actor.send(event);
    const snapshot = actor.getSnapshot();
    assert.equal(
      typeof snapshot.value === 'string' ? snapshot.value : JSON.stringify(snapshot.value),
      run.value.includes('.') ? JSON.stringify(snapshot.value) : run.value,
    );
    assert.deepEqual(snapshot.output, run.output);
  }
  return { value: run.value, output: run.output };
}

const WAITING: Record<Command, string> = {
  create: 'creating',
  patch: 'patching',
  move: 'moving',
  replace: 'replacing',
  delete: 'deleting',
};

describe('the machine against an independent decision table', () => {
  it('every situation × option combination × request ending × write answer: both runtimes decide as the table does', () => {
    let checked = 0;
    const finals = new Set<string>();
    for (const s of SITUATIONS) {
      for (const input of INPUTS) {
        if (s.needs && Object.entries(s.needs).some(([k, v]) => input[k as keyof SessionInput] !== v)) continue;
        for (const e of ENDINGS) {
          // The actor costs ~50 µs a run: it checks every 16th story; the compiled table, all.
          const xstate = checked % 16 === 0;
          const expected = reference(s, input, e);
          const where = `${s.name}; ${JSON.stringify(input)}; ${JSON.stringify(e)}`;
          const ended = runBoth(input, [...s.events, e], xstate);
          if (typeof expected !== 'string') {
            assert.deepEqual({ final: ended.value, output: ended.output }, expected, where);
            finals.add(expected.final);
            checked++;
            continue;
          }
          assert.equal(ended.value, WAITING[expected], `${where}: waits for the answer to ${expected}`);
          assert.equal(ended.output, undefined, where);
          for (const answer of ANSWERS[expected]) {
            const want = reference(s, input, e, answer) as Expected;
            const got = runBoth(input, [...s.events, e, { type: `write.${answer}` }], xstate);
            assert.deepEqual({ final: got.value, output: got.output }, want, `${where}; answer ${answer}`);
            finals.add(want.final);
            checked++;
          }
        }
      }
    }
    assert.ok(checked > 50_000, `checked ${checked} stories`);
    assert.deepEqual([...finals].sort(), [
      'destroyed',
      'discarded',
      'failed',
      'gone',
      'persisted',
      'refreshed',
      'rejected',
      'untouched',
    ]);
  });

  it('an answer that does not apply to the write is ignored: the machine keeps waiting', () => {
    const input = INPUTS[INPUTS.length - 1] as SessionInput;
    const e = ENDINGS[ENDINGS.length - 1] as RequestEndedEvent;
    const { value, output } = runBoth(input, [{ type: 'cookie.missing' }, W, e, { type: 'write.gone' }], true);
    assert.equal(value, 'creating');
    assert.equal(output, undefined);
  });
});
