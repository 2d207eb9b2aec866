/**
 * A private Redis Cluster for tests: `redis-server --cluster-enabled yes` processes on free ports
 * (each with its bus port, +10000, free too), joined by `redis-cli --cluster create`, stopped by pid.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { type Cluster, Redis } from 'ioredis';
import { freePort, startRedis, type RedisServer } from './redis-server.js';

const run = promisify(execFile);

function nodeDir(root: string, port: number): string {
  const dir = join(root, String(port));
  mkdirSync(dir, { recursive: true });
  return dir;
}

/** Every replica has finished its first sync: only then can it take over from its master. */
async function replicasInSync(nodes: RedisServer[], timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (const node of nodes) {
    const client = new Redis(node.port, '127.0.0.1');
    try {
      for (;;) {
        const info = String(await client.info('replication'));
        if (!/role:slave/.test(info) || /master_link_status:up/.test(info)) break;
        if (Date.now() > deadline) throw new Error(`replica ${node.port} did not sync with its master`);
        await new Promise((r) => setTimeout(r, 100));
      }
    } finally {
      client.disconnect();
    }
  }
}

/** A free port whose cluster bus port (port + 10000) is free too. */
export async function freeClusterPort(taken: Set<number>): Promise<number> {
  for (;;) {
    const port = await freePort();
    if (port + 10000 > 65535 || taken.has(port)) continue;
    const { createServer } = await import('node:net');
    const busFree = await new Promise<boolean>((resolve) => {
      const server = createServer();
      server.once('error', () => resolve(false));
      server.listen(port + 10000, '127.0.0.1', () => server.close(() => resolve(true)));
    });
    if (busFree) {
      taken.add(port);
      return port;
    }
  }
}

export interface RedisCluster {
  nodes: RedisServer[];
  startupNodes: Array<{ host: string; port: number }>;
  /** Ports of the nodes that are masters right now. */
  masters(): Promise<number[]>;
  /** Wait until every live node reports cluster_state:ok. */
  waitOk(timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

async function clusterInfo(port: number): Promise<string> {
  const client = new Redis(port, '127.0.0.1', {
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  });
  client.on('error', () => undefined);
  try {
    await client.connect();
    return String(await client.call('CLUSTER', 'INFO'));
  } catch {
    return '';
  } finally {
    client.disconnect();
  }
}

export async function startCluster(masters = 3, replicasPerMaster = 1): Promise<RedisCluster> {
  const dir = mkdtempSync(join(tmpdir(), 'ksm-cluster-'));
  const taken = new Set<number>();
  const count = masters * (1 + replicasPerMaster);
  const nodes: RedisServer[] = [];
  for (let i = 0; i < count; i++) {
    const port = await freeClusterPort(taken);
    nodes.push(
      await startRedis(
        // Each node its own folder: replicas write their sync files there.
        [
          '--cluster-enabled',
          'yes',
          '--cluster-config-file',
          'nodes.conf',
          '--cluster-node-timeout',
          '1000',
          '--dir',
          nodeDir(dir, port),
          '--enable-debug-command',
          'yes',
        ],
        port,
      ),
    );
  }
  await run(
    'redis-cli',
    [
      '--cluster',
      'create',
      ...nodes.map((n) => `127.0.0.1:${n.port}`),
      '--cluster-replicas',
      String(replicasPerMaster),
      '--cluster-yes',
    ],
    {
      timeout: 60_000,
    },
  );
  const alive = new Set(nodes);
  const cluster: RedisCluster = {
    nodes,
    startupNodes: nodes.map((n) => ({ host: '127.0.0.1', port: n.port })),
    async masters() {
      for (const node of alive) {
        const client = new Redis(node.port, '127.0.0.1', { maxRetriesPerRequest: 0, retryStrategy: () => null });
        client.on('error', () => undefined);
        try {
          const text = String(await client.call('CLUSTER', 'NODES'));
          return text
            .split('\n')
            .filter((line) => / master /.test(line.replace(/,/g, ' ')) && !/fail/.test(line) && / connected/.test(line))
            .map((line) => Number(/:(\d+)@/.exec(line)?.[1]));
        } catch {
          // try the next node
        } finally {
          client.disconnect();
        }
      }
      return [];
    },
    async waitOk(timeoutMs = 30_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const infos = await Promise.all([...alive].map((n) => clusterInfo(n.port)));
        if (infos.every((info) => /cluster_state:ok/.test(info) && /cluster_slots_ok:16384/.test(info))) return;
        if (Date.now() > deadline) throw new Error(`cluster not ok after ${timeoutMs} ms`);
        await new Promise((r) => setTimeout(r, 200));
      }
    },
    async stop() {
      await Promise.all(nodes.map((n) => n.stop()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
  const originalStops = new Map(nodes.map((n) => [n, n.stop.bind(n)]));
  for (const node of nodes) {
    node.stop = async (signal) => {
      alive.delete(node);
      await (originalStops.get(node) as RedisServer['stop'])(signal);
    };
  }
  await cluster.waitOk();
  await replicasInSync(nodes);
  return cluster;
}

/** A node's name as an ioredis Cluster client's slot table holds it. */
export function nodeName(node: Redis): string {
  return `${String(node.options.host)}:${String(node.options.port)}`;
}

/**
 * Move `slot` from the node `client`'s slot table names for it (`source`) to another master
 * (`target`) by hand, as `redis-cli --cluster reshard` does, in its three steps: `begin()` marks it
 * migrating (the source answers ASK for keys it no longer holds), `migrate(keys)` carries keys across,
 * `finish()` gives the slot to the target on every master (the source answers MOVED from then on).
 * The client's table is left as it was, for the redirections to correct.
 */
export async function moveSlot(
  client: Cluster,
  slot: number,
): Promise<{
  source: Redis;
  target: Redis;
  begin(): Promise<void>;
  migrate(keys: readonly string[]): Promise<void>;
  finish(): Promise<void>;
}> {
  const masters = client.nodes('master');
  const source = masters.find((n) => nodeName(n) === client.slots[slot]?.[0]) as Redis;
  const target = masters.find((n) => n !== source) as Redis;
  const id = async (n: Redis) => String(await n.call('CLUSTER', 'MYID'));
  const [sourceId, targetId] = [await id(source), await id(target)];
  return {
    source,
    target,
    async begin() {
      await target.call('CLUSTER', 'SETSLOT', slot, 'IMPORTING', sourceId);
      await source.call('CLUSTER', 'SETSLOT', slot, 'MIGRATING', targetId);
    },
    async migrate(keys) {
      await source.call('MIGRATE', '127.0.0.1', Number(target.options.port), '', 0, 5000, 'KEYS', ...keys);
    },
    async finish() {
      // The new owner first, then the old one, then the rest (the order redis-cli follows).
      for (const node of [target, source, ...masters.filter((n) => n !== source && n !== target)])
        await node.call('CLUSTER', 'SETSLOT', slot, 'NODE', targetId);
    },
  };
}
