/**
 * What a write sends (src/changes.ts), without Redis: only fields whose encoding changed, deletions
 * of loaded fields only, and flash queues as appends and pops of exactly the loaded frames.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { fieldChanges, flashChanges, type FlashChange, type LoadedQueue } from '../../src/changes.js';
import { unframe } from '../../src/payload.js';

describe('fieldChanges', () => {
  const loaded = new Map([
    [':a', '1'],
    [':b', '"x"'],
  ]);

  it('sets a field whose encoding differs, deletes a loaded field that is gone, ignores the rest', () => {
    const now: Record<string, string> = { ':a': '1', ':b': '"y"', ':c': '[]' };
    const { set, del } = fieldChanges([':a', ':b', ':c', ':d'], loaded, false, (f) => now[f]);
    assert.deepEqual(set, [':b', '"y"', ':c', '[]']);
    assert.deepEqual(del, []);
    assert.deepEqual(
      fieldChanges([':a', ':b'], loaded, false, () => undefined),
      { set: [], del: [':a', ':b'] },
    );
  });

  it('forced: every present candidate is set, even unchanged', () => {
    assert.deepEqual(
      fieldChanges([':a'], loaded, true, () => '1'),
      { set: [':a', '1'], del: [] },
    );
  });

  it('applied to what was loaded, the changes give what the session holds now (property)', () => {
    const text = fc.oneof(fc.constant(undefined), fc.string({ maxLength: 4 }));
    fc.assert(
      fc.property(
        fc.dictionary(fc.string({ maxLength: 3 }), text),
        fc.dictionary(fc.string({ maxLength: 3 }), text),
        (before, after) => {
          const was = new Map(Object.entries(before).filter((e): e is [string, string] => e[1] !== undefined));
          const now = new Map(Object.entries(after).filter((e): e is [string, string] => e[1] !== undefined));
          const { set, del } = fieldChanges(new Set([...was.keys(), ...now.keys()]), was, false, (f) => now.get(f));
          const applied = new Map(was);
          for (let i = 0; i < set.length; i += 2) applied.set(set[i] as string, set[i + 1] as string);
          for (const f of del) applied.delete(f);
          assert.deepEqual([...applied].sort(), [...now].sort());
          for (let i = 0; i < set.length; i += 2)
            assert.notEqual(was.get(set[i] as string), set[i + 1], 'an unchanged field is not sent');
        },
      ),
    );
  });
});

describe('flashChanges', () => {
  const encode = (_field: string, message: unknown) => JSON.stringify(message);
  const queue = (frames: string[], legacy = false): LoadedQueue => ({ frames, legacy });

  it('appends framed messages and pops exactly the loaded frames', () => {
    const changes = new Map<string, FlashChange>([
      ['f:', { popped: true, added: ['new'] }],
      ['f:other', { popped: false, added: [] }],
    ]);
    const { ops, queues } = flashChanges(
      changes,
      new Map([['f:', queue(['id1:3:"a"', 'id2:3:"b"'])]]),
      () => undefined,
      encode,
    );
    assert.equal(queues, 1, 'a queue neither popped nor added to is not sent');
    assert.equal(ops[0], 'f:');
    assert.deepEqual(
      unframe(ops[1] as string)?.map((p) => p.text),
      ['"new"'],
    );
    assert.deepEqual(ops.slice(2), ['2', 'id1:3:"a"', 'id2:3:"b"']);
  });

  it('a pop of a queue that was not loaded pops nothing; each message gets a frame of its own', () => {
    const { ops } = flashChanges(
      new Map([['f:q', { popped: true, added: ['m', 'm'] }]]),
      new Map(),
      () => undefined,
      encode,
    );
    const frames = unframe(ops[1] as string) ?? [];
    assert.deepEqual(
      frames.map((p) => p.text),
      ['"m"', '"m"'],
    );
    assert.notEqual(frames[0]?.frame, frames[1]?.frame, 'equal messages, distinct frames');
    assert.equal(ops[2], '0');
  });

  it('a queue an older version stored whole is taken whole and written again as frames', () => {
    const { ops } = flashChanges(
      new Map([['f:', { popped: false, added: [] }]]),
      new Map([['f:', queue(['["a","b"]'], true)]]),
      () => ['a', 'b', 'c'],
      encode,
    );
    assert.deepEqual(
      unframe(ops[1] as string)?.map((p) => p.text),
      ['"a"', '"b"', '"c"'],
    );
    assert.deepEqual(ops.slice(2), ['1', '["a","b"]']);
  });
});
