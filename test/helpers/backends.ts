/**
 * The two back ends race and index tests run against, side by side: one private redis-server and a
 * private 3-master Redis Cluster, with the before/after hooks that start, flush and stop them.
 */
import { after, afterEach, before } from 'node:test';
import { Cluster, Redis } from 'ioredis';
import { startCluster, type RedisCluster } from './redis-cluster.js';
import { startRedis, type RedisServer } from './redis-server.js';

export interface Backend {
  readonly name: string;
  readonly cluster: boolean;
  /** The client the middleware uses and the tests look through (set once the hooks ran). */
  client: Redis | Cluster;
  /** The nodes whose keys make up the whole data set (on Cluster: every master). */
  masters(): Redis[];
}

/**
 * Register hooks that give the file a private redis-server and a private 3-master Cluster (clients
 * retry once), flush both after each test and stop both at the end; `afterEachTest` runs first
 * after each test (closing apps, say). Returns the two back ends, one server first, and `started`,
 * which a file's own `before` hook awaits (node:test may start root hooks before the last ended).
 */
export function useBackends(afterEachTest?: () => Promise<void>): {
  readonly backends: readonly [Backend, Backend];
  readonly started: Promise<void>;
} {
  let ready!: () => void;
  const started = new Promise<void>((resolve) => {
    ready = resolve;
  });
  let server: RedisServer | undefined;
  let cluster: RedisCluster | undefined;
  const single: Backend = {
    name: 'one redis-server',
    cluster: false,
    client: undefined as unknown as Redis,
    masters: () => [single.client as Redis],
  };
  const clustered: Backend = {
    name: 'Redis Cluster (3 masters)',
    cluster: true,
    client: undefined as unknown as Cluster,
    masters: () => (clustered.client as Cluster).nodes('master'),
  };
  before(async () => {
    server = await startRedis();
    single.client = new Redis(server.url, { maxRetriesPerRequest: 1 });
    cluster = await startCluster(3, 0);
    const c = new Cluster(cluster.startupNodes, { redisOptions: { maxRetriesPerRequest: 1 } });
    c.on('error', () => undefined);
    clustered.client = c;
    await c.ping();
    await Promise.all(c.nodes('master').map((n) => n.ping()));
    ready();
  });
  afterEach(async () => {
    await afterEachTest?.();
    await Promise.all([single, clustered].flatMap((b) => (b.client ? b.masters().map((n) => n.flushall()) : [])));
  });
  after(async () => {
    await afterEachTest?.();
    single.client?.disconnect();
    clustered.client?.disconnect();
    await Promise.all([server?.stop(), cluster?.stop()]);
  });
  return { backends: [single, clustered], started };
}

/** The URLs of a back end's nodes (for a MONITOR on each). */
export function nodeUrls(b: Backend): string[] {
  return b.masters().map((n) => `redis://${n.options.host ?? '127.0.0.1'}:${n.options.port}`);
}
