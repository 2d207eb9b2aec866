/**
 * The session machine without Redis: the compiled interpreter (src/fsm.ts) is equivalent to the
 * XState actor on every shortest path of the graph (xstate/graph) and on random event sequences
 * (fast-check), and the final outputs read as the contract.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { assign, createActor, setup, type AnyStateMachine, type SnapshotFrom } from 'xstate';
import { getShortestPaths, getSimplePaths } from 'xstate/graph';
import { sessionMachine } from '../machines/session.machine.js';
import { MachineRun, compileMachine, sessionTable } from '../src/fsm.js';
import type { RequestEndedEvent, SessionEvent, SessionInput, SessionOutput } from '../src/policy.js';

const ENDINGS: RequestEndedEvent[] = [];
for (const hasData of [false, true])
  for (const changed of [false, true])
    for (const cookieAllowed of [false, true])
      for (const errored of [false, true]) ENDINGS.push({ type: 'request.ended', hasData, changed, cookieAllowed, errored });

const EVENTS: SessionEvent[] = [
  { type: 'cookie.missing' },
  { type: 'cookie.invalid' },
  { type: 'cookie.verified', keyIndex: 0 },
  { type: 'cookie.verified', keyIndex: 1 },
  { type: 'load.found', refreshed: false },
  { type: 'load.found', refreshed: true },
  { type: 'load.stale' },
  { type: 'load.undecodable' },
  { type: 'load.failed' },
  { type: 'data.written' },
  { type: 'session.invalidated' },
  { type: 'session.regenerated' },
  { type: 'session.recookied' },
  ...ENDINGS,
];

const INPUTS: SessionInput[] = [];
for (const invalidateEmptySession of [false, true])
  for (const cookieOnException of [false, true])
    for (const deserializedFailsNew of [false, true])
      for (const continueOnRedisError of [false, true]) INPUTS.push({ invalidateEmptySession, cookieOnException, deserializedFailsNew, continueOnRedisError });

type Snap = SnapshotFrom<typeof sessionMachine>;

function flatValue(value: unknown): string {
  if (typeof value === 'string') return value;
  const [key, child] = Object.entries(value as Record<string, unknown>)[0] as [string, unknown];
  return `${key}.${flatValue(child)}`;
}

/** Run events on both runtimes, comparing after every step. */
function compare(input: SessionInput, events: readonly SessionEvent[]): { value: string; output: SessionOutput | undefined } {
  const actor = createActor(sessionMachine, { input }).start();
  const run = new MachineRun(input);
  for (const event of events) {
    actor.send(event);
    run.send(event);
    const snap = actor.getSnapshot() as Snap;
    const where = `after ${events.map((e) => e.type).join(' → ')}`;
    assert.equal(run.value, flatValue(snap.value), `state ${where}`);
    assert.deepEqual({ ...run.context }, snap.context, `context ${where}`);
    assert.equal(run.done, snap.status === 'done', `status ${where}`);
    assert.deepEqual(run.output, snap.output, `output ${where}`);
  }
  return { value: run.value, output: run.output };
}

describe('compiled machine', () => {
  it('has one leaf per atomic and final state of the chart', () => {
    assert.deepEqual(
      sessionTable.leaves.map((l) => l.path).sort(),
      [
        'destroyed', 'discarded', 'invalid.clean', 'invalid.dirty', 'loaded.clean', 'loaded.dirty', 'loaded.invalidated',
        'loaded.regenerated', 'loaded.replaced', 'loading', 'new.clean', 'new.dirty', 'offline.clean', 'offline.dirty', 'persisted', 'refreshed', 'unloaded', 'untouched',
      ],
    );
  });

  it('equals the XState actor on every shortest path, for every option combination', () => {
    let paths = 0;
    const finals = new Set<string>();
    for (const input of INPUTS) {
      for (const path of getShortestPaths(sessionMachine, { input, events: EVENTS })) {
        const { value } = compare(input, path.steps.slice(1).map((s) => s.event as SessionEvent));
        if ((path.state as Snap).status === 'done') finals.add(value);
        paths++;
      }
    }
    assert.ok(paths > 100, `explored ${paths} paths`);
    assert.deepEqual([...finals].sort(), ['destroyed', 'discarded', 'persisted', 'refreshed', 'untouched']);
  });

  it('equals the XState actor on every simple path to a final state (default options)', () => {
    const input = INPUTS.find((i) => i.invalidateEmptySession && i.cookieOnException && !i.deserializedFailsNew && i.continueOnRedisError) as SessionInput;
    const paths = getSimplePaths(sessionMachine, {
      input,
      events: EVENTS,
      toState: (s) => s.status === 'done',
    });
    assert.ok(paths.length > 50, `explored ${paths.length} simple paths`);
    for (const path of paths) compare(input, path.steps.slice(1).map((s) => s.event as SessionEvent));
  });

  it('equals the XState actor on random event sequences', () => {
    fc.assert(
      fc.property(fc.constantFrom(...INPUTS), fc.array(fc.constantFrom(...EVENTS), { maxLength: 12 }), (input, events) => {
        compare(input, events);
      }),
      { numRuns: 3000 },
    );
  });

  it('rejects charts outside the supported subset', () => {
    const s = setup({ actions: { a: assign({}) } });
    const withEntry = s.createMachine({ initial: 'a', states: { a: { entry: 'a' } } });
    assert.throws(() => compileMachine(withEntry as AnyStateMachine), /entry\/exit/);
    const parallel = s.createMachine({ type: 'parallel', states: { a: {}, b: {} } });
    assert.throws(() => compileMachine(parallel as AnyStateMachine), /parallel/);
    const unknownGuard = setup({ guards: { nope: () => true } }).createMachine({ initial: 'a', states: { a: { on: { go: { guard: 'nope', target: 'a' } } } } });
    assert.throws(() => compileMachine(unknownGuard as AnyStateMachine), /unknown guard "nope"/);
  });
});

const DEFAULTS: SessionInput = { invalidateEmptySession: true, cookieOnException: true, deserializedFailsNew: false, continueOnRedisError: false };
const end = (e: Partial<RequestEndedEvent>): RequestEndedEvent => ({
  type: 'request.ended', hasData: true, changed: false, cookieAllowed: true, errored: false, ...e,
});
const loaded = (refreshed = true, keyIndex = 0): SessionEvent[] => [{ type: 'cookie.verified', keyIndex }, { type: 'load.found', refreshed }];

/** Final state and output for a story, run on the compiled machine. */
function story(events: SessionEvent[], input: SessionInput = DEFAULTS): [string, SessionOutput | undefined] {
  const { value, output } = compare(input, events);
  return [value, output];
}

describe('final decisions', () => {
  describe('no cookie', () => {
    it('stores nothing for an untouched session', () => {
      assert.deepEqual(story([{ type: 'cookie.missing' }, end({ hasData: false })]), ['untouched', { redis: 'none', cookie: 'none' }]);
    });
    it('creates a session that holds data, and sets its cookie', () => {
      assert.deepEqual(story([{ type: 'cookie.missing' }, { type: 'data.written' }, end({ changed: true })]), ['persisted', { redis: 'create', cookie: 'set' }]);
    });
    it('discards data whose cookie may not be sent (never an orphan key)', () => {
      assert.deepEqual(story([{ type: 'cookie.missing' }, { type: 'data.written' }, end({ cookieAllowed: false })]), ['discarded', { redis: 'none', cookie: 'none' }]);
    });
    it('discards data on an error response without cookieOnException', () => {
      const input = { ...DEFAULTS, cookieOnException: false };
      assert.deepEqual(story([{ type: 'cookie.missing' }, { type: 'data.written' }, end({ errored: true })], input), ['discarded', { redis: 'none', cookie: 'none' }]);
    });
    it('creates on an error response with cookieOnException', () => {
      assert.deepEqual(story([{ type: 'cookie.missing' }, { type: 'data.written' }, end({ errored: true })]), ['persisted', { redis: 'create', cookie: 'set' }]);
    });
  });

  describe('invalid cookie', () => {
    it('clears the cookie when nothing replaces it', () => {
      assert.deepEqual(story([{ type: 'cookie.invalid' }, end({ hasData: false })]), ['untouched', { redis: 'none', cookie: 'clear' }]);
    });
    it('sends no cookie header at all when cookies are refused', () => {
      assert.deepEqual(story([{ type: 'cookie.invalid' }, end({ hasData: false, cookieAllowed: false })]), ['untouched', { redis: 'none', cookie: 'none' }]);
    });
    it('replaces it with a new session that holds data', () => {
      assert.deepEqual(story([{ type: 'cookie.invalid' }, { type: 'data.written' }, end({})]), ['persisted', { redis: 'create', cookie: 'set' }]);
    });
  });

  describe('valid cookie', () => {
    it('sends nothing more after a refreshing load', () => {
      assert.deepEqual(story([...loaded(true), end({})]), ['refreshed', { redis: 'none', cookie: 'none' }]);
    });
    it('sends nothing more when the load did not refresh (timeoutTrigger)', () => {
      assert.deepEqual(story([...loaded(false), end({})]), ['untouched', { redis: 'none', cookie: 'none' }]);
    });
    it('patches changed data', () => {
      assert.deepEqual(story([...loaded(), { type: 'data.written' }, end({ changed: true })]), ['persisted', { redis: 'patch', cookie: 'none' }]);
    });
    it('patches nested changes found at the end even without a top-level write', () => {
      assert.deepEqual(story([...loaded(), end({ changed: true })]), ['persisted', { redis: 'patch', cookie: 'none' }]);
    });
    it('re-signs a cookie verified with an older key', () => {
      assert.deepEqual(story([...loaded(true, 1), end({})]), ['refreshed', { redis: 'none', cookie: 'set' }]);
    });
    it('sends the cookie again on recookie()', () => {
      assert.deepEqual(story([...loaded(), { type: 'session.recookied' }, end({})]), ['refreshed', { redis: 'none', cookie: 'set' }]);
    });
    it('deletes a session left empty', () => {
      assert.deepEqual(story([...loaded(), end({ hasData: false, changed: true })]), ['destroyed', { redis: 'delete', cookie: 'clear' }]);
    });
    it('keeps an emptied session without invalidateEmptySession', () => {
      const input = { ...DEFAULTS, invalidateEmptySession: false };
      assert.deepEqual(story([...loaded(), end({ hasData: false, changed: true })], input), ['persisted', { redis: 'patch', cookie: 'none' }]);
    });
    it('deletes on invalidate()', () => {
      assert.deepEqual(story([...loaded(), { type: 'session.invalidated' }, end({ hasData: false })]), ['destroyed', { redis: 'delete', cookie: 'clear' }]);
    });
    it('rotates on invalidate() then write', () => {
      assert.deepEqual(
        story([...loaded(), { type: 'session.invalidated' }, { type: 'data.written' }, end({ changed: true })]),
        ['persisted', { redis: 'rotate', cookie: 'set' }],
      );
    });
    it('only deletes on invalidate() then write when the new cookie may not be sent', () => {
      assert.deepEqual(
        story([...loaded(), { type: 'session.invalidated' }, { type: 'data.written' }, end({ cookieAllowed: false })]),
        ['destroyed', { redis: 'delete', cookie: 'none' }],
      );
    });
    it('rotates on regenerate()', () => {
      assert.deepEqual(story([...loaded(), { type: 'session.regenerated' }, end({})]), ['persisted', { redis: 'rotate', cookie: 'set' }]);
    });
    it('keeps the id when regenerate() cannot send the new cookie', () => {
      assert.deepEqual(
        story([...loaded(), { type: 'session.regenerated' }, end({ changed: true, cookieAllowed: false })]),
        ['persisted', { redis: 'patch', cookie: 'none' }],
      );
    });
    it('treats a missing, expired or legacy key as an invalid cookie', () => {
      assert.deepEqual(story([{ type: 'cookie.verified', keyIndex: 0 }, { type: 'load.stale' }, end({ hasData: false })]), ['untouched', { redis: 'none', cookie: 'clear' }]);
    });
    it('fails the request on an undecodable payload by default', () => {
      assert.deepEqual(story([{ type: 'cookie.verified', keyIndex: 0 }, { type: 'load.undecodable' }]), ['discarded', { redis: 'none', cookie: 'none' }]);
    });
    it('fails the request when Redis fails the load (onRedisError throw)', () => {
      assert.deepEqual(story([{ type: 'cookie.verified', keyIndex: 0 }, { type: 'load.failed' }]), ['discarded', { redis: 'none', cookie: 'none' }]);
    });
    it("serves an unstored session, keeping the cookie, when Redis fails the load (onRedisError continue)", () => {
      const input = { ...DEFAULTS, continueOnRedisError: true };
      assert.deepEqual(
        story([{ type: 'cookie.verified', keyIndex: 1 }, { type: 'load.failed' }, { type: 'data.written' }, { type: 'session.recookied' }, end({ changed: true })], input),
        ['discarded', { redis: 'none', cookie: 'none' }],
      );
    });
    it('starts fresh on an undecodable payload with deserializedFailsNew', () => {
      const input = { ...DEFAULTS, deserializedFailsNew: true };
      assert.deepEqual(story([{ type: 'cookie.verified', keyIndex: 0 }, { type: 'load.undecodable' }, end({ hasData: false })], input), ['untouched', { redis: 'none', cookie: 'clear' }]);
    });
  });
});
