/**
 * The key ring is built on keygrip (src/cookie.ts): its cookies and keygrip's are interchangeable,
 * and a ring the application made itself (`app.keys = new Keygrip(keys, 'sha256')`, or SHA-384/512
 * in hex) signs and verifies cookies, garbage refused before any HMAC. No Redis: the same rings over
 * HTTP (an older key's cookie re-signed with the newest, CSRF tokens, a tampered signature costing
 * no Redis command) are in test/keygrip-redis.test.ts.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import Keygrip from 'keygrip';
import {
  CookieCodec,
  CUSTOM_ID_PATTERN,
  DEFAULT_ID_PATTERN,
  KeygripKeyRing,
  MAX_COOKIE_VALUE,
  WrappedKeyRing,
  defaultGenId,
  toKeyRing,
  type KeyRing,
} from '../../src/cookie.js';
import { KEYS } from '../helpers/app.js';
import { NEWEST, OLDER, USER_RINGS, tampered } from '../helpers/rings.js';

/** A ring that counts what is asked of it. */
function counting(ring: KeyRing): KeyRing & { signs: number; indexes: number } {
  const counted = {
    signs: 0,
    indexes: 0,
    sign: (data: string) => {
      counted.signs++;
      return ring.sign(data);
    },
    index: (data: string, digest: string) => {
      counted.indexes++;
      return ring.index(data, digest);
    },
  };
  return counted;
}

describe('the ring from a list of secrets, against keygrip', () => {
  const ids = Array.from({ length: 200 }, defaultGenId);

  it('verifies what new Keygrip(keys) signs, and keygrip verifies what it signs, key index included', () => {
    const ring = toKeyRing(KEYS, 'keys');
    assert.ok(ring instanceof KeygripKeyRing);
    const theirs = new Keygrip(KEYS);
    for (const id of ids) {
      const data = `session=${id}`;
      assert.equal(ring.sign(data), theirs.sign(data));
      assert.equal(ring.index(data, theirs.sign(data)), 0);
      assert.equal(ring.index(data, new Keygrip([OLDER]).sign(data)), 1);
      assert.equal(theirs.index(data, ring.sign(data)), 0);
      assert.equal(theirs.index(data, new KeygripKeyRing([OLDER]).sign(data)), 1);
    }
  });

  it('signs as new Keygrip(keys) for Buffer and non-ASCII secrets too (the ring keeps them as KeyObjects)', () => {
    const secrets: Array<string | Buffer> = ['ünïcödé-sécret', Buffer.from([0, 1, 2, 250, 255]), 'x'.repeat(200)];
    for (const secret of secrets) {
      const ring = new KeygripKeyRing([secret]);
      const theirs = new Keygrip([secret as string]);
      for (const id of ids.slice(0, 20)) assert.equal(ring.sign(`session=${id}`), theirs.sign(`session=${id}`));
    }
  });

  it('verifies a whole cookie made with keygrip, and keygrip one made by the ring', () => {
    const ours = new CookieCodec('session', toKeyRing(KEYS, 'keys'), DEFAULT_ID_PATTERN);
    const theirs = new CookieCodec('session', new Keygrip(KEYS), DEFAULT_ID_PATTERN);
    const older = new CookieCodec('session', new Keygrip([OLDER]), DEFAULT_ID_PATTERN);
    for (const id of ids.slice(0, 20)) {
      assert.equal(ours.encode(id), theirs.encode(id));
      assert.deepEqual(ours.decode(theirs.encode(id)), { kind: 'valid', id, keyIndex: 0 });
      assert.deepEqual(ours.decode(older.encode(id)), { kind: 'valid', id, keyIndex: 1 });
      assert.deepEqual(theirs.decode(ours.encode(id)), { kind: 'valid', id, keyIndex: 0 });
    }
  });

  it('keeps refusing empty rings and empty keys', () => {
    for (const bad of [[], [''], [Buffer.alloc(0)], ['k', ''], ['k', 1], 'k', null, {}]) {
      assert.throws(() => toKeyRing(bad, 'keys'), TypeError);
    }
  });
});

describe('a ring the application made (wrapped: its sign() first, its own index() only for other keys)', () => {
  for (const { name, make, length } of USER_RINGS) {
    it(`${name}: same answers as the ring itself, its index() asked only when the newest key did not sign`, () => {
      const own = counting(make(KEYS));
      const ring = toKeyRing(own, 'keys');
      assert.ok(ring instanceof WrappedKeyRing);
      const data = `session=${defaultGenId()}`;
      const newest = make([NEWEST]).sign(data);
      const older = make([OLDER]).sign(data);
      assert.equal(newest.length, length);
      assert.equal(ring.sign(data), newest);

      own.indexes = 0;
      assert.equal(ring.index(data, newest), 0);
      assert.equal(own.indexes, 0, 'the newest key is checked without keygrip index()');
      assert.equal(ring.index(data, older), 1);
      assert.equal(ring.index(data, tampered(newest)), -1);
      assert.equal(ring.index(data, newest.slice(1)), -1);
      assert.equal(ring.index(data, `${newest}a`), -1);
      assert.equal(ring.index(data, 'é'.repeat(length)), -1, 'same length in characters, not in bytes');
      assert.equal(own.indexes, 5);
    });
  }

  it('keeps the ring as it is when it is already one of ours', () => {
    const ring = toKeyRing(KEYS, 'keys');
    assert.equal(toKeyRing(ring, 'keys'), ring);
    const wrapped = toKeyRing(new Keygrip(KEYS, 'sha256'), 'keys');
    assert.equal(toKeyRing(wrapped, 'keys'), wrapped);
  });
});

describe('the cookie format: whatever the ring signs, garbage refused before any HMAC', () => {
  for (const { name, make, length } of USER_RINGS) {
    it(`${name}: a ${length}-character signature verifies; tampered, it is a bad signature`, () => {
      const codec = new CookieCodec('session', toKeyRing(make(KEYS), 'keys'), DEFAULT_ID_PATTERN);
      const id = defaultGenId();
      const value = codec.encode(id);
      assert.equal(value.length, 43 + 1 + length);
      assert.deepEqual(codec.decode(value), { kind: 'valid', id, keyIndex: 0 });
      assert.deepEqual(codec.decode(tampered(value)), { kind: 'invalid', reason: 'signature' });
    });
  }

  it('a 200-character custom id with a 128-character hex signature fits; one more character does not', () => {
    const codec = new CookieCodec('session', toKeyRing(new Keygrip(KEYS, 'sha512', 'hex'), 'keys'), CUSTOM_ID_PATTERN);
    const id = 'u'.repeat(200);
    const value = codec.encode(id);
    assert.equal(value.length, MAX_COOKIE_VALUE);
    assert.deepEqual(codec.decode(value), { kind: 'valid', id, keyIndex: 0 });
    assert.deepEqual(codec.decode(`u${value}`), { kind: 'invalid', reason: 'format' });
  });

  it('refuses garbage without signing or verifying anything', () => {
    const ring = counting(toKeyRing(new Keygrip(KEYS, 'sha512', 'hex'), 'keys'));
    const codec = new CookieCodec('session', ring, DEFAULT_ID_PATTERN);
    const id = defaultGenId();
    for (const garbage of [
      `${id}.${'a'.repeat(129)}`,
      `${id}.${'a'.repeat(64)}/${'a'.repeat(63)}`,
      `${id}.${'a'.repeat(64)}=`,
      `${id}.${'é'.repeat(20)}`,
      `${id}.`,
      `${id.slice(1)}.${'a'.repeat(128)}`,
      'x'.repeat(MAX_COOKIE_VALUE + 1),
    ]) {
      assert.deepEqual(codec.decode(garbage), { kind: 'invalid', reason: 'format' }, garbage);
    }
    assert.equal(ring.signs + ring.indexes, 0);
  });

  it('the ring from secrets refuses a signature of any other length than SHA-1 base64url before an HMAC', () => {
    const ring = new KeygripKeyRing(KEYS);
    const data = `session=${defaultGenId()}`;
    assert.equal(KeygripKeyRing.SIGNATURE_LENGTH, ring.sign(data).length);
    assert.equal(ring.index(data, new Keygrip(KEYS, 'sha256').sign(data)), -1);
    assert.equal(ring.index(data, new Keygrip(KEYS, 'sha1', 'hex').sign(data)), -1);
  });
});
