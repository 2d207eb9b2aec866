/**
 * `npm run bench:profile`: where one server's CPU goes in one scenario. The server runs under
 * `node --cpu-prof` against a private redis-server while autocannon drives it, as in `npm run bench`;
 * the profile is written to bench/profiles/ (open it in Chrome DevTools or speedscope) and its
 * heaviest functions by self time are printed. bench/README.md has what it found.
 *   npm run bench:profile                                  # koa-session-machine, read-only, 5 s
 *   npm run bench:profile -- --server floor --scenario write --seconds 10
 */
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import { startRedis } from '../test/helpers/redis-server.js';
import { SCENARIOS, SERVERS, start } from './harness.js';
import { numberOption } from './options.js';

const { values } = parseArgs({
  options: {
    server: { type: 'string' },
    scenario: { type: 'string' },
    seconds: { type: 'string' },
    top: { type: 'string' },
  },
});
const server = SERVERS.find((s) => s.key === (values.server ?? 'ours'));
const scenario = SCENARIOS.find((s) => s.key === (values.scenario ?? 'read'));
if (!server || !scenario) {
  throw new Error(
    `--server is one of ${SERVERS.map((s) => s.key).join(', ')}; --scenario one of ${SCENARIOS.map((s) => s.key).join(', ')}`,
  );
}
const SECONDS = numberOption('--seconds', values.seconds, 5, { whole: false, min: 0.1 });
const TOP = numberOption('--top', values.top, 25);
const dir = join('bench', 'profiles', `${server.key}-${scenario.key}-${Date.now()}`);
mkdirSync(dir, { recursive: true });

interface Profile {
  nodes: Array<{ id: number; callFrame: { functionName: string; url: string; lineNumber: number } }>;
  samples: number[];
  timeDeltas: number[];
}

const redis = await startRedis();
try {
  // SIGINT makes the server exit through process.exit, so that Node writes the profile.
  const running = await start(server, redis.url, [
    '--cpu-prof',
    `--cpu-prof-dir=${dir}`,
    '--import',
    'data:text/javascript,process.on("SIGINT",()=>process.exit(0))',
  ]);
  const options = {
    url: running.url + scenario.path,
    connections: 10,
    headers: scenario.cookie ? { cookie: running.cookie } : {},
  };
  await autocannon({ ...options, duration: 2 }); // warm: the profile is of a hot server
  const result = await autocannon({ ...options, duration: SECONDS });
  const exited = new Promise((resolve) => running.child.once('exit', resolve));
  running.child.kill('SIGINT');
  await exited;

  const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
  if (!file) throw new Error(`no profile written to ${dir}`);
  const profile = JSON.parse(readFileSync(join(dir, file), 'utf8')) as Profile;
  const time = new Map<number, number>();
  profile.samples.forEach((id, i) => {
    time.set(id, (time.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0));
  });
  const self = new Map<string, number>();
  let total = 0;
  for (const node of profile.nodes) {
    const t = time.get(node.id) ?? 0;
    total += t;
    const { functionName, url, lineNumber } = node.callFrame;
    const where = url ? `${url.split('/').slice(-2).join('/')}:${lineNumber + 1}` : '';
    const name = `${functionName || '(anonymous)'} ${where}`.trim();
    self.set(name, (self.get(name) ?? 0) + t);
  }
  console.log(
    `\n${server.name}, ${scenario.name}: ${result.requests.average.toFixed(0)} req/s while profiled; ${join(dir, file)}\n`,
  );
  console.log('| self time | function |');
  console.log('|---|---|');
  for (const [name, t] of [...self].sort((a, b) => b[1] - a[1]).slice(0, TOP)) {
    console.log(`| ${((100 * t) / total).toFixed(1)} % | ${name} |`);
  }
} finally {
  await redis.stop();
}
