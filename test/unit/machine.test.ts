/**
 * The session machine without Redis: the compiled interpreter (src/fsm.ts) is equivalent to the
 * XState actor on every shortest path of the graph (xstate/graph), on every simple path to a final
 * state and on random event sequences (fast-check), and the final outputs read as the contract.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { assign, createActor, setup, type AnyStateMachine, type SnapshotFrom } from 'xstate';
import {
  getAdjacencyMap,
  getShortestPaths,
  getSimplePaths,
  serializeSnapshot,
  type SerializedSnapshot,
} from 'xstate/graph';
import { sessionMachine } from '../../machines/session.machine.js';
import { MachineRun, compileMachine, sessionTable } from '../../src/fsm.js';
import type { RequestEndedEvent, SessionEvent, SessionInput, SessionOutput } from '../../src/policy.js';

/** A request that wrote a session that may be stored, and the cookie it needs may be sent. */
const ENDED: RequestEndedEvent = {
  type: 'request.ended',
  hasData: true,
  changed: true,
  cookieAllowed: true,
  errored: false,
  fits: true,
  secureOk: true,
  persistentCookie: false,
};
// Every combination of what a handler can leave; the two vetoes (too large, insecure cookie) on
// their own, as the graph walks below grow with each event kind (the oracle test covers them all).
const ENDINGS: RequestEndedEvent[] = [];
for (const hasData of [false, true])
  for (const changed of [false, true])
    for (const cookieAllowed of [false, true])
      for (const errored of [false, true]) ENDINGS.push({ ...ENDED, hasData, changed, cookieAllowed, errored });
ENDINGS.push({ ...ENDED, fits: false });
ENDINGS.push({ ...ENDED, secureOk: false });
// A persistent cookie, which rolls by default.
ENDINGS.push({ ...ENDED, changed: false, persistentCookie: true });
ENDINGS.push({ ...ENDED, persistentCookie: true });

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
  { type: 'write.stored' },
  { type: 'write.ended' },
  { type: 'write.gone' },
  { type: 'write.tooLarge' },
  { type: 'write.failed' },
];

const INPUTS: SessionInput[] = [];
for (const invalidateEmptySession of [false, true])
  for (const cookieOnException of [false, true])
    for (const deserializedFailsNew of [false, true])
      for (const continueOnRedisError of [false, true])
        INPUTS.push({
          invalidateEmptySession,
          cookieOnException,
          deserializedFailsNew,
          continueOnRedisError,
          rolling: null,
        });
// `rolling` forced on and off, at the other options' defaults.
for (const rolling of [true, false])
  INPUTS.push({
    invalidateEmptySession: true,
    cookieOnException: true,
    deserializedFailsNew: false,
    continueOnRedisError: false,
    rolling,
  });

type Snap = SnapshotFrom<typeof sessionMachine>;

function flatValue(value: unknown): string {
  if (typeof value === 'string') return value;
  const [key, child] = Object.entries(value as Record<string, unknown>)[0] as [string, unknown];
  return `${key}.${flatValue(child)}`;
}

const isDone = (snapshot: Snap) => snapshot.status === 'done';

/**
 * The events of every simple path (no state, context included, visited twice) from the initial
 * state to a final one: what `getSimplePaths(machine, { input, events, toState: isDone })` returns,
 * found in one depth-first walk. `getSimplePaths` walks the graph once per reachable state (318 here)
 * to collect the paths ending there, serializing a state at every step, then keeps those ending in a
 * final state: half a minute or more. A final state has no transitions (the adjacency map stops there), so the
 * paths one walk from the initial state records on reaching a final state are exactly those; each
 * state's successors are serialized once. The test below checks the two agree on a smaller event set.
 */
function simplePathsToFinal(input: SessionInput, events: readonly SessionEvent[]): SessionEvent[][] {
  const adjacency = getAdjacencyMap(sessionMachine, { input, events: [...events], stopWhen: isDone });
  const stateOf = (key: SerializedSnapshot): Snap => {
    const node = adjacency[key];
    assert.ok(node, `a state outside the adjacency map: ${key}`);
    return node.state as Snap;
  };
  const keys = Object.keys(adjacency) as SerializedSnapshot[];
  const start = keys[0] as SerializedSnapshot; // the map is built breadth-first from the initial state
  assert.equal(stateOf(start).value, 'unloaded');
  const successors = new Map(
    keys.map((key) => [
      key,
      Object.values(adjacency[key]?.transitions ?? {}).map(({ event, state }) => ({
        event,
        to: serializeSnapshot(state),
      })),
    ]),
  );
  const paths: SessionEvent[][] = [];
  const onPath = new Set<SerializedSnapshot>();
  const trail: SessionEvent[] = [];
  const walk = (key: SerializedSnapshot): void => {
    if (isDone(stateOf(key))) {
      paths.push([...trail]);
      return;
    }
    onPath.add(key);
    for (const { event, to } of successors.get(key) ?? []) {
      if (onPath.has(to)) continue;
      trail.push(event);
      walk(to);
      trail.pop();
    }
    onPath.delete(key);
  };
  walk(start);
  return paths;
}

/** Run events on both runtimes, comparing after every step. */
function compare(
  input: SessionInput,
  events: readonly SessionEvent[],
): { value: string; output: SessionOutput | undefined } {
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
    assert.deepEqual(sessionTable.leaves.map((l) => l.path).sort(), [
      'creating',
      'deleting',
      'destroyed',
      'discarded',
      'failed',
      'gone',
      'invalid.clean',
      'invalid.dirty',
      'loaded.clean',
      'loaded.dirty',
      'loaded.invalidated',
      'loaded.regenerated',
      'loaded.replaced',
      'loading',
      'moving',
      'new.clean',
      'new.dirty',
      'offline.clean',
      'offline.dirty',
      'patching',
      'persisted',
      'refreshed',
      'rejected',
      'replacing',
      'unloaded',
      'untouched',
    ]);
  });

  it('equals the XState actor on every shortest path, for every option combination', () => {
    let paths = 0;
    const finals = new Set<string>();
    for (const input of INPUTS) {
      for (const path of getShortestPaths(sessionMachine, { input, events: EVENTS })) {
        const { value } = compare(
          input,
          path.steps.slice(1).map((s) => s.event as SessionEvent),
        );
        if ((path.state as Snap).status === 'done') finals.add(value);
        paths++;
      }
    }
    assert.ok(paths > 100, `explored ${paths} paths`);
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

  const defaults = INPUTS.find(
    (i) => i.invalidateEmptySession && i.cookieOnException && !i.deserializedFailsNew && i.continueOnRedisError,
  ) as SessionInput;

  it('finds the simple paths xstate/graph finds (on fewer events)', () => {
    // Enough events for a few hundred paths through every write state, few enough for
    // getSimplePaths to take about a second.
    const events = EVENTS.filter(
      (e) =>
        !(e.type === 'cookie.verified' && e.keyIndex !== 0) &&
        !(e.type === 'load.found' && e.refreshed) &&
        e.type !== 'load.undecodable' &&
        e.type !== 'write.tooLarge' &&
        (e.type !== 'request.ended' ||
          (e.changed && e.cookieAllowed && !e.errored && e.fits && e.secureOk && !e.persistentCookie)),
    );
    const theirs = getSimplePaths(sessionMachine, { input: defaults, events, toState: isDone }).map((path) =>
      JSON.stringify(path.steps.slice(1).map((step) => step.event)),
    );
    const ours = simplePathsToFinal(defaults, events).map((path) => JSON.stringify(path));
    assert.ok(ours.length > 200, `found ${ours.length} simple paths`);
    assert.equal(new Set(ours).size, ours.length, 'no path twice');
    assert.deepEqual(ours.sort(), theirs.sort());
  });

  it('equals the XState actor on every simple path to a final state (default options)', () => {
    // Simple paths multiply with every event kind: the handler's endings here are those of a
    // response that did not fail (the shortest paths and the random sequences cover the rest).
    // Rolling (a persistent cookie) is left to those too: each of its endings doubles the paths.
    const events = EVENTS.filter(
      (e) => e.type !== 'request.ended' || (!e.errored && e.fits && e.secureOk && !e.persistentCookie),
    );
    const paths = simplePathsToFinal(defaults, events);
    assert.ok(paths.length > 3000, `explored ${paths.length} simple paths`);
    for (const path of paths) compare(defaults, path);
  });

  it('equals the XState actor on random event sequences', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...INPUTS),
        fc.array(fc.constantFrom(...EVENTS), { maxLength: 12 }),
        (input, events) => {
          compare(input, events);
        },
      ),
      { numRuns: 3000 },
    );
  });

  it('rejects charts outside the supported subset', () => {
    const s = setup({ actions: { a: assign({}) } });
    const withEntry = s.createMachine({ initial: 'a', states: { a: { entry: 'a' } } });
    assert.throws(() => compileMachine(withEntry as AnyStateMachine), /entry\/exit/);
    const parallel = s.createMachine({ type: 'parallel', states: { a: {}, b: {} } });
    assert.throws(() => compileMachine(parallel as AnyStateMachine), /parallel/);
    const unknownGuard = setup({ guards: { nope: () => true } }).createMachine({
      initial: 'a',
      states: { a: { on: { go: { guard: 'nope', target: 'a' } } } },
    });
    assert.throws(() => compileMachine(unknownGuard as AnyStateMachine), /unknown guard "nope"/);
  });
});

const DEFAULTS: SessionInput = {
  invalidateEmptySession: true,
  cookieOnException: true,
  deserializedFailsNew: false,
  continueOnRedisError: false,
  rolling: null,
};
const end = (e: Partial<RequestEndedEvent>): RequestEndedEvent => ({
  type: 'request.ended',
  hasData: true,
  changed: false,
  cookieAllowed: true,
  errored: false,
  fits: true,
  secureOk: true,
  persistentCookie: false,
  ...e,
});
const loaded = (refreshed = true, keyIndex = 0): SessionEvent[] => [
  { type: 'cookie.verified', keyIndex },
  { type: 'load.found', refreshed },
];
const answer = (a: 'stored' | 'ended' | 'gone' | 'tooLarge' | 'failed'): SessionEvent => ({ type: `write.${a}` });
const out = (
  redis: SessionOutput['redis'],
  cookie: SessionOutput['cookie'],
  failure: SessionOutput['failure'] = null,
  status: SessionOutput['status'] = 0,
): SessionOutput => ({ redis, cookie, failure, status });

/** Final state and output for a story, run on both runtimes. */
function story(events: SessionEvent[], input: SessionInput = DEFAULTS): [string, SessionOutput | undefined] {
  const { value, output } = compare(input, events);
  return [value, output];
}

describe('final decisions', () => {
  describe('no cookie', () => {
    it('stores nothing for an untouched session', () => {
      assert.deepEqual(story([{ type: 'cookie.missing' }, end({ hasData: false })]), [
        'untouched',
        out('none', 'none'),
      ]);
    });
    it('creates a session that holds data, and sets its cookie once Redis stored it', () => {
      const events: SessionEvent[] = [{ type: 'cookie.missing' }, { type: 'data.written' }, end({ changed: true })];
      assert.deepEqual(story(events), ['creating', undefined]);
      assert.deepEqual(story([...events, answer('stored')]), ['persisted', out('create', 'set')]);
    });
    it('sets no cookie when the create failed (503)', () => {
      assert.deepEqual(story([{ type: 'cookie.missing' }, { type: 'data.written' }, end({}), answer('failed')]), [
        'failed',
        out('create', 'none', 'storeFailed', 503),
      ]);
    });
    it('refuses data whose cookie may not be sent (never an orphan key), and says so', () => {
      assert.deepEqual(story([{ type: 'cookie.missing' }, { type: 'data.written' }, end({ cookieAllowed: false })]), [
        'rejected',
        out('none', 'none', 'cookieRefused'),
      ]);
    });
    it('refuses data on an error response without cookieOnException', () => {
      const input = { ...DEFAULTS, cookieOnException: false };
      assert.deepEqual(story([{ type: 'cookie.missing' }, { type: 'data.written' }, end({ errored: true })], input), [
        'rejected',
        out('none', 'none', 'cookieRefused'),
      ]);
    });
    it('creates on an error response with cookieOnException', () => {
      assert.deepEqual(
        story([{ type: 'cookie.missing' }, { type: 'data.written' }, end({ errored: true }), answer('stored')]),
        ['persisted', out('create', 'set')],
      );
    });
    it('refuses a session over maxSize before any write (500)', () => {
      assert.deepEqual(story([{ type: 'cookie.missing' }, end({ fits: false })]), [
        'rejected',
        out('none', 'none', 'tooLarge', 500),
      ]);
    });
    it('refuses a Secure cookie on plain HTTP before any write (500)', () => {
      assert.deepEqual(story([{ type: 'cookie.missing' }, end({ secureOk: false })]), [
        'rejected',
        out('none', 'none', 'insecureCookie', 500),
      ]);
    });
  });

  describe('invalid cookie', () => {
    it('clears the cookie when nothing replaces it', () => {
      assert.deepEqual(story([{ type: 'cookie.invalid' }, end({ hasData: false })]), [
        'untouched',
        out('none', 'clear'),
      ]);
    });
    it('sends no cookie header at all when cookies are refused', () => {
      assert.deepEqual(story([{ type: 'cookie.invalid' }, end({ hasData: false, cookieAllowed: false })]), [
        'untouched',
        out('none', 'none'),
      ]);
    });
    it('replaces it with a new session that holds data', () => {
      assert.deepEqual(story([{ type: 'cookie.invalid' }, { type: 'data.written' }, end({}), answer('stored')]), [
        'persisted',
        out('create', 'set'),
      ]);
    });
  });

  describe('valid cookie', () => {
    it('sends nothing more after a refreshing load', () => {
      assert.deepEqual(story([...loaded(true), end({})]), ['refreshed', out('none', 'none')]);
    });
    it('sends nothing more when the load did not refresh (timeoutTrigger)', () => {
      assert.deepEqual(story([...loaded(false), end({})]), ['untouched', out('none', 'none')]);
    });
    it('patches changed data', () => {
      assert.deepEqual(story([...loaded(), { type: 'data.written' }, end({ changed: true }), answer('stored')]), [
        'persisted',
        out('patch', 'none'),
      ]);
    });
    it('patches nested changes found at the end even without a top-level write', () => {
      assert.deepEqual(story([...loaded(), end({ changed: true }), answer('stored')]), [
        'persisted',
        out('patch', 'none'),
      ]);
    });
    it('reports a patch that found the session ended or moved meanwhile, leaving the cookie alone', () => {
      assert.deepEqual(story([...loaded(), end({ changed: true }), answer('gone')]), [
        'gone',
        out('patch', 'none', 'gone'),
      ]);
    });
    it('fails a patch the stored total makes too large (500)', () => {
      assert.deepEqual(story([...loaded(), end({ changed: true }), answer('tooLarge')]), [
        'rejected',
        out('none', 'none', 'tooLarge', 500),
      ]);
    });
    it('re-signs a cookie verified with an older key', () => {
      assert.deepEqual(story([...loaded(true, 1), end({})]), ['refreshed', out('none', 'set')]);
    });
    it('sends the cookie again on recookie()', () => {
      assert.deepEqual(story([...loaded(), { type: 'session.recookied' }, end({})]), ['refreshed', out('none', 'set')]);
    });
    it('refuses to re-send a Secure cookie on plain HTTP', () => {
      assert.deepEqual(story([...loaded(), { type: 'session.recookied' }, end({ secureOk: false })]), [
        'rejected',
        out('none', 'none', 'insecureCookie', 500),
      ]);
    });
    it('an emptied session is patched; the script deletes it when nothing is left', () => {
      const events = [...loaded(), end({ hasData: false, changed: true })];
      assert.deepEqual(story([...events, answer('ended')]), ['destroyed', out('patch', 'clear')]);
      // Another request added a key meanwhile: the session stays, and so does its cookie.
      assert.deepEqual(story([...events, answer('stored')]), ['persisted', out('patch', 'none')]);
    });
    it('keeps an emptied session without invalidateEmptySession', () => {
      const input = { ...DEFAULTS, invalidateEmptySession: false };
      assert.deepEqual(story([...loaded(), end({ hasData: false, changed: true }), answer('stored')], input), [
        'persisted',
        out('patch', 'none'),
      ]);
    });
    it('ends the session on invalidate()', () => {
      assert.deepEqual(
        story([...loaded(), { type: 'session.invalidated' }, end({ hasData: false }), answer('ended')]),
        ['destroyed', out('delete', 'clear')],
      );
    });
    it('a logout clears the cookie even when Redis failed it', () => {
      assert.deepEqual(
        story([...loaded(), { type: 'session.invalidated' }, end({ hasData: false }), answer('failed')]),
        ['failed', out('delete', 'clear', 'storeFailed', 503)],
      );
    });
    it('replaces on invalidate() then write', () => {
      assert.deepEqual(
        story([
          ...loaded(),
          { type: 'session.invalidated' },
          { type: 'data.written' },
          end({ changed: true }),
          answer('stored'),
        ]),
        ['persisted', out('replace', 'set')],
      );
    });
    it('only ends the session on invalidate() then write when the new cookie may not be sent, and says so', () => {
      assert.deepEqual(
        story([
          ...loaded(),
          { type: 'session.invalidated' },
          { type: 'data.written' },
          end({ cookieAllowed: false }),
          answer('ended'),
        ]),
        ['destroyed', out('delete', 'none', 'cookieRefused')],
      );
    });
    it('only ends the session when it was replaced, then emptied', () => {
      assert.deepEqual(
        story([
          ...loaded(),
          { type: 'session.invalidated' },
          { type: 'data.written' },
          end({ hasData: false, changed: true }),
          answer('ended'),
        ]),
        ['destroyed', out('delete', 'clear')],
      );
    });
    it('moves on regenerate()', () => {
      assert.deepEqual(story([...loaded(), { type: 'session.regenerated' }, end({}), answer('stored')]), [
        'persisted',
        out('move', 'set'),
      ]);
    });
    it('regenerated then emptied: the move deletes what is left empty', () => {
      assert.deepEqual(
        story([...loaded(), { type: 'session.regenerated' }, end({ hasData: false, changed: true }), answer('ended')]),
        ['destroyed', out('move', 'clear')],
      );
    });
    it('a regenerate that found the session logged out meanwhile sets no cookie', () => {
      assert.deepEqual(story([...loaded(), { type: 'session.regenerated' }, end({}), answer('gone')]), [
        'gone',
        out('move', 'none', 'gone'),
      ]);
    });
    it('writes nothing under the old id when regenerate() cannot send the new cookie, and says so', () => {
      assert.deepEqual(
        story([...loaded(), { type: 'session.regenerated' }, end({ changed: true, cookieAllowed: false })]),
        ['rejected', out('none', 'none', 'cookieRefused')],
      );
      const input = { ...DEFAULTS, cookieOnException: false };
      assert.deepEqual(
        story([...loaded(), { type: 'session.regenerated' }, end({ changed: true, errored: true })], input),
        ['rejected', out('none', 'none', 'cookieRefused')],
      );
    });
    it('treats a missing, expired or legacy key as an invalid cookie', () => {
      assert.deepEqual(
        story([{ type: 'cookie.verified', keyIndex: 0 }, { type: 'load.stale' }, end({ hasData: false })]),
        ['untouched', out('none', 'clear')],
      );
    });
    it('fails the request on an undecodable payload by default (500)', () => {
      assert.deepEqual(story([{ type: 'cookie.verified', keyIndex: 0 }, { type: 'load.undecodable' }]), [
        'failed',
        out('none', 'none', 'undecodable', 500),
      ]);
    });
    it('fails the request when Redis fails the load (onRedisError throw: 503)', () => {
      assert.deepEqual(story([{ type: 'cookie.verified', keyIndex: 0 }, { type: 'load.failed' }]), [
        'failed',
        out('none', 'none', 'storeFailed', 503),
      ]);
    });
    it('serves an unstored session, keeping the cookie, when Redis fails the load (onRedisError continue)', () => {
      const input = { ...DEFAULTS, continueOnRedisError: true };
      assert.deepEqual(
        story(
          [
            { type: 'cookie.verified', keyIndex: 1 },
            { type: 'load.failed' },
            { type: 'data.written' },
            { type: 'session.recookied' },
            end({ changed: true }),
          ],
          input,
        ),
        ['discarded', out('none', 'none')],
      );
    });
    it('reports a failed write without failing the request with onRedisError continue', () => {
      const input = { ...DEFAULTS, continueOnRedisError: true };
      assert.deepEqual(story([...loaded(), end({ changed: true }), answer('failed')], input), [
        'failed',
        out('patch', 'none', 'storeFailed', 0),
      ]);
    });
    it('starts fresh on an undecodable payload with deserializedFailsNew', () => {
      const input = { ...DEFAULTS, deserializedFailsNew: true };
      assert.deepEqual(
        story([{ type: 'cookie.verified', keyIndex: 0 }, { type: 'load.undecodable' }, end({ hasData: false })], input),
        ['untouched', out('none', 'clear')],
      );
    });
  });
});
