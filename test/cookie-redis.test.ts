/**
 * What a bad cookie does over HTTP: a fresh session, not one Redis command, never an error (the codec
 * itself is tested without Redis in test/unit/cookie.test.ts).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import Keygrip from 'keygrip';
import { defaultGenId } from '../src/cookie.js';
import { KEYS, expectCookieCleared, expectNoCookie, makeApp } from './helpers/app.js';
import { signedCookie, useRedis } from './helpers/fixture.js';

describe('bad cookies over HTTP', () => {
  const f = useRedis();
  const cases: Array<[string, string, boolean]> = [
    ['an empty value', 'session=', false],
    ['garbage', 'session=%00%ff<script>', true],
    ['a wrong signature', `${signedCookie().slice(0, -4)}AAAA`, true],
    ['a signature by an unknown key', signedCookie(defaultGenId(), ['someone-else']), true],
    ['an 8 KiB value', `session=${'a'.repeat(8192)}`, true],
    ['non-ASCII (latin-1) bytes', `session=${'\xe9'.repeat(43)}.abc`, true],
    ['an id of a wrong length', `session=abc.${new Keygrip(KEYS).sign('session=abc')}`, true],
  ];
  for (const [what, cookie, cleared] of cases) {
    it(`${what}: a fresh session, no Redis command, no error`, async () => {
      const app = makeApp(3, { redis: f.server.url }, (ctx) =>
        JSON.stringify({ isNew: ctx.session.isNew, keys: Object.keys(ctx.session) }),
      );
      await app.ready();
      const { res, wire } = await f.monitor.request(() => app.get('/', cookie));
      await app.close();
      assert.equal(res.status, 200);
      assert.deepEqual(JSON.parse(res.text), { isNew: true, keys: [] });
      assert.deepEqual(wire, []);
      if (cleared) expectCookieCleared(res);
      else expectNoCookie(res);
    });
  }

  it('with a duplicated cookie name, the first one counts', async () => {
    const app = makeApp(3, { redis: f.server.url }, (ctx) => {
      if (ctx.path === '/seed') ctx.session.user = 'ada';
      return String(ctx.session.user);
    });
    const seed = await app.get('/seed');
    const good = String((seed.headers['set-cookie'] as unknown as string[])[0]).split(';')[0] as string;
    assert.equal((await app.get('/', `${good}; session=garbage`)).text, 'ada');
    assert.equal((await app.get('/', `session=garbage; ${good}`)).text, 'undefined');
    await app.close();
  });
});
