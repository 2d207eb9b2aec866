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
 *   npm run bench                       # 10 rounds of 1 s per server and scenario, 2 s warm-up
 *   npm run bench -- --rounds 20 --seconds 2 --warmup 3
 */
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import { Monitor } from '../test/helpers/monitor.js';
import { startRedis } from '../test/helpers/redis-server.js';
import { SCENARIOS, SERVERS, cpuMicros, start, type Running } from './harness.js';

const { values } = parseArgs({
  options: { rounds: { type: 'string' }, seconds: { type: 'string' }, warmup: { type: 'string' }, connections: { type: 'string' } },
});
const ROUNDS = Number(values.rounds ?? 10);
const SECONDS = Number(values.seconds ?? 1);
const WARMUP = Number(values.warmup ?? 2);
const CONNECTIONS = Number(values.connections ?? 10);

async function measure(server: Running, scenario: (typeof SCENARIOS)[number], redisPid: number, seconds = SECONDS) {
  const cpu = [cpuMicros(server.child.pid), cpuMicros(redisPid)];
  const result = await autocannon({
    url: server.url + scenario.path,
    connections: CONNECTIONS,
    duration: seconds,
    headers: scenario.cookie ? { cookie: server.cookie } : {},
  });
  if (result.errors || result.non2xx) throw new Error(`${server.name} ${scenario.key}: ${result.errors} errors, ${result.non2xx} non-2xx`);
  const n = result.requests.total || 1;
  return {
    rps: result.requests.average,
    p99: result.latency.p99,
    serverCpu: (cpuMicros(server.child.pid) - (cpu[0] as number)) / n,
    redisCpu: (cpuMicros(redisPid) - (cpu[1] as number)) / n,
  };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;

const redis = await startRedis();
const servers: Running[] = [];
try {
  for (const s of SERVERS) servers.push(await start(s, redis.url));

  // Redis commands per request, on the wire (20 requests each, after a warm-up request). The
  // MONITOR is closed again before anything is timed.
  const commands = new Map<string, number>();
  const monitor = await Monitor.start(redis.url);
  for (const server of servers) {
    for (const scenario of SCENARIOS) {
      const headers = scenario.cookie ? { cookie: server.cookie } : undefined;
      await (await fetch(server.url + scenario.path, { headers })).text();
      const wire = await monitor.capture(async () => {
        for (let i = 0; i < 20; i++) await (await fetch(server.url + scenario.path, { headers })).text();
      });
      commands.set(`${server.key}/${scenario.key}`, wire.length / 20);
    }
  }
  await monitor.stop();

  for (const scenario of SCENARIOS) for (const server of servers) await measure(server, scenario, redis.pid, WARMUP);
  process.stderr.write(`warm-up done\n`);

  const samples = new Map<string, Array<Awaited<ReturnType<typeof measure>>>>();
  for (let round = 0; round < ROUNDS; round++) {
    for (const scenario of SCENARIOS) {
      // Rotate the order each round so no server always runs first (or right after a heavy one).
      const order = servers.map((_, i) => servers[(i + round) % servers.length] as Running);
      for (const server of order) {
        const key = `${server.key}/${scenario.key}`;
        const list = samples.get(key) ?? [];
        list.push(await measure(server, scenario, redis.pid));
        samples.set(key, list);
      }
    }
    process.stderr.write(`round ${round + 1}/${ROUNDS} done\n`);
  }

  const date = new Date().toISOString().slice(0, 10);
  console.log(
    `\nkoa-session-machine HTTP benchmark, ${date}: node ${process.version}, redis-server on loopback, autocannon ${CONNECTIONS} connections, ${WARMUP} s warm-up then ${ROUNDS} rounds × ${SECONDS} s per server and scenario; req/s, p99 and CPU are medians over rounds, ratios the median of the ratios within each round\n`,
  );
  for (const scenario of SCENARIOS) {
    console.log(`### ${scenario.name}\n`);
    console.log('| server | req/s | p99 ms | × floor | × floor, coalesced | × koa-session | Redis commands / request | CPU µs / request: server, Redis |');
    console.log('|---|---|---|---|---|---|---|---|');
    const list = (server: string) => samples.get(`${server}/${scenario.key}`) ?? [];
    const ratio = (server: string, to: string) => median(list(server).map((s, round) => s.rps / (list(to)[round]?.rps ?? Number.NaN)));
    for (const server of servers) {
      const own = list(server.key);
      console.log(
        `| ${server.name} | ${median(own.map((s) => s.rps)).toFixed(0)} | ${median(own.map((s) => s.p99)).toFixed(1)} | ${ratio(server.key, 'floor').toFixed(2)} | ${ratio(server.key, 'floor-coalesced').toFixed(2)} | ${ratio(server.key, 'koa-session').toFixed(2)} | ${commands.get(`${server.key}/${scenario.key}`)?.toFixed(2)} | ${median(own.map((s) => s.serverCpu)).toFixed(0)}, ${median(own.map((s) => s.redisCpu)).toFixed(0)} |`,
      );
    }
    console.log('');
  }
} finally {
  for (const s of servers) s.child.kill('SIGTERM');
  await redis.stop();
}
