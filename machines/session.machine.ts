/**
 * The session machine: the life of one request's session, from the cookie to the one Redis
 * command after `await next()` (SPEC §4). This file is the chart only; every guard, context
 * update and output is a named pure function of `src/policy.ts`, which the request-path
 * interpreter (`src/fsm.ts`) runs by the same names.
 *
 * Supported subset (what `src/fsm.ts` compiles): atomic, compound and top-level final states,
 * named guards, named assign actions, final-state outputs. No entry/exit, always, after, invoke,
 * parallel or history states: the compiler rejects them.
 */
import { assign, setup } from 'xstate';
import {
  assigners,
  guards,
  initialContext,
  outputs,
  type SessionContext,
  type SessionEvent,
  type SessionInput,
  type SessionOutput,
} from '../src/policy.js';

/** A session with no stored counterpart: `new` (no cookie) and `invalid` (a cookie to clear)
 *  end the same way; the context's `staleCookie` tells them apart. */
const unstored = {
  initial: 'clean',
  states: {
    clean: { on: { 'data.written': 'dirty' } },
    dirty: {},
  },
  on: {
    'session.invalidated': '.clean',
    'request.ended': [
      { guard: 'canCreate', target: '#session.persisted', actions: 'planCreate' },
      { guard: 'hasData', target: '#session.discarded' },
      { target: '#session.untouched' },
    ],
  },
} as const;

/** A loaded session left empty is deleted, whatever else the request did. */
const emptied = { guard: 'isEmptied', target: '#session.destroyed' } as const;

/** How a loaded session that keeps its id ends, once it is not empty. */
const keepId = [
  { guard: 'hasChanges', target: '#session.persisted', actions: 'planPatch' },
  { guard: 'wasRefreshed', target: '#session.refreshed' },
  { target: '#session.untouched' },
] as const;

export const sessionMachine = setup({
  types: {
    context: {} as SessionContext,
    events: {} as SessionEvent,
    input: {} as SessionInput,
    output: {} as SessionOutput,
  },
  guards: {
    failsNew: ({ context, event }) => guards.failsNew(context, event),
    continuesOffline: ({ context, event }) => guards.continuesOffline(context, event),
    canCreate: ({ context, event }) => guards.canCreate(context, event),
    hasData: ({ context, event }) => guards.hasData(context, event),
    isEmptied: ({ context, event }) => guards.isEmptied(context, event),
    hasChanges: ({ context, event }) => guards.hasChanges(context, event),
    wasRefreshed: ({ context, event }) => guards.wasRefreshed(context, event),
    canRotate: ({ context, event }) => guards.canRotate(context, event),
    canReplace: ({ context, event }) => guards.canReplace(context, event),
  },
  actions: {
    markStale: assign(({ context, event }) => assigners.markStale(context, event)),
    storeKeyIndex: assign(({ context, event }) => assigners.storeKeyIndex(context, event)),
    storeRefreshed: assign(({ context, event }) => assigners.storeRefreshed(context, event)),
    requestCookie: assign(({ context, event }) => assigners.requestCookie(context, event)),
    planCreate: assign(({ context, event }) => assigners.planCreate(context, event)),
    planPatch: assign(({ context, event }) => assigners.planPatch(context, event)),
    planRotate: assign(({ context, event }) => assigners.planRotate(context, event)),
  },
}).createMachine({
  id: 'session',
  description: 'One request: cookie, load, what the handler did, and the one command after next()',
  initial: 'unloaded',
  context: ({ input }) => initialContext(input),
  output: ({ event }) => (event as unknown as { output: SessionOutput }).output,
  states: {
    unloaded: {
      description: 'The cookie has not been read yet',
      on: {
        'cookie.missing': 'new',
        'cookie.invalid': { target: 'invalid', actions: 'markStale' },
        'cookie.verified': { target: 'loading', actions: 'storeKeyIndex' },
      },
    },
    loading: {
      description: 'A signed id: the one load command, with the due expiry refresh folded in',
      on: {
        'load.found': { target: 'loaded', actions: 'storeRefreshed' },
        'load.stale': { target: 'invalid', actions: 'markStale' },
        'load.undecodable': [
          { guard: 'failsNew', target: 'invalid', actions: 'markStale' },
          { target: 'discarded' },
        ],
        'load.failed': [{ guard: 'continuesOffline', target: 'offline' }, { target: 'discarded' }],
      },
    },
    offline: {
      description: "Redis failed the load (onRedisError: 'continue'): a session in memory, never written; the cookie is kept for when Redis is back",
      initial: 'clean',
      states: {
        clean: { on: { 'data.written': 'dirty' } },
        dirty: {},
      },
      on: {
        'request.ended': { target: '#session.discarded' },
      },
    },
    new: { description: 'No cookie: a session in memory only, stored once it holds data', ...unstored },
    invalid: {
      description: 'A cookie that leads to no session: a fresh session, and the cookie is cleared unless replaced',
      ...unstored,
    },
    loaded: {
      description: 'The stored session, as the load returned it',
      initial: 'clean',
      states: {
        clean: { on: { 'data.written': 'dirty' } },
        dirty: {},
        invalidated: {
          description: 'invalidate(): data dropped; the stored session goes unless new data arrives',
          on: {
            'data.written': 'replaced',
            'session.regenerated': 'invalidated',
            'request.ended': { target: '#session.destroyed' },
          },
        },
        replaced: {
          description: 'New data after invalidate(): one command deletes the old key and creates a new one',
          on: {
            'session.invalidated': 'invalidated',
            'session.regenerated': 'replaced',
            'request.ended': [
              { guard: 'canReplace', target: '#session.persisted', actions: 'planRotate' },
              { target: '#session.destroyed' },
            ],
          },
        },
        regenerated: {
          description: 'regenerate(): same data, new id, the old key deleted in the same command',
          on: {
            'request.ended': [emptied, { guard: 'canRotate', target: '#session.persisted', actions: 'planRotate' }, ...keepId],
          },
        },
      },
      on: {
        'session.invalidated': '.invalidated',
        'session.regenerated': '.regenerated',
        'session.recookied': { actions: 'requestCookie' },
        'request.ended': [emptied, ...keepId],
      },
    },
    persisted: {
      type: 'final',
      description: 'One write: create, patch (only what changed) or rotate',
      output: ({ context, event }) => outputs.persisted(context, event),
    },
    refreshed: {
      type: 'final',
      description: 'Unchanged; the load already moved the expiry: nothing more to send',
      output: ({ context, event }) => outputs.refreshed(context, event),
    },
    untouched: {
      type: 'final',
      description: 'Nothing to store and no expiry to move',
      output: ({ context, event }) => outputs.untouched(context, event),
    },
    destroyed: {
      type: 'final',
      description: 'The stored session is deleted and its cookie cleared',
      output: ({ context, event }) => outputs.destroyed(context, event),
    },
    discarded: {
      type: 'final',
      description: 'The request\'s session is thrown away: nothing stored',
      output: ({ context, event }) => outputs.discarded(context, event),
    },
  },
});

export type SessionMachine = typeof sessionMachine;
