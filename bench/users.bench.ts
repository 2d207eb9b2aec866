/**
 * `npm run bench:users`: what the `userKey` option (README, "A user's sessions") costs a signed-in
 * user's requests. Two servers of bench/servers/ours.ts, each in its own process against one private
 * redis-server, both storing the same ~1 KB session with a `userId` in it (LOGGED_IN=1): one with
 * `userKey: 'userId'` (and a `sessionInfo`), one without. Read-only and write requests, side by side
 * in one run, rounds alternating which server goes first; the ratio is set ÷ unset, the median of
 * the ratios measured within each round (this machine's speed drifts: see bench/README.md). The goal
 * is ≥ 0.95×. Also printed: Redis commands per request (counted with MONITOR before the timed rounds),
 * p99 latency, the CPU each request cost the server and redis-server (from /proc), and the ratio of
 * those CPU costs (unset ÷ set), which moves far less than req/s when other work shares the machine.
 *   npm run bench:users                              # 10 rounds of 1 s per server and scenario, 2 s warm-up
 *   npm run bench:users -- --rounds 5 --seconds 1 --warmup 1 --connections 10
 */
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import { Redis } from 'ioredis';
import { Monitor } from '../test/helpers/monitor.js';
import { startRedis } from '../test/helpers/redis-server.js';
import { SCENARIOS, cpuMicros, start, type Running, type ServerSpec } from './harness.js';
import { TIMING_FLAGS, numberOption, timing } from './options.js';

const { values } = parseArgs({
  options: {
    ...TIMING_FLAGS,
    connections: { type: 'string' },
  },
});
const { rounds: ROUNDS, seconds: SECONDS, warmup: WARMUP } = timing(values);
const CONNECTIONS = numberOption('--connections', values.connections, 10);
const GOAL = 0.95;

const UNSET: ServerSpec = { key: 'unset', file: 'ours', name: '`userKey` unset', env: { LOGGED_IN: '1' } };
const SET: ServerSpec = {
  key: 'set',
  file: 'ours',
  name: "`userKey: 'userId'`",
  env: { LOGGED_IN: '1', USER_KEY: 'userId' },
};
const SCENARIO_LIST = SCENARIOS.filter((s) => s.key === 'read' || s.key === 'write');
type Scenario = (typeof SCENARIO_LIST)[number];

interface Sample {
  rps: number;
  p99: number;
  serverCpu: number;
  redisCpu: number;
}

async function measure(server: Running, scenario: Scenario, redisPid: number, seconds: number): Promise<Sample> {
  const cpu = [cpuMicros(server.child.pid), cpuMicros(redisPid)];
  const result = await autocannon({
    url: server.url + scenario.path,
    connections: CONNECTIONS,
    duration: seconds,
    headers: { cookie: server.cookie },
  });
  if (result.errors || result.non2xx)
    throw new Error(`${server.name} ${scenario.key}: ${result.errors} errors, ${result.non2xx} non-2xx`);
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
let servers: Running[] = [];
try {
  servers = [await start(UNSET, redis.url), await start(SET, redis.url)];
  const [unset, set] = servers as [Running, Running];

  // The sessions are what the bench says: both hold the user, and only the `userKey` server's is in
  // a user index (README, "A user's sessions"; the index key is under the prefix, `sess:user:…`).
  const look = new Redis(redis.url);
  const indexes = await look.keys('sess:user:*');
  look.disconnect();
  if (indexes.length !== 1) throw new Error(`expected one user index, found ${JSON.stringify(indexes)}`);
  for (const server of servers) {
    const seen = await (await fetch(`${server.url}/read`, { headers: { cookie: server.cookie } })).text();
    if (seen !== '1') throw new Error(`${server.name}: the seeded session is not loaded (${seen})`);
  }

  // Redis commands per request, on the wire (20 requests each, after 20 untimed ones). The MONITOR
  // is closed before anything is timed: it taxes Redis for every command.
  const commands = new Map<string, number>();
  const monitor = await Monitor.start(redis.url);
  for (const server of servers) {
    for (const scenario of SCENARIO_LIST) {
      const headers = { cookie: server.cookie };
      for (let i = 0; i < 20; i++) await (await fetch(server.url + scenario.path, { headers })).text();
      const wire = await monitor.capture(async () => {
        for (let i = 0; i < 20; i++) await (await fetch(server.url + scenario.path, { headers })).text();
      });
      commands.set(`${server.key}/${scenario.key}`, wire.length / 20);
    }
  }
  await monitor.stop();

  for (const scenario of SCENARIO_LIST)
    for (const server of servers) await measure(server, scenario, redis.pid, WARMUP);
  process.stderr.write('warm-up done\n');

  const samples = new Map<string, Sample[]>();
  for (let round = 0; round < ROUNDS; round++) {
    // Alternate which server goes first, so neither always runs right after the other.
    const order = round % 2 === 0 ? [unset, set] : [set, unset];
    for (const scenario of SCENARIO_LIST) {
      for (const server of order) {
        const key = `${server.key}/${scenario.key}`;
        samples.set(key, [...(samples.get(key) ?? []), await measure(server, scenario, redis.pid, SECONDS)]);
      }
    }
    process.stderr.write(`round ${round + 1}/${ROUNDS} done\n`);
  }

  const date = new Date().toISOString().slice(0, 10);
  console.log(
    `\nkoa-session-machine, a user's sessions: \`userKey\` set vs unset, ${date}: node ${process.version}, redis-server on loopback, autocannon ${CONNECTIONS} connections, ~1 KB session holding a userId, ${WARMUP} s warm-up then ${ROUNDS} rounds × ${SECONDS} s per server and scenario, rounds alternating; req/s, p99 and CPU are medians over rounds, the ratio the median of the ratios within each round\n`,
  );
  console.log('| scenario | server | req/s | p99 ms | Redis commands / request | CPU µs / request: server, Redis |');
  console.log('|---|---|---|---|---|---|');
  const verdicts: string[] = [];
  for (const scenario of SCENARIO_LIST) {
    for (const server of servers) {
      const own = samples.get(`${server.key}/${scenario.key}`) ?? [];
      const cpu = `${median(own.map((s) => s.serverCpu)).toFixed(0)}, ${median(own.map((s) => s.redisCpu)).toFixed(0)}`;
      console.log(
        `| ${scenario.name} | ${server.name} | ${median(own.map((s) => s.rps)).toFixed(0)} | ${median(own.map((s) => s.p99)).toFixed(1)} | ${commands.get(`${server.key}/${scenario.key}`)?.toFixed(2)} | ${cpu} |`,
      );
    }
    const withKey = samples.get(`set/${scenario.key}`) ?? [];
    const without = samples.get(`unset/${scenario.key}`) ?? [];
    const ratios = withKey.map((s, round) => s.rps / (without[round]?.rps ?? Number.NaN));
    const ratio = median(ratios);
    // The CPU a request cost (server + redis-server), unset ÷ set per round: what the ratio of req/s
    // would be on a machine that is CPU-bound, and far less moved by other load on a shared one.
    const cpu = median(
      withKey.map(
        (s, round) => ((without[round]?.serverCpu ?? 0) + (without[round]?.redisCpu ?? 0)) / (s.serverCpu + s.redisCpu),
      ),
    );
    verdicts.push(
      `- ${scenario.name}: set ÷ unset **${ratio.toFixed(3)}×** (rounds ${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)}; goal ≥ ${GOAL}: ${ratio >= GOAL ? 'met' : 'not met'}); CPU per request, unset ÷ set: ${cpu.toFixed(3)}×`,
    );
  }
  console.log(`\n${verdicts.join('\n')}\n`);
} finally {
  for (const s of servers) s.child.kill('SIGTERM');
  await redis.stop();
}
