/**
 * What a request changed, as a patch or move sends it (docs/design.md, "Concurrency": a write carries
 * changes, not copies). Pure: the session (src/session.ts) supplies what was loaded and what it holds
 * now, and these decide which fields to set and delete and which flash frames to append and pop.
 */
import { frame } from './payload.js';

/**
 * The fields to set (field, value pairs) and the fields to delete, among `candidates` (the fields
 * the request may have changed). `current(field)` is a field's encoding now, or undefined when the
 * session no longer holds it; `loaded` its text as loaded. A field is set when its encoding differs
 * from what was loaded (or always, when `forced`); deleted when it was loaded and is gone.
 */
export function fieldChanges(
  candidates: Iterable<string>,
  loaded: ReadonlyMap<string, string>,
  forced: boolean,
  current: (field: string) => string | undefined,
): { set: string[]; del: string[] } {
  const set: string[] = [];
  const del: string[] = [];
  for (const field of candidates) {
    const text = current(field);
    if (text !== undefined) {
      if (forced || loaded.get(field) !== text) set.push(field, text);
    } else if (loaded.has(field)) {
      del.push(field);
    }
  }
  return { set, del };
}

/** What a request did to one flash queue: took the messages it loaded, and flashed new ones. */
export interface FlashChange {
  popped: boolean;
  added: unknown[];
}

/** A flash queue as loaded: its frames (what a pop takes), or one legacy frame (the whole encoded
 *  array an older version stored). */
export interface LoadedQueue {
  readonly frames: readonly string[];
  readonly legacy: boolean;
}

/**
 * The flash queue changes as a write sends them: per queue changed, its field, the frames appended,
 * k, and the k loaded frames popped; and how many queues. A queue stored whole by an older version
 * is taken whole and written again as frames (`now(field)` is its messages as the request leaves it).
 * Each appended message is encoded by `encode` and framed with a message id of its own.
 */
export function flashChanges(
  changes: ReadonlyMap<string, FlashChange>,
  loaded: ReadonlyMap<string, LoadedQueue>,
  now: (field: string) => unknown[] | undefined,
  encode: (field: string, message: unknown) => string,
): { ops: string[]; queues: number } {
  const ops: string[] = [];
  let queues = 0;
  for (const [field, change] of changes) {
    const queue = loaded.get(field);
    let popped = change.popped && queue ? queue.frames : [];
    let added = change.added;
    if (queue?.legacy) {
      popped = queue.frames;
      added = now(field) ?? [];
    }
    let appended = '';
    for (const message of added) appended += frame(encode(field, message));
    if (popped.length === 0 && appended === '') continue;
    ops.push(field, appended, String(popped.length));
    for (const f of popped) ops.push(f);
    queues++;
  }
  return { ops, queues };
}
