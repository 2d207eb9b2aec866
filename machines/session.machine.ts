/**
 * The session machine: the life of one request's session, from the cookie to the one Redis
 * command after `await next()` and what Redis answered to it (docs/design.md, "The machine").
 * This file is the chart only; every guard, context update and output is a named pure function of
 * `src/policy.ts`, which the request-path interpreter (`src/fsm.ts`) runs by the same names.
 *
 * Supported subset (what `src/fsm.ts` compiles): atomic, compound and top-level final states, tags,
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
      { guard: 'nothingToStore', target: '#session.untouched' },
      // Never an orphan: no key is created for a session whose cookie cannot be sent.
      { guard: 'cookieBlocked', target: '#session.rejected', actions: 'noteCookieRefused' },
      { guard: 'insecureCookie', target: '#session.rejected', actions: 'noteInsecureCookie' },
      { guard: 'tooLarge', target: '#session.rejected', actions: 'noteTooLarge' },
      { target: '#session.creating', actions: 'planCreate' },
    ],
  },
} as const;

/** A write that applies this request's changes to the stored session (patch, or move after
 *  `regenerate()`): its script decides against what is stored, and its answer decides the end. */
const applying = {
  on: {
    'write.stored': '#session.persisted',
    'write.ended': '#session.destroyed',
    'write.gone': { target: '#session.gone', actions: 'noteGone' },
    'write.tooLarge': { target: '#session.rejected', actions: 'noteTooLarge' },
    'write.failed': { target: '#session.failed', actions: 'noteStoreFailed' },
  },
} as const;

/** A write that stores a whole session under a fresh id (create, or replace): stored, or failed. */
const storingWhole = {
  on: {
    'write.stored': '#session.persisted',
    'write.failed': { target: '#session.failed', actions: 'noteStoreFailed' },
  },
} as const;

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
    nothingToStore: ({ context, event }) => guards.nothingToStore(context, event),
    cookieBlocked: ({ context, event }) => guards.cookieBlocked(context, event),
    insecureCookie: ({ context, event }) => guards.insecureCookie(context, event),
    resendsInsecureCookie: ({ context, event }) => guards.resendsInsecureCookie(context, event),
    tooLarge: ({ context, event }) => guards.tooLarge(context, event),
    isEmptied: ({ context, event }) => guards.isEmptied(context, event),
    hasChanges: ({ context, event }) => guards.hasChanges(context, event),
    wasRefreshed: ({ context, event }) => guards.wasRefreshed(context, event),
  },
  actions: {
    markStale: assign(({ context, event }) => assigners.markStale(context, event)),
    storeKeyIndex: assign(({ context, event }) => assigners.storeKeyIndex(context, event)),
    storeRefreshed: assign(({ context, event }) => assigners.storeRefreshed(context, event)),
    requestCookie: assign(({ context, event }) => assigners.requestCookie(context, event)),
    planCreate: assign(({ context, event }) => assigners.planCreate(context, event)),
    planPatch: assign(({ context, event }) => assigners.planPatch(context, event)),
    planMove: assign(({ context, event }) => assigners.planMove(context, event)),
    planReplace: assign(({ context, event }) => assigners.planReplace(context, event)),
    planDelete: assign(({ context, event }) => assigners.planDelete(context, event)),
    noteGone: assign(({ context, event }) => assigners.noteGone(context, event)),
    noteTooLarge: assign(({ context, event }) => assigners.noteTooLarge(context, event)),
    noteCookieRefused: assign(({ context, event }) => assigners.noteCookieRefused(context, event)),
    noteInsecureCookie: assign(({ context, event }) => assigners.noteInsecureCookie(context, event)),
    noteStoreFailed: assign(({ context, event }) => assigners.noteStoreFailed(context, event)),
    noteUndecodable: assign(({ context, event }) => assigners.noteUndecodable(context, event)),
  },
}).createMachine({
  id: 'session',
  description: 'One request: cookie, load, what the handler did, the one command after next() and its answer',
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
      tags: ['sends:load'],
      on: {
        'load.found': { target: 'loaded', actions: 'storeRefreshed' },
        'load.stale': { target: 'invalid', actions: 'markStale' },
        'load.undecodable': [
          { guard: 'failsNew', target: 'invalid', actions: 'markStale' },
          { target: 'failed', actions: 'noteUndecodable' },
        ],
        'load.failed': [
          { guard: 'continuesOffline', target: 'offline' },
          { target: 'failed', actions: 'noteStoreFailed' },
        ],
      },
    },
    offline: {
      description:
        "Redis failed the load (onRedisError: 'continue'): a session in memory, never written; the cookie is kept for when Redis is back",
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
          description:
            'invalidate(): data dropped; the stored session ends (with every id it was moved to) unless new data arrives',
          on: {
            'data.written': 'replaced',
            'session.regenerated': 'invalidated',
            'request.ended': { target: '#session.deleting', actions: 'planDelete' },
          },
        },
        replaced: {
          description:
            'New data after invalidate(): one command ends the old session and stores the new one under a new id',
          on: {
            'session.invalidated': 'invalidated',
            'session.regenerated': 'replaced',
            'request.ended': [
              { guard: 'nothingToStore', target: '#session.deleting', actions: 'planDelete' },
              // The logout still happens; the new data, whose cookie cannot be sent, is not stored.
              { guard: 'cookieBlocked', target: '#session.deleting', actions: ['planDelete', 'noteCookieRefused'] },
              { guard: 'insecureCookie', target: '#session.rejected', actions: 'noteInsecureCookie' },
              { guard: 'tooLarge', target: '#session.rejected', actions: 'noteTooLarge' },
              { target: '#session.replacing', actions: 'planReplace' },
            ],
          },
        },
        regenerated: {
          description:
            "regenerate(): the stored session moves to a new id, this request's changes applied there; never written under the old id",
          on: {
            'request.ended': [
              { guard: 'cookieBlocked', target: '#session.rejected', actions: 'noteCookieRefused' },
              { guard: 'insecureCookie', target: '#session.rejected', actions: 'noteInsecureCookie' },
              { target: '#session.moving', actions: 'planMove' },
            ],
          },
        },
      },
      on: {
        'session.invalidated': '.invalidated',
        'session.regenerated': '.regenerated',
        'session.recookied': { actions: 'requestCookie' },
        'request.ended': [
          { guard: 'resendsInsecureCookie', target: '#session.rejected', actions: 'noteInsecureCookie' },
          // Emptied: the patch deletes the session only if nothing is left once it is applied
          // (another request may have added a key meanwhile).
          { guard: 'isEmptied', target: '#session.patching', actions: 'planPatch' },
          { guard: 'hasChanges', target: '#session.patching', actions: 'planPatch' },
          { guard: 'wasRefreshed', target: '#session.refreshed' },
          { target: '#session.untouched' },
        ],
      },
    },
    creating: {
      description: 'create: a new key under a fresh id, never over an existing one',
      tags: ['sends:create'],
      ...storingWhole,
    },
    patching: {
      description:
        'patch: set and delete these fields; expiry from the stored timeout; size against the stored total; deleted if left empty',
      tags: ['sends:patch'],
      ...applying,
    },
    moving: {
      description:
        'move: the stored session to a new id (a marker at the old id leads a logout to it), then the patch there',
      tags: ['sends:move'],
      ...applying,
    },
    replacing: {
      description: 'replace: end the stored session and every id it moved to, store the new data under a new id',
      tags: ['sends:replace'],
      ...storingWhole,
    },
    deleting: {
      description: 'delete: end the session and every id it was moved to (a logout wins)',
      tags: ['sends:delete'],
      on: {
        'write.ended': '#session.destroyed',
        'write.failed': { target: '#session.failed', actions: 'noteStoreFailed' },
      },
    },
    persisted: {
      type: 'final',
      description:
        'Stored: create, patch, move or replace; a new id gets its cookie, a patched session re-sends a rolling one',
      output: ({ context, event }) => outputs.persisted(context, event),
    },
    refreshed: {
      type: 'final',
      description: 'Unchanged; the load already moved the expiry: nothing more to send, a rolling cookie re-sent',
      output: ({ context, event }) => outputs.refreshed(context, event),
    },
    untouched: {
      type: 'final',
      description: 'Nothing to store and no expiry to move',
      output: ({ context, event }) => outputs.untouched(context, event),
    },
    destroyed: {
      type: 'final',
      description: 'The session ended (logout, or emptied) and its cookie is cleared',
      output: ({ context, event }) => outputs.destroyed(context, event),
    },
    discarded: {
      type: 'final',
      description: 'Redis was away at the load: the in-memory session is thrown away',
      output: ({ context, event }) => outputs.discarded(context, event),
    },
    gone: {
      type: 'final',
      description: 'The session had ended or moved in another request: nothing applied, no cookie',
      output: ({ context, event }) => outputs.gone(context, event),
    },
    rejected: {
      type: 'final',
      description: 'Nothing written: too large, or its cookie cannot reach the browser',
      output: ({ context, event }) => outputs.rejected(context, event),
    },
    failed: {
      type: 'final',
      description: 'Redis failed or timed out, or the payload cannot be decoded',
      output: ({ context, event }) => outputs.failed(context, event),
    },
  },
});

export type SessionMachine = typeof sessionMachine;
