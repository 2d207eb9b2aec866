/**
 * The key rings an application may make itself, for the key-ring tests with and without Redis
 * (test/unit/keygrip.test.ts, test/keygrip-redis.test.ts).
 */
import Keygrip from 'keygrip';
import { KEYS } from './app.js';

export const [NEWEST, OLDER] = KEYS as [string, string];

/** The same signature with its last character changed, staying in its alphabet (hex stays hex). */
export function tampered(signature: string): string {
  const last = signature.at(-1) as string;
  return signature.slice(0, -1) + (last === 'a' ? 'b' : 'a');
}

/** Each ring an application may make, with the length of the signatures it makes. */
export const USER_RINGS: Array<{ name: string; make: (keys: string[]) => Keygrip; length: number }> = [
  { name: "new Keygrip(keys, 'sha256')", make: (keys) => new Keygrip(keys, 'sha256'), length: 43 },
  { name: "new Keygrip(keys, 'sha512', 'hex')", make: (keys) => new Keygrip(keys, 'sha512', 'hex'), length: 128 },
  { name: "new Keygrip(keys, 'sha384', 'hex')", make: (keys) => new Keygrip(keys, 'sha384', 'hex'), length: 96 },
];
