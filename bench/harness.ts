/**
 * What `npm run bench` and `npm run bench:profile` share: the servers (each in its own process,
 * from bench/servers/), the scenarios, starting a server against a Redis, and a process's CPU time.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { freePort } from '../test/helpers/redis-server.js';

/** A server of bench/servers/: `cluster` ones run against the private Redis Cluster of
 *  `npm run bench -- --cluster` (REDIS_CLUSTER_NODES), the others against one redis-server. */
export interface ServerSpec {
  key: string;
  file: string;
  name: string;
  env?: Record<string, string>;
  cluster?: boolean;
}

export const SERVERS: readonly ServerSpec[] = [
  { key: 'bare', file: 'bare', name: 'bare Koa' },
  { key: 'floor', file: 'floor', name: 'floor (verify + GETEX + parse)' },
  // The floor again, its commands coalesced into one socket write per event-loop turn as this
  // package does: what our own overhead is against, once the transport is the same.
  { key: 'floor-coalesced', file: 'floor', name: 'floor, writes coalesced', env: { COALESCE: '1' } },
  { key: 'ours', file: 'ours', name: 'koa-session-machine' },
  { key: 'koa-session', file: 'koa-session', name: 'koa-session + koa-redis' },
  { key: 'express-session', file: 'express-session', name: 'express-session + connect-redis' },
];

/** `--cluster`: the floor and this package on one server and on a Cluster, side by side, with and
 *  without ioredis' autopipelining on our client. A Cluster server's ratios are to the Cluster floor. */
export const CLUSTER_SERVERS: readonly ServerSpec[] = [
  { key: 'floor', file: 'floor', name: 'one server: floor' },
  { key: 'floor-coalesced', file: 'floor', name: 'one server: floor, writes coalesced', env: { COALESCE: '1' } },
  { key: 'ours', file: 'ours', name: 'one server: koa-session-machine' },
  {
    key: 'ours-autopipelining',
    file: 'ours',
    name: 'one server: koa-session-machine, enableAutoPipelining',
    env: { AUTOPIPELINING: '1' },
  },
  { key: 'cluster-floor', file: 'floor', name: 'Cluster: floor', cluster: true },
  {
    key: 'cluster-floor-coalesced',
    file: 'floor',
    name: 'Cluster: floor, writes coalesced',
    env: { COALESCE: '1' },
    cluster: true,
  },
  { key: 'cluster-ours', file: 'ours', name: 'Cluster: koa-session-machine', cluster: true },
  {
    key: 'cluster-ours-autopipelining',
    file: 'ours',
    name: 'Cluster: koa-session-machine, enableAutoPipelining',
    env: { AUTOPIPELINING: '1' },
    cluster: true,
  },
];

export const SCENARIOS = [
  { key: 'read', name: 'read-only, with a cookie', path: '/read', cookie: true },
  { key: 'write', name: 'write, with a cookie', path: '/write', cookie: true },
  { key: 'new', name: 'new session (no cookie, ~1 KB written)', path: '/seed', cookie: false },
  { key: 'none', name: 'route that never touches the session, with a cookie', path: '/none', cookie: true },
] as const;

export interface Running {
  key: string;
  name: string;
  url: string;
  cookie: string;
  child: ChildProcess;
}

/** Start a server against a Redis, wait for it, and make the session its cookie scenarios send.
 *  `nodeFlags` go before the script (e.g. --cpu-prof). */
export async function start(
  { key, file, name, env }: ServerSpec,
  redisUrl: string,
  nodeFlags: string[] = [],
): Promise<Running> {
  const port = await freePort();
  const child = spawn(process.execPath, [...nodeFlags, '--import', 'tsx', `bench/servers/${file}.ts`], {
    env: { ...process.env, ...env, PORT: String(port), REDIS_URL: redisUrl, NODE_ENV: 'production' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await new Promise<void>((resolve, reject) => {
    child.stdout?.on('data', (d: Buffer) => String(d).includes('ready') && resolve());
    child.once('exit', (code) => reject(new Error(`${file} exited with ${code}`)));
  });
  const running = { key, name, url: `http://127.0.0.1:${port}`, cookie: '', child };
  await reseed(running);
  return running;
}

/** A fresh session for a server's cookie scenarios (after its Redis was flushed). */
export async function reseed(server: Running): Promise<void> {
  const seed = await fetch(`${server.url}/seed`);
  await seed.arrayBuffer();
  server.cookie = seed.headers
    .getSetCookie()
    .map((c) => c.split(';')[0])
    .join('; ');
}

/** CPU time a process has used so far, in microseconds (Linux /proc; 0 elsewhere). */
export function cpuMicros(pid: number | undefined): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
    return ((Number(fields[11]) + Number(fields[12])) * 1_000_000) / CLOCK_TICKS;
  } catch {
    return 0;
  }
}
const CLOCK_TICKS = 100; // USER_HZ: 100 on every Linux architecture Node supports
