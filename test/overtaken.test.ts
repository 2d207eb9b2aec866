/**
 * A write overtaken by a later write of the same writer. On a Redis Cluster whose slots move, ioredis
 * sends a command redirected by MOVED again after the commands it sent since straight to the slot's
 * new node, so one process's two writes to a session can land in the other order. The operation ids
 * (src/store/lua/include/op.lua) must then tell an overtaken write, which has not run and is applied,
 * from a replay of one that ran, which is not (docs/design.md, "Faults"). The orders are played with
 * the scripts themselves, each command sent when the test says, on one server and on Cluster; and
 * once end to end, through ioredis' own MOVED handling and the middleware, on a slot moved mid-request.
 */
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import fc from 'fast-check';
import { Cluster, type Redis } from 'ioredis';
import { defaultGenId } from '../src/cookie.js';
import { patchLua, rotateLua } from '../src/store/scripts.generated.js';
import { useBackends } from './helpers/backends.js';
import { Gates } from './helpers/gates.js';
import { sessionKey } from './helpers/keys.js';
import { Monitor } from './helpers/monitor.js';
import { moveSlot, nodeName } from './helpers/redis-cluster.js';
import { cookieOf, serveSession } from './helpers/server.js';
import { seed, stored } from './helpers/stored.js';

const { backends, started } = useBackends();
before(() => started);

/** How many operations back a writer's entry remembers (include/op.lua, WINDOW). */
const WINDOW = 52;

const now = () => Math.floor(Date.now() / 1000);

/** A patch's intent (include/apply.lua): set `sets`, append `frame` to the queue `:q`, as `op`. */
function intent(op: string, sets: Record<string, string>, frame = ''): Array<string | number> {
  const pairs = Object.entries(sets).flat();
  const queues = frame === '' ? [] : [':q', frame, 0];
  return [now(), '1', 1e6, '', '0', queues.length / 3, pairs.length / 2, op, -1, '', '', '', '', ...queues, ...pairs];
}

/** An operation id: the writer's 8-character prefix and its counter, in base 36. */
const op = (writer: string, counter: number) => writer + counter.toString(36);

/** Put before a script: its `tonumber(text, base)` reads as on a 32-bit build of Redis, where Lua
 *  5.1 goes through C's strtoul and an unsigned long stops at 2^32 - 1. */
const strtoul32 = `local tonumber = (function(real) return function(text, base)
  local n = real(text, base)
  if base and base ~= 10 and n and n > 4294967295 then return 4294967295 end
  return n
end end)(tonumber)
`;

for (const b of backends) {
  describe(`a write overtaken by a later one of its writer (${b.name})`, () => {
    // One hash tag: a session and the id it moves to share a slot, as a regenerate's do.
    const key = 'sess:{ov}one';
    const moved = 'sess:{ov}two';
    const patch = (id: string, sets: Record<string, string>, frame?: string) =>
      b.client.eval(patchLua, 1, key, ...intent(id, sets, frame));

    it('is applied when it lands, and each of the two answers 1 again when resent', async () => {
      await seed(b.client, key, { ':user': '"ada"' }, 1200);
      assert.equal(await patch(op('WRITERaa', 41), { ':b': '2' }), 1, 'the later write, first');
      assert.equal(await patch(op('WRITERaa', 40), { ':a': '1' }), 1, 'the overtaken one');
      assert.deepEqual(
        { a: (await stored(b.client, key))[':a'], b: (await stored(b.client, key))[':b'] },
        { a: '1', b: '2' },
        'both writes are stored',
      );
      // Another writer changes both keys; a replay of either write must not undo that.
      assert.equal(await patch(op('WRITERbb', 7), { ':a': 'x', ':b': 'y' }), 1);
      assert.equal(await patch(op('WRITERaa', 40), { ':a': '1' }), 1, 'the overtaken one, resent');
      assert.equal(await patch(op('WRITERaa', 41), { ':b': '2' }), 1, 'the later one, resent');
      const after = await stored(b.client, key);
      assert.deepEqual({ a: after[':a'], b: after[':b'] }, { a: 'x', b: 'y' }, 'no replay acted again');
    });

    it('a write overtaken by a regenerate of its writer answers gone, never "stored"', async () => {
      await seed(b.client, key, { ':user': '"ada"' }, 1200);
      const move = await b.client.eval(rotateLua, 2, key, moved, 'move', ...intent(op('WRITERaa', 12), {}));
      assert.equal(move, 1);
      // Loaded before the move, landing after it: in serial order it came after, when the old id no
      // longer named a session (docs/design.md, "Concurrency"); its request is told so.
      assert.equal(await patch(op('WRITERaa', 11), { ':a': '1' }), -1);
      assert.equal((await stored(b.client, moved))[':a'], undefined, 'not carried to the new id');
      // The move resent answers what it did; a write the session had run before the move, resent to
      // the marker, is known there too.
      assert.equal(await b.client.eval(rotateLua, 2, key, moved, 'move', ...intent(op('WRITERaa', 12), {})), 1);
    });

    it('a write the session ran before a move, of its mover or another writer, is known at the marker when resent', async () => {
      await seed(b.client, key, { ':user': '"ada"' }, 1200);
      assert.equal(await patch(op('WRITERaa', 20), { ':a': '1' }), 1);
      assert.equal(await patch(op('WRITERbb', 5), { ':b': '2' }), 1);
      assert.equal(await b.client.eval(rotateLua, 2, key, moved, 'move', ...intent(op('WRITERaa', 21), {})), 1);
      assert.equal(await patch(op('WRITERaa', 20), { ':a': '1' }), 1, "the mover's: its answer, not gone");
      assert.equal(await patch(op('WRITERbb', 5), { ':b': '2' }), 1, "another writer's: its answer, not gone");
      // One that had not run there is gone: it landed after the move.
      assert.equal(await patch(op('WRITERbb', 6), { ':c': '3' }), -1);
      const after = await stored(b.client, moved);
      assert.deepEqual([after[':a'], after[':b'], after[':c']], ['1', '2', undefined]);
    });

    it(`older than the window (${WINDOW} operations of its writer): taken for a replay, as the entry cannot tell`, async () => {
      await seed(b.client, key, { ':user': '"ada"' }, 1200);
      assert.equal(await patch(op('WRITERaa', 100 + WINDOW + 1), { ':b': '2' }), 1);
      assert.equal(await patch(op('WRITERaa', 100), { ':a': '1' }), 1);
      assert.equal((await stored(b.client, key))[':a'], undefined);
      // Just inside it: applied.
      assert.equal(await patch(op('WRITERaa', 101), { ':a': '1' }), 1);
      assert.equal((await stored(b.client, key))[':a'], '1');
    });

    it('at the window edge and with every bit of the mask set, each write acts once', async () => {
      await seed(b.client, key, { ':user': '"ada"' }, 1200);
      const order: string[] = [];
      const land = async (c: number) => {
        assert.equal(await patch(op('WRITERaa', c), {}, `<${c}>`), 1, `sent ${c}`);
        order.push(`<${c}>`);
      };
      const resend = async (from: number, to: number) => {
        for (let c = from; c <= to; c++) assert.equal(await patch(op('WRITERaa', c), {}, `<${c}>`), 1, `resent ${c}`);
        assert.equal((await stored(b.client, key))[':q'], order.join(''), `after resending ${from}-${to}`);
      };
      // The last first, then the WINDOW before it, each overtaken: the mask ends with all 52 bits set.
      await land(200 + WINDOW);
      for (let c = 200 + WINDOW - 1; c >= 200; c--) await land(c);
      assert.match((await stored(b.client, key)).o ?? '', new RegExp(`/${(2 ** WINDOW - 1).toString(36)}$`));
      await resend(150, 200 + WINDOW);
      // One newer: every bit moves up one, the oldest leaves the window (taken for a replay: it ran).
      await land(201 + WINDOW);
      await resend(150, 201 + WINDOW);
      // A shift of exactly the window: only the last before it is left, in the top bit.
      await land(201 + 2 * WINDOW);
      assert.match((await stored(b.client, key)).o ?? '', new RegExp(`/${(2 ** (WINDOW - 1)).toString(36)}$`));
      await resend(150, 201 + WINDOW);
      await land(201 + 2 * WINDOW - 1);
      await resend(201 + 2 * WINDOW - 1, 201 + 2 * WINDOW);
    });

    it('a mask past 2^32 reads whole where Redis is a 32-bit build (strtoul stops at 2^32 - 1)', async () => {
      await seed(b.client, key, { ':user': '"ada"' }, 1200);
      const patch32 = (c: number) =>
        b.client.eval(strtoul32 + patchLua, 1, key, ...intent(op('WRITERaa', c), {}, `<${c}>`));
      assert.equal(await patch32(100), 1);
      // 40 operations later: the mask is 2^39 (100 ran).
      assert.equal(await patch32(140), 1);
      assert.equal(await patch32(139), 1, 'overtaken: applied, not taken for a replay');
      assert.equal(await patch32(100), 1, 'resent: not applied again');
      assert.equal((await stored(b.client, key))[':q'], '<100><140><139>');
    });

    it('any gaps, also past the window, any order, any resends: what the window can tell acts once (property)', async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.array(fc.integer({ min: 1, max: 40 }), { minLength: 1, maxLength: 12 }),
          fc.array(fc.integer({ min: 1, max: 40 }), { minLength: 1, maxLength: 12 }),
          fc.infiniteStream(fc.nat()),
          async (stepsA, stepsB, picks) => {
            await seed(b.client, key, { ':user': '"ada"' }, 1200);
            const ops: Array<[string, number]> = [];
            for (const [writer, steps] of [
              ['WRITERaa', stepsA],
              ['WRITERbb', stepsB],
            ] as const) {
              let counter = 1000;
              for (const step of steps) ops.push([writer, (counter += step)]);
            }
            const pending = [...ops];
            const ran: Array<[string, number]> = [];
            const last = new Map<string, number>();
            const expected: string[] = [];
            const pick = picks[Symbol.iterator]();
            while (pending.length > 0) {
              const n = pick.next().value as number;
              const resend = ran.length > 0 && n % 3 === 0;
              const [writer, counter] = resend
                ? (ran[n % ran.length] as [string, number])
                : (pending.splice(n % pending.length, 1)[0] as [string, number]);
              const id = op(writer, counter);
              assert.equal(await patch(id, {}, `<${id}>`), 1, `${resend ? 'resent' : 'sent'} ${id}`);
              if (resend) continue;
              ran.push([writer, counter]);
              // Applied unless more than the window older than its writer's last (taken for a replay).
              const newest = last.get(writer);
              if (newest === undefined || newest - counter <= WINDOW) expected.push(`<${id}>`);
              if (newest === undefined || counter > newest) last.set(writer, counter);
            }
            assert.equal((await stored(b.client, key))[':q'], expected.join(''));
          },
        ),
        { numRuns: b.cluster ? 40 : 80 },
      );
    });

    it('patches and moves of two writers, any order, any resends: each acts at most once, as answered (property)', async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.array(fc.tuple(fc.integer({ min: 1, max: 3 }), fc.boolean()), { minLength: 1, maxLength: 10 }),
          fc.array(fc.tuple(fc.integer({ min: 1, max: 3 }), fc.boolean()), { minLength: 1, maxLength: 10 }),
          fc.infiniteStream(fc.nat()),
          async (stepsA, stepsB, picks) => {
            await Promise.all(b.masters().map((n) => n.flushall()));
            const keyAt = (n: number) => `sess:{ov}k${n}`;
            await seed(b.client, keyAt(0), { ':user': '"ada"' }, 1200);
            // Each operation goes to the key its writer last moved the session to.
            type Op = { id: string; from: number; to?: number };
            const ops: Op[] = [];
            let keys = 0;
            for (const [writer, steps] of [
              ['WRITERaa', stepsA],
              ['WRITERbb', stepsB],
            ] as const) {
              let counter = 1000;
              let at = 0;
              for (const [step, move] of steps) {
                const id = op(writer, (counter += step));
                if (!move) ops.push({ id, from: at });
                else {
                  ops.push({ id, from: at, to: ++keys });
                  at = keys;
                }
              }
            }
            const send = (o: Op) =>
              o.to === undefined
                ? b.client.eval(patchLua, 1, keyAt(o.from), ...intent(o.id, {}, `<${o.id}>`))
                : b.client.eval(rotateLua, 2, keyAt(o.from), keyAt(o.to), 'move', ...intent(o.id, {}, `<${o.id}>`));
            const pending = [...ops];
            const ran: Op[] = [];
            const stored1 = new Set<string>();
            const pick = picks[Symbol.iterator]();
            while (pending.length > 0) {
              const n = pick.next().value as number;
              const resend = ran.length > 0 && n % 3 === 0;
              const o = resend ? (ran[n % ran.length] as Op) : (pending.splice(n % pending.length, 1)[0] as Op);
              const got = await send(o);
              assert.ok(got === 1 || got === -1, `${o.id} answered ${String(got)}`);
              // A marker keeps the session's `o`: a write that ran, resent to a key the session has
              // since left, still answers what it did.
              if (stored1.has(o.id)) assert.equal(got, 1, `${o.id} ran, then answered ${String(got)}`);
              if (got === 1) stored1.add(o.id);
              if (!resend) ran.push(o);
            }
            let k = keyAt(0);
            for (let hops = 0; hops <= keys; hops++) {
              const m = (await stored(b.client, k)).m;
              if (m === undefined) break;
              k = m;
            }
            const q = (await stored(b.client, k))[':q'] ?? '';
            for (const o of ops) {
              const count = q.split(`<${o.id}>`).length - 1;
              assert.equal(count, stored1.has(o.id) ? 1 : 0, `${o.id} queued ${count} times`);
            }
          },
        ),
        { numRuns: b.cluster ? 30 : 60 },
      );
    });
  });
}

describe('through ioredis: a write redirected by MOVED lands after a later write of the same process', () => {
  const cluster = backends[1];
  it('both writes are kept, and the overtaken one is not reported as lost', { timeout: 120_000 }, async () => {
    // ioredis holds a command answered MOVED for `retryDelayOnMoved` before sending it again; a slot
    // table refreshed meanwhile sends the process's next write straight to the new owner, first.
    const DELAY = 5000;
    const client = new Cluster(
      cluster.masters().map((n) => ({ host: String(n.options.host), port: Number(n.options.port) })),
      { retryDelayOnMoved: DELAY, slotsRefreshInterval: 3_600_000, redisOptions: { maxRetriesPerRequest: 1 } },
    );
    client.on('error', () => undefined);
    const gates = new Gates();
    const ids = [`Overtake${defaultGenId().slice(8)}`];
    const app = await serveSession(
      { redis: client, commandTimeout: 60_000, genId: () => ids.shift() ?? defaultGenId() },
      async (ctx) => {
        if (ctx.path === '/login') ctx.session.user = 'ada';
        else if (ctx.path === '/a') {
          void ctx.session.user; // loaded before the slot moves
          await gates.arrive('a');
          ctx.session.a = 1;
        } else ctx.session.b = 2;
        ctx.body = 'ok';
      },
    );
    const monitors: Monitor[] = [];
    try {
      await client.ping();
      const login = await app.get('/login');
      const cookie = cookieOf(login);
      const key = sessionKey(cookie.slice(cookie.indexOf('=') + 1, cookie.lastIndexOf('.')), true);
      const slot = Number(await client.call('CLUSTER', 'KEYSLOT', key));
      const move = await moveSlot(client, slot);
      const { source, target } = move;
      monitors.push(await Monitor.start(`redis://127.0.0.1:${String(target.options.port)}`));
      const monitor = monitors[0] as Monitor;

      // The first request holds the session it loaded while the slot moves to another node.
      const first = app.get('/a', cookie);
      await gates.reached('a');
      await move.begin();
      await move.migrate([key]);
      await move.finish();
      assert.equal(client.slots[slot]?.[0], nodeName(source), "the client's table still names the old owner");

      await monitor.begin();
      // Its write goes to the old owner, is answered MOVED, and waits there.
      const sent = new Promise<void>((resolve) => {
        const send = source.sendCommand.bind(source);
        source.sendCommand = ((command: { args: unknown[] }, stream?: unknown) => {
          if (command.args.some((a) => String(a) === key)) resolve();
          return send(command as never, stream as never);
        }) as Redis['sendCommand'];
      });
      gates.release('a');
      await sent;
      (client as unknown as { refreshSlotsCache(): void }).refreshSlotsCache();
      const deadline = performance.now() + 30_000;
      while (client.slots[slot]?.[0] !== nodeName(target)) {
        assert.ok(performance.now() < deadline, 'the slot table was refreshed');
        await new Promise((r) => setTimeout(r, 20));
      }
      // The second request of the same process loads and writes on the new owner meanwhile.
      let firstDone = false;
      void first.then(() => (firstDone = true));
      const second = await app.get('/b', cookie);
      assert.equal(second.status, 200);
      assert.equal(firstDone, false, 'the first write still waits for its redirect');
      const res = await first;
      assert.equal(res.status, 200);
      const patches = (await monitor.end()).filter((c) => c.op === 'patch').map((c) => c.args.at(-1));
      assert.deepEqual(patches, ['2', '1'], 'the later write landed first');
      const data = await stored(client, key);
      assert.deepEqual([data[':a'], data[':b'], data[':user']], ['1', '2', '"ada"'], 'both writes are stored');
    } finally {
      gates.close();
      for (const m of monitors) await m.stop();
      await app.close();
      client.disconnect();
    }
  });
});
