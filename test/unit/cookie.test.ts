/**
 * The cookie codec on fixed vectors, and the key ring made from a list of secrets against keygrip.
 * No Redis: what a bad cookie does over HTTP is in test/cookie-redis.test.ts.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import Keygrip from 'keygrip';
import {
  CookieCodec,
  CUSTOM_ID_PATTERN,
  DEFAULT_ID_PATTERN,
  KeygripKeyRing,
  defaultGenId,
  toKeyRing,
} from '../../src/cookie.js';
import { KEYS } from '../helpers/app.js';

const ID = 'A'.repeat(43);
const codec = new CookieCodec('session', toKeyRing(KEYS, 'keys'), DEFAULT_ID_PATTERN);

describe('KeygripKeyRing (the ring made from a list of secrets)', () => {
  const secret = fc.oneof(
    fc.string({ minLength: 1, maxLength: 40 }),
    fc.uint8Array({ minLength: 1, maxLength: 40 }).map((b) => Buffer.from(b)),
  );
  const base64url = fc.string({
    unit: fc.constantFrom(...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'.split('')),
    minLength: 26,
    maxLength: 28,
  });

  it('signs exactly as keygrip does and finds the same key index, for any keys and data', () => {
    fc.assert(
      fc.property(
        fc.array(secret, { minLength: 1, maxLength: 4 }),
        fc.string({ maxLength: 120 }),
        fc.nat(3),
        (keys, data, k) => {
          const ours = new KeygripKeyRing(keys);
          const theirs = new Keygrip(keys as string[]);
          assert.equal(ours.sign(data), theirs.sign(data));
          const signer = keys[k % keys.length] as string;
          const signature = new Keygrip([signer]).sign(data);
          assert.equal(ours.index(data, signature), theirs.index(data, signature));
        },
      ),
      { numRuns: 2000 },
    );
  });

  it('rejects what keygrip rejects: any other text, of any length, canonical or not', () => {
    fc.assert(
      fc.property(
        fc.array(secret, { minLength: 1, maxLength: 3 }),
        fc.string({ maxLength: 60 }),
        fc.oneof(base64url, fc.string({ maxLength: 40 })),
        (keys, data, digest) => {
          assert.equal(new KeygripKeyRing(keys).index(data, digest), new Keygrip(keys as string[]).index(data, digest));
        },
      ),
      { numRuns: 2000 },
    );
  });

  it('refuses a signature whose last character carries stray bits (it decodes like the real one)', () => {
    const ring = new KeygripKeyRing(KEYS);
    const real = ring.sign('session=x');
    const last = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const twin = real.slice(0, -1) + last[last.indexOf(real.at(-1) as string) ^ 1];
    assert.deepEqual(Buffer.from(twin, 'base64url'), Buffer.from(real, 'base64url'));
    assert.equal(ring.index('session=x', real), 0);
    assert.equal(ring.index('session=x', twin), -1);
  });
});

describe('CookieCodec', () => {
  it('signs `name=id` with the newest key (fixed vector)', () => {
    assert.equal(codec.encode(ID), `${ID}.nw-yc4QcPKQn13LyKlgBFLgTOpg`);
  });

  it('verifies a cookie signed with the newest key as key 0', () => {
    assert.deepEqual(codec.decode(`${ID}.nw-yc4QcPKQn13LyKlgBFLgTOpg`), { kind: 'valid', id: ID, keyIndex: 0 });
  });

  it('verifies a cookie signed with an older key, reporting its index', () => {
    assert.deepEqual(codec.decode(`${ID}.FZmeMKA2mt4ugo45TO3_NvM2XPk`), { kind: 'valid', id: ID, keyIndex: 1 });
  });

  it('accepts a Keygrip instance as the ring, with the same vectors', () => {
    const withKeygrip = new CookieCodec('session', new Keygrip(KEYS), DEFAULT_ID_PATTERN);
    assert.equal(withKeygrip.encode(ID), codec.encode(ID));
    assert.deepEqual(withKeygrip.decode(`${ID}.FZmeMKA2mt4ugo45TO3_NvM2XPk`), { kind: 'valid', id: ID, keyIndex: 1 });
  });

  it('binds the signature to the cookie name', () => {
    const other = new CookieCodec('other', toKeyRing(KEYS, 'keys'), DEFAULT_ID_PATTERN);
    assert.deepEqual(other.decode(`${ID}.nw-yc4QcPKQn13LyKlgBFLgTOpg`), { kind: 'invalid', reason: 'signature' });
  });

  const bad: Array<[string, string, 'format' | 'signature']> = [
    ['no dot', ID, 'format'],
    ['an empty id', '.nw-yc4QcPKQn13LyKlgBFLgTOpg', 'format'],
    ['an empty signature', `${ID}.`, 'format'],
    ['an id one character short', `${ID.slice(1)}.nw-yc4QcPKQn13LyKlgBFLgTOpg`, 'format'],
    ['an id of a wrong alphabet', `${'+'.repeat(43)}.nw-yc4QcPKQn13LyKlgBFLgTOpg`, 'format'],
    ['a signature of a wrong alphabet', `${ID}.nw-yc4QcPKQn13LyKl/BFLgTOpg`, 'format'],
    ['a truncated signature', `${ID}.nw-yc4QcPKQn13LyKlgBFLgTO`, 'signature'],
    ['a changed signature', `${ID}.nw-yc4QcPKQn13LyKlgBFLgTOpH`, 'signature'],
    ['a signature for another id', `${'B'.repeat(43)}.nw-yc4QcPKQn13LyKlgBFLgTOpg`, 'signature'],
    ['an 8 KiB value', 'x'.repeat(8192), 'format'],
    ['non-ASCII', `${'é'.repeat(43)}.nw-yc4QcPKQn13LyKlgBFLgTOpg`, 'format'],
  ];
  for (const [what, value, reason] of bad) {
    it(`rejects ${what} (${reason})`, () => {
      assert.deepEqual(codec.decode(value), { kind: 'invalid', reason });
    });
  }

  it('reads no cookie and an empty cookie as missing', () => {
    assert.deepEqual(codec.decode(undefined), { kind: 'missing' });
    assert.deepEqual(codec.decode(''), { kind: 'missing' });
  });

  it('makes 256-bit base64url ids', () => {
    const ids = new Set(Array.from({ length: 1000 }, defaultGenId));
    assert.equal(ids.size, 1000);
    for (const id of ids) assert.match(id, DEFAULT_ID_PATTERN);
    assert.equal(Buffer.from(defaultGenId(), 'base64url').length, 32);
  });

  it('accepts custom ids of cookie-safe characters without a dot', () => {
    assert.match('user-42_x:y', CUSTOM_ID_PATTERN);
    for (const bad of ['a.b', 'a b', 'a;b', 'a,b', 'a"b', 'a\\b', '', 'x'.repeat(201)])
      assert.doesNotMatch(bad, CUSTOM_ID_PATTERN);
  });
});
