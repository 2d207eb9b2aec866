/**
 * The examples start with one command and do what they say: in process against a private Redis,
 * and as `npm start` does it (a dead REDIS_URL starts a private redis-server; none on PATH prints
 * how to install one).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import request from 'supertest';
import { createApp } from '../examples/basic.js';
import { freePort } from './helpers/redis-server.js';
import { storedData, useRedis } from './helpers/fixture.js';

const f = useRedis();

/** The process has ended (a zombie left to a non-reaping init counts as ended). */
async function gone(pid: number): Promise<boolean> {
  for (let i = 0; i < 60; i++) {
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

function cookieOf(res: request.Response): string {
  return String((res.headers['set-cookie'] as unknown as string[])[0]).split(';')[0] as string;
}

describe('examples/basic', () => {
  it('counts visits, logs in under a new id and logs out', async () => {
    const { app, session } = createApp(f.server.url);
    const agent = request(app.callback());
    const first = await agent.get('/');
    assert.match(first.text, /Visits: 1/);
    const cookie = cookieOf(first);
    assert.match((await agent.get('/').set('Cookie', cookie)).text, /Visits: 2/);
    const login = await agent.get('/login?user=grace').set('Cookie', cookie);
    assert.equal(login.status, 302);
    const loggedIn = cookieOf(login);
    assert.notEqual(loggedIn, cookie, 'regenerate() gave a new id');
    const id = loggedIn.slice(loggedIn.indexOf('=') + 1, loggedIn.lastIndexOf('.'));
    assert.deepEqual(await storedData(f.redis, `sess:${id}`), { views: 2, user: 'grace' });
    assert.match((await agent.get('/').set('Cookie', loggedIn)).text, /Visits: 3.*grace/);
    const logout = await agent.get('/logout').set('Cookie', loggedIn);
    assert.match(String(logout.headers['set-cookie']), /^session=;/);
    assert.equal(await f.redis.dbsize(), 0);
    session.redis.disconnect();
  });

  it('npm start with no Redis at REDIS_URL starts a private redis-server, serves, and stops it', async () => {
    const dead = await freePort();
    const child = spawn(process.execPath, ['--import', 'tsx', 'examples/basic.ts'], {
      env: { ...process.env, REDIS_URL: `redis://127.0.0.1:${dead}`, PORT: '0' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no URL printed: ${out}`)), 20_000);
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
    assert.match(await res.text(), /Visits: 1/);
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await exited;
    assert.ok(await gone(pid), 'the private redis-server is stopped');
  });

  it('npm start with no Redis at all says how to install one', async () => {
    const dead = await freePort();
    const child = spawn(process.execPath, ['--import', 'tsx', 'examples/basic.ts'], {
      env: { ...process.env, REDIS_URL: `redis://127.0.0.1:${dead}`, PATH: '/nonexistent' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let err = '';
    child.stderr.on('data', (d) => (err += d));
    const code = await new Promise((r) => child.once('exit', r));
    assert.equal(code, 1);
    assert.match(err, /apt-get install redis-server/);
  });
});
