/**
 * `npm run bench`: requests per second side by side, in one run, on one machine: bare Koa, the
 * floor (keygrip verify + one GETEX + JSON.parse), the floor with its commands coalesced per
 * event-loop turn as this package does, koa-session-machine, koa-session + koa-redis and
 * express-session + connect-redis. Each server runs in its own process against one private
 * redis-server; rounds alternate the servers so drift hits all of them alike. Prints median req/s,
 * p99 latency, the ratios to the floor and to koa-session, Redis commands per request counted
 * with MONITOR (before the timed rounds: a MONITOR left open taxes Redis and this process for every
 * command, and a script's inner commands most), and the CPU each request cost the server process
 * and redis-server (from /proc, where the time goes when a ratio moves).
 *
 * Each server and scenario is first warmed up for --warmup seconds, untimed: a cold server runs at
 * a fraction of its speed for its first seconds (JIT), which would otherwise land in round 1. This
 * machine's speed also drifts for seconds at a time, so rounds are short and many, and each ratio
 * is the median over rounds of the ratio measured within the round (servers of one scenario run
 * back to back), which cancels drift slower than a round.
 *
 * --connections and --sizes take lists: one set of tables per connection count and session size
 * (bytes of session data, which every server's /seed stores alike), each ratio to the floor of the
 * same count and size, and a summary at the end. The new-session scenario runs at 32 connections
 * and fewer. --cluster runs the floor and this package on one redis-server and on a private
 * 3-master Redis Cluster side by side, with and without ioredis' enableAutoPipelining on our
 * client; a Cluster server's ratios are to the Cluster floor, and "÷ one server" compares them
 * with the same server's ratio on one redis-server.
 *   npm run bench                       # 10 rounds of 1 s per server and scenario, 2 s warm-up
 *   npm run bench -- --rounds 20 --seconds 2 --warmup 3
 *   npm run bench -- --connections 10,32,256 --sizes 100,1000,10000,60000 --servers floor,floor-coalesced,ours
 *   npm run bench -- --cluster
 */
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import { Redis } from 'ioredis';
import { Monitor, MultiMonitor } from '../test/helpers/monitor.js';
import { startCluster, type RedisCluster } from '../test/helpers/redis-cluster.js';
import { startRedis } from '../test/helpers/redis-server.js';
import {
  CLUSTER_SERVERS,
  SCENARIOS,
  SERVERS,
  cpuMicros,
  reseed,
  start,
  type Running,
  type ServerSpec,
} from './harness.js';
import { TIMING_FLAGS, numberList, timing } from './options.js';

const { values } = parseArgs({
  options: {
    ...TIMING_FLAGS,
    connections: { type: 'string' },
    sizes: { type: 'string' },
    cluster: { type: 'boolean' },
    scenarios: { type: 'string' },
    servers: { type: 'string' },
  },
});
const { rounds: ROUNDS, seconds: SECONDS, warmup: WARMUP } = timing(values);
const CLUSTER = values.cluster === true;

const CONNECTION_COUNTS = numberList('--connections', values.connections, '10');
/** Bytes of session data each server's /seed stores (bench/servers/common.ts, SESSION_BYTES). */
const SIZES = numberList('--sizes', values.sizes, '1000');
/** The new-session scenario runs at this many connections at most. */
const NEW_SESSION_MAX_CONNECTIONS = 32;

function pick<T extends { key: string }>(option: string, all: readonly T[], wanted: string | undefined): T[] {
  if (wanted === undefined) return [...all];
  const keys = wanted.split(',');
  const unknown = keys.filter((k) => !all.some((x) => x.key === k));
  if (unknown.length > 0)
    throw new TypeError(`--${option}: no ${unknown.join(', ')}; one of ${all.map((x) => x.key).join(', ')}`);
  return all.filter((x) => keys.includes(x.key));
}
const SPECS = pick('servers', CLUSTER ? CLUSTER_SERVERS : SERVERS, values.servers);
const SCENARIO_LIST = pick('scenarios', SCENARIOS, values.scenarios ?? (CLUSTER ? 'read,write,new' : undefined));

/** The reference a server's ratio is taken to: the floor (or coalesced floor) of its own Redis. */
const floorOf = (spec: ServerSpec, coalesced = false) =>
  `${spec.cluster ? 'cluster-' : ''}floor${coalesced ? '-coalesced' : ''}`;

interface Sample {
  rps: number;
  p99: number;
  serverCpu: number;
  redisCpu: number;
}

async function measure(
  server: Running,
  scenario: (typeof SCENARIOS)[number],
  redisPids: number[],
  connections: number,
  seconds = SECONDS,
): Promise<Sample> {
  const redisCpu = () => redisPids.reduce((sum, pid) => sum + cpuMicros(pid), 0);
  const cpu = [cpuMicros(server.child.pid), redisCpu()];
  const result = await autocannon({
    url: server.url + scenario.path,
    connections,
    duration: seconds,
    headers: scenario.cookie ? { cookie: server.cookie } : {},
  });
  if (result.errors || result.non2xx)
    throw new Error(`${server.name} ${scenario.key}: ${result.errors} errors, ${result.non2xx} non-2xx`);
  const n = result.requests.total || 1;
  return {
    rps: result.requests.average,
    p99: result.latency.p99,
    serverCpu: (cpuMicros(server.child.pid) - (cpu[0] as number)) / n,
    redisCpu: (redisCpu() - (cpu[1] as number)) / n,
  };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;

const redis = await startRedis();
const cluster: RedisCluster | null = CLUSTER ? await startCluster(3, 0) : null;
const clusterMasters = cluster ? (await cluster.masters()).map((port) => `redis://127.0.0.1:${port}`) : [];
const redisPidsOf = (spec: ServerSpec) => (spec.cluster && cluster ? cluster.nodes.map((n) => n.pid) : [redis.pid]);

/** Empty every Redis and give each server a fresh session: the new-session scenario leaves a key
 *  per request (up to 60 KB each), which would otherwise pile up round after round. */
async function flushAndReseed(servers: Running[]): Promise<void> {
  for (const url of [redis.url, ...clusterMasters]) {
    const client = new Redis(url);
    await client.flushall();
    client.disconnect();
  }
  for (const server of servers) await reseed(server);
}

const summary: string[] = [];
const date = new Date().toISOString().slice(0, 10);
let servers: Running[] = [];
try {
  console.log(
    `\nkoa-session-machine HTTP benchmark, ${date}: node ${process.version}, ${CLUSTER ? 'one redis-server and a 3-master Redis Cluster (no replicas)' : 'redis-server'} on loopback, autocannon, ${WARMUP} s warm-up then ${ROUNDS} rounds × ${SECONDS} s per server and scenario; req/s, p99 and CPU are medians over rounds, ratios the median of the ratios within each round\n`,
  );
  for (const size of SIZES) {
    servers = [];
    for (const spec of SPECS) {
      const env: Record<string, string> = { ...spec.env, SESSION_BYTES: String(size) };
      if (spec.cluster && cluster)
        env.REDIS_CLUSTER_NODES = cluster.startupNodes.map((n) => `${n.host}:${n.port}`).join(',');
      servers.push(await start({ ...spec, env }, redis.url));
    }
    const specOf = (server: Running) => SPECS.find((s) => s.key === server.key) as ServerSpec;

    // Redis commands per request, on the wire (20 requests each, after 20 untimed ones, so that a
    // Cluster client has connected to every master: a connection's handshake is not a request's).
    // The MONITOR is closed again before anything is timed.
    const commands = new Map<string, number>();
    const monitors = {
      one: await Monitor.start(redis.url),
      cluster: cluster ? await MultiMonitor.start(clusterMasters) : null,
    };
    for (const server of servers) {
      const monitor = specOf(server).cluster ? monitors.cluster : monitors.one;
      for (const scenario of SCENARIO_LIST) {
        const headers = scenario.cookie ? { cookie: server.cookie } : undefined;
        for (let i = 0; i < 20; i++) await (await fetch(server.url + scenario.path, { headers })).text();
        const wire = await monitor?.capture(async () => {
          for (let i = 0; i < 20; i++) await (await fetch(server.url + scenario.path, { headers })).text();
        });
        commands.set(`${server.key}/${scenario.key}`, (wire?.length ?? 0) / 20);
      }
    }
    await monitors.one.stop();
    await monitors.cluster?.stop();

    for (const connections of CONNECTION_COUNTS) {
      const scenarios = SCENARIO_LIST.filter((s) => s.key !== 'new' || connections <= NEW_SESSION_MAX_CONNECTIONS);
      const run = async (
        scenario: (typeof SCENARIOS)[number],
        order: Running[],
        seconds: number,
        samples?: Map<string, Sample[]>,
      ) => {
        for (const server of order) {
          const sample = await measure(server, scenario, redisPidsOf(specOf(server)), connections, seconds);
          const key = `${server.key}/${scenario.key}`;
          samples?.set(key, [...(samples.get(key) ?? []), sample]);
        }
        if (scenario.key === 'new') await flushAndReseed(servers);
      };
      for (const scenario of scenarios) await run(scenario, servers, WARMUP);
      process.stderr.write(`${size} B, ${connections} connections: warm-up done\n`);

      const samples = new Map<string, Sample[]>();
      for (let round = 0; round < ROUNDS; round++) {
        // Rotate the order each round so no server always runs first (or right after a heavy one).
        const order = servers.map((_, i) => servers[(i + round) % servers.length] as Running);
        for (const scenario of scenarios) await run(scenario, order, SECONDS, samples);
        process.stderr.write(`${size} B, ${connections} connections: round ${round + 1}/${ROUNDS} done\n`);
      }

      const has = (key: string) => servers.some((s) => s.key === key);
      for (const scenario of scenarios) {
        const list = (server: string) => samples.get(`${server}/${scenario.key}`) ?? [];
        const ratio = (server: string, to: string) =>
          has(to) ? median(list(server).map((s, round) => s.rps / (list(to)[round]?.rps ?? Number.NaN))) : Number.NaN;
        const columns = CLUSTER
          ? ['× floor', '× floor, coalesced', '÷ one server']
          : ['× floor', '× floor, coalesced', '× koa-session'];
        console.log(`### ${scenario.name}: ${connections} connections, ${size} B of session data\n`);
        console.log(
          `| server | req/s | p99 ms | ${columns.join(' | ')} | Redis commands / request | CPU µs / request: server, Redis |`,
        );
        console.log(`|---|---|---|${columns.map(() => '---|').join('')}---|---|`);
        for (const server of servers) {
          const spec = specOf(server);
          const own = list(server.key);
          const toFloor = ratio(server.key, floorOf(spec));
          const third = CLUSTER
            ? spec.cluster
              ? toFloor / ratio(server.key.replace(/^cluster-/, ''), 'floor')
              : Number.NaN
            : ratio(server.key, 'koa-session');
          const cells = [toFloor, ratio(server.key, floorOf(spec, true)), third].map((r) =>
            Number.isNaN(r) ? '—' : r.toFixed(2),
          );
          const cpu = `${median(own.map((s) => s.serverCpu)).toFixed(0)}, ${median(own.map((s) => s.redisCpu)).toFixed(0)}`;
          console.log(
            `| ${server.name} | ${median(own.map((s) => s.rps)).toFixed(0)} | ${median(own.map((s) => s.p99)).toFixed(1)} | ${cells.join(' | ')} | ${commands.get(`${server.key}/${scenario.key}`)?.toFixed(2)} | ${cpu} |`,
          );
          summary.push(
            `| ${scenario.key} | ${connections} | ${size} | ${server.name} | ${median(own.map((s) => s.rps)).toFixed(0)} | ${cells.join(' | ')} | ${cpu} |`,
          );
        }
        console.log('');
      }
    }
    for (const s of servers) s.child.kill('SIGTERM');
    servers = [];
  }

  if (SIZES.length > 1 || CONNECTION_COUNTS.length > 1 || CLUSTER) {
    const third = CLUSTER ? '÷ one server' : '× koa-session';
    console.log(`### Summary: each ratio to the floor of the same Redis, connection count and size\n`);
    console.log(
      `| scenario | connections | session bytes | server | req/s | × floor | × floor, coalesced | ${third} | CPU µs / request: server, Redis |`,
    );
    console.log('|---|---|---|---|---|---|---|---|---|');
    for (const row of summary) console.log(row);
    console.log('');
  }
} finally {
  for (const s of servers) s.child.kill('SIGTERM');
  await redis.stop();
  await cluster?.stop();
}
