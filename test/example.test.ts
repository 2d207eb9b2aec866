/**
 * The examples start with one command and do what they say: in process against a private Redis,
 * and as `npm start` does it (a dead REDIS_URL starts a private redis-server; none on PATH prints
 * how to install one). examples/login.ts, what `npm start` runs, is used in a browser in
 * test/login-example.test.ts.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, it, type TestContext } from 'node:test';
import request from 'supertest';
import { createApp } from '../examples/basic.js';
import { freePort } from './helpers/redis-server.js';
import { assertTtl, storedData, useRedis } from './helpers/fixture.js';

const f = useRedis();

/** The process has ended (a zombie left to a non-reaping init counts as ended), within a deadline
 *  read from the clock: a loaded machine may take a while to stop it. */
async function gone(pid: number, timeoutMs = 30_000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      const status = readFileSync(`/proc/${pid}/status`, 'utf8');
      if (/^State:\s+Z/m.test(status)) return true;
    } catch {
      return true;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
}

/** SIGTERM the child and wait for its exit; at once if it has already exited. */
async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await exited;
}

/** Run an example as its npm script does; it is stopped when the test ends, passed or failed. */
function spawnExample(t: TestContext, file: string, env: Record<string, string>) {
  const child = spawn(process.execPath, ['--import', 'tsx', file], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.after(() => stop(child));
  return child;
}

function cookieOf(res: request.Response): string {
  return String((res.headers['set-cookie'] as unknown as string[])[0]).split(';')[0] as string;
}

describe('examples/basic', () => {
  it("counts visits under the example's own key prefix", async (t) => {
    const { app, session } = createApp(f.server.url);
    t.after(() => session.redis.disconnect()); // the example passes its own client: ours to end
    const agent = request(app.callback());
    const first = await agent.get('/');
    assert.equal(first.text, 'Visits: 1');
    const cookie = cookieOf(first);
    assert.equal((await agent.get('/').set('Cookie', cookie)).text, 'Visits: 2');
    assert.equal((await agent.get('/favicon.ico').set('Cookie', cookie)).status, 404);
    const id = cookie.slice(cookie.indexOf('=') + 1, cookie.lastIndexOf('.'));
    // Its own prefix: on a developer's Redis the example's keys never mix with theirs.
    assert.deepEqual(await f.redis.keys('*'), [`example:sess:${id}`]);
    assert.deepEqual(await storedData(f.redis, `example:sess:${id}`), { views: 2 });
    await assertTtl(f.redis, `example:sess:${id}`, 1200);
  });
});

describe('npm start (examples/login.ts)', () => {
  it('npm start with no Redis at REDIS_URL starts a private redis-server, serves, and stops it', async (t) => {
    const dead = await freePort();
    const child = spawnExample(t, 'examples/login.ts', { REDIS_URL: `redis://127.0.0.1:${dead}`, PORT: '0' });
    let out = '';
    const url = await new Promise<string>((resolve, reject) => {
      // As long as startExample allows: tsx compiles the example first, on a loaded machine slowly.
      const timer = setTimeout(() => reject(new Error(`no URL printed: ${out}`)), 60_000);
      child.stdout.on('data', (d) => {
        out += d;
        const m = /example at (http:\/\/\S+)/.exec(out);
        if (m) {
          clearTimeout(timer);
          resolve(m[1] as string);
        }
      });
    });
    const pid = Number(/\(pid (\d+)\)/.exec(out)?.[1]);
    assert.ok(pid > 0, out);
    const res = await fetch(url);
    assert.match(await res.text(), /Not signed in/);
    const form = await fetch(`${url}login`);
    assert.match(await form.text(), /<input type="hidden" name="_csrf" value="[^"]+">/);
    assert.match(form.headers.get('set-cookie') ?? '', /^session=/, 'the session is stored in the private Redis');
    await stop(child);
    assert.ok(await gone(pid), 'the private redis-server is stopped');
  });

  it('npm start with no Redis at all says how to install one', async (t) => {
    const dead = await freePort();
    const child = spawnExample(t, 'examples/login.ts', {
      REDIS_URL: `redis://127.0.0.1:${dead}`,
      PATH: '/nonexistent',
    });
    let err = '';
    child.stderr.on('data', (d) => (err += d));
    const code = await new Promise((r) => child.once('exit', r));
    assert.equal(code, 1);
    assert.match(err, /apt-get install redis-server/);
  });
});

/** Start an example as its npm script does; resolves with the URL it prints. */
async function startExample(
  t: TestContext,
  file: string,
  env: Record<string, string> = {},
): Promise<{ url: string; stop: () => Promise<void> }> {
  const child = spawnExample(t, file, { PORT: '0', ...env });
  let out = '';
  child.stderr.on('data', (d) => (out += d));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${file} printed no URL: ${out}`)), 60_000);
    child.stdout.on('data', (d) => {
      out += d;
      const m = /at (http:\/\/\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1] as string);
      }
    });
    child.once('exit', (code) => reject(new Error(`${file} exited (${code}): ${out}`)));
  });
  return { url, stop: () => stop(child) };
}

const cookieFrom = (res: Response) => (res.headers.get('set-cookie') ?? '').split(';')[0] as string;

describe('examples, each started with its one command', () => {
  it('each npm script runs the example file these tests start', () => {
    const { scripts } = JSON.parse(readFileSync('package.json', 'utf8')) as { scripts: Record<string, string> };
    assert.equal(scripts.start, 'node --import tsx examples/login.ts');
    for (const name of ['basic', 'flash', 'cdn', 'cluster', 'chart']) {
      assert.equal(scripts[`example:${name}`], `node --import tsx examples/${name}.ts`);
    }
  });

  it('basic: npm run example:basic counts visits', async (t) => {
    const ex = await startExample(t, 'examples/basic.ts', { REDIS_URL: f.server.url });
    const first = await fetch(ex.url);
    assert.equal(await first.text(), 'Visits: 1');
    assert.equal(await (await fetch(ex.url, { headers: { cookie: cookieFrom(first) } })).text(), 'Visits: 2');
    await ex.stop();
  });

  it('flash: a message queued by a form post shows once on the next page, escaped', async (t) => {
    const ex = await startExample(t, 'examples/flash.ts', { REDIS_URL: f.server.url });
    const base = ex.url.replace(/\/$/, '');
    const page = await fetch(`${base}/`);
    const cookie = cookieFrom(page);
    const token = /name="_csrf" value="([^"]+)"/.exec(await page.text())?.[1] ?? '';
    const post = (body: Record<string, string>) =>
      fetch(`${base}/save`, {
        method: 'POST',
        redirect: 'manual',
        headers: { cookie },
        body: new URLSearchParams(body),
      });
    assert.equal((await post({ item: 'report' })).status, 403, 'no token, no save');
    const saved = await post({ _csrf: token, item: '<b>report</b>' });
    assert.equal(saved.status, 303);
    assert.match(
      await (await fetch(`${base}/`, { headers: { cookie } })).text(),
      /<p class="flash">Saved &#60;b&#62;report&#60;\/b&#62;\.<\/p>/,
    );
    assert.doesNotMatch(await (await fetch(`${base}/`, { headers: { cookie } })).text(), /Saved/);
    await ex.stop();
  });

  it('cdn: a public, cacheable page never carries a session cookie; the account page does', async (t) => {
    const ex = await startExample(t, 'examples/cdn.ts', { REDIS_URL: f.server.url });
    const base = ex.url.replace(/\/$/, '');
    const before = await f.redis.dbsize();
    const pub = await fetch(`${base}/public/news`);
    assert.equal(pub.headers.get('set-cookie'), null);
    assert.match(pub.headers.get('cache-control') ?? '', /public/);
    assert.equal(await f.redis.dbsize(), before, 'no session created for the public page');
    const account = await fetch(`${base}/account`);
    const cookie = cookieFrom(account);
    assert.match(cookie, /^session=/);
    const pubWithCookie = await fetch(`${base}/public/news`, { headers: { cookie } });
    assert.equal(pubWithCookie.headers.get('set-cookie'), null, 'not even for a visitor who has a session');
    assert.match(await (await fetch(`${base}/account`, { headers: { cookie } })).text(), /visit 2/);
    await ex.stop();
  });

  it('cluster: sessions on a private Redis Cluster', async (t) => {
    const ex = await startExample(t, 'examples/cluster.ts');
    const base = ex.url.replace(/\/$/, '');
    const first = await fetch(`${base}/`);
    assert.match(await first.text(), /^Visits: 1/);
    const cookie = cookieFrom(first);
    assert.match(await (await fetch(`${base}/`, { headers: { cookie } })).text(), /^Visits: 2/);
    await ex.stop();
  });

  it('chart: the live chart page beside the basic app', async (t) => {
    const ex = await startExample(t, 'examples/chart.ts', { REDIS_URL: f.server.url });
    assert.match(ex.url, /\/_session$/);
    const page = await fetch(ex.url);
    assert.match(await page.text(), /<svg/);
    await fetch(ex.url.replace(/_session$/, ''));
    const data = (await (await fetch(`${ex.url}/data`)).json()) as {
      total: number;
      recent: Array<{ path: string; final: string }>;
    };
    assert.equal(data.total, 1);
    assert.deepEqual(
      data.recent.map((r) => [r.path, r.final]),
      [['/', 'persisted']],
    );
    await ex.stop();
  });
});
