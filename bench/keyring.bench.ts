/**
 * What verifying a session cookie's signature costs, side by side in one run: the HMAC ring this
 * package used before its ring was built on keygrip (copied here as the baseline), the keygrip-built
 * ring (src/cookie.ts) for the newest and an older key, a user's `new Keygrip(keys, 'sha256')`
 * through the wrapper `toKeyRing` puts around it, and keygrip's own `verify()`. Rounds alternate
 * the cases; each ratio is the median of the ratios measured within a round (bench/README.md, "The key ring").
 *   npm run bench:keyring            (ROUNDS=n to change the 15 rounds)
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import Keygrip from 'keygrip';
import { defaultGenId, toKeyRing, type KeyRing } from '../src/cookie.js';
import { numberOption } from './options.js';

/** The baseline: the ring src/cookie.ts had before (one HMAC per key, `timingSafeEqual` on bytes). */
class HmacKeyRing implements KeyRing {
  static readonly SIGNATURE_LENGTH = 27;
  readonly #keys: ReadonlyArray<string | Buffer>;

  constructor(keys: ReadonlyArray<string | Buffer>) {
    this.#keys = [...keys];
  }

  sign(data: string): string {
    return createHmac('sha1', this.#keys[0] as string | Buffer)
      .update(data)
      .digest('base64url');
  }

  index(data: string, digest: string): number {
    if (digest.length !== HmacKeyRing.SIGNATURE_LENGTH) return -1;
    const given = Buffer.from(digest, 'base64url');
    if (given.length !== 20 || given.toString('base64url') !== digest) return -1;
    for (let i = 0; i < this.#keys.length; i++) {
      if (
        timingSafeEqual(
          createHmac('sha1', this.#keys[i] as string | Buffer)
            .update(data)
            .digest(),
          given,
        )
      )
        return i;
    }
    return -1;
  }
}

const KEYS = ['bench-newest-secret', 'bench-older-secret'];
const IDS = Array.from({ length: 256 }, () => `session=${defaultGenId()}`);
const signed = (ring: KeyRing) => IDS.map((data) => ({ data, digest: ring.sign(data) }));

const newest = signed(new Keygrip(KEYS.slice(0, 1)));
const older = signed(new Keygrip(KEYS.slice(1)));
const user = new Keygrip(KEYS, 'sha256');
const userNewest = signed(new Keygrip(KEYS.slice(0, 1), 'sha256'));
const userOlder = signed(new Keygrip(KEYS.slice(1), 'sha256'));

interface Case {
  readonly name: string;
  readonly ring: { index(data: string, digest: string): number } | Keygrip;
  readonly cookies: ReadonlyArray<{ data: string; digest: string }>;
  readonly expect: number;
  readonly verify?: boolean;
  /** The old ring's case for the same key, for the like-for-like ratio. */
  readonly baseline: number;
}

const CASES: Case[] = [
  { name: 'old HmacKeyRing, newest key', ring: new HmacKeyRing(KEYS), cookies: newest, expect: 0, baseline: 0 },
  { name: 'old HmacKeyRing, older key', ring: new HmacKeyRing(KEYS), cookies: older, expect: 1, baseline: 1 },
  { name: 'keygrip ring, newest key', ring: toKeyRing(KEYS, 'bench'), cookies: newest, expect: 0, baseline: 0 },
  { name: 'keygrip ring, older key', ring: toKeyRing(KEYS, 'bench'), cookies: older, expect: 1, baseline: 1 },
  {
    name: 'user Keygrip sha256 (wrapped), newest',
    ring: toKeyRing(user, 'bench'),
    cookies: userNewest,
    expect: 0,
    baseline: 0,
  },
  {
    name: 'user Keygrip sha256 (wrapped), older',
    ring: toKeyRing(user, 'bench'),
    cookies: userOlder,
    expect: 1,
    baseline: 1,
  },
  {
    name: 'raw keygrip verify(), newest key',
    ring: new Keygrip(KEYS),
    cookies: newest,
    expect: 0,
    verify: true,
    baseline: 0,
  },
  {
    name: 'raw keygrip verify(), older key',
    ring: new Keygrip(KEYS),
    cookies: older,
    expect: 1,
    verify: true,
    baseline: 1,
  },
];

let sink = 0;

/** Nanoseconds per verify over `iterations` cookies (cycling through the signed ids). */
function nsPerVerify(c: Case, iterations: number): number {
  const { ring, cookies } = c;
  const n = cookies.length;
  const start = process.hrtime.bigint();
  if (c.verify) {
    const k = ring as Keygrip;
    for (let i = 0; i < iterations; i++) {
      const { data, digest } = cookies[i % n] as { data: string; digest: string };
      sink += k.verify(data, digest) ? 1 : 0;
    }
  } else {
    for (let i = 0; i < iterations; i++) {
      const { data, digest } = cookies[i % n] as { data: string; digest: string };
      sink += ring.index(data, digest);
    }
  }
  return Number(process.hrtime.bigint() - start) / iterations;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] as number;
}

// Every case must verify what it is given before it is timed.
for (const c of CASES) {
  for (const { data, digest } of c.cookies) {
    const got = c.verify ? ((c.ring as Keygrip).verify(data, digest) ? c.expect : -1) : c.ring.index(data, digest);
    if (got !== c.expect) throw new Error(`${c.name}: index ${got}, expected ${c.expect}`);
  }
}

const rounds = numberOption('ROUNDS', process.env.ROUNDS, 15);
const iterations = Number(process.env.ITERATIONS ?? 20_000);
for (const c of CASES) nsPerVerify(c, iterations); // warm-up
const times = CASES.map(() => [] as number[]);
const ratios = CASES.map(() => [] as number[]);
const sameKey = CASES.map(() => [] as number[]);
for (let r = 0; r < rounds; r++) {
  const round = CASES.map((c) => nsPerVerify(c, iterations));
  round.forEach((ns, i) => {
    times[i]?.push(ns);
    ratios[i]?.push(ns / (round[0] as number));
    sameKey[i]?.push(ns / (round[(CASES[i] as Case).baseline] as number));
  });
}
if (sink === Number.MIN_SAFE_INTEGER) console.log(sink);

const pad = (s: string, n: number) => s.padEnd(n);
console.log(
  `signature verify per cookie (median of ${rounds} rounds × ${iterations}, node ${process.version}, ${KEYS.length} keys)\n`,
);
console.log(`${pad('ring', 40)}${pad('µs / verify', 14)}${pad('× old ring, newest key', 25)}× old ring, same key`);
CASES.forEach((c, i) => {
  const cells = [(median(times[i] as number[]) / 1000).toFixed(2), median(ratios[i] as number[]).toFixed(2)];
  console.log(
    `${pad(c.name, 40)}${pad(cells[0] as string, 14)}${pad(cells[1] as string, 25)}${median(sameKey[i] as number[]).toFixed(2)}`,
  );
});
