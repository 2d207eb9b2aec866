/**
 * A private Sentinel set-up for tests: one master, one replica and three sentinels, all
 * `redis-server` processes on free ports, stopped by pid.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { freePort, startRedis, type RedisServer } from './redis-server.js';

export const MASTER_NAME = 'mymaster';

export interface RedisSentinel {
  master: RedisServer;
  replica: RedisServer;
  sentinels: RedisServer[];
  /** What ioredis needs: `new Redis({ sentinels, name })`. */
  sentinelNodes: Array<{ host: string; port: number }>;
  /** The port the sentinels name as master right now. */
  currentMasterPort(): Promise<number>;
  stop(): Promise<void>;
}

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export async function startSentinel(): Promise<RedisSentinel> {
  const dir = mkdtempSync(join(tmpdir(), 'ksm-sentinel-'));
  const master = await startRedis();
  const replica = await startRedis(['--replicaof', '127.0.0.1', String(master.port)]);
  const replicaClient = new Redis(replica.port);
  try {
    await waitFor('the replica to sync', async () =>
      /master_link_status:up/.test(String(await replicaClient.info('replication'))),
    );
  } finally {
    replicaClient.disconnect();
  }
  const sentinels: RedisServer[] = [];
  for (let i = 0; i < 3; i++) {
    const port = await freePort();
    const file = join(dir, `sentinel-${port}.conf`);
    writeFileSync(
      file,
      [
        `port ${port}`,
        'bind 127.0.0.1',
        `dir ${dir}`,
        `sentinel monitor ${MASTER_NAME} 127.0.0.1 ${master.port} 2`,
        `sentinel down-after-milliseconds ${MASTER_NAME} 1000`,
        `sentinel failover-timeout ${MASTER_NAME} 5000`,
        `sentinel parallel-syncs ${MASTER_NAME} 1`,
        '',
      ].join('\n'),
    );
    sentinels.push(await startRedis(['--sentinel'], port, file));
  }
  const sentinelNodes = sentinels.map((s) => ({ host: '127.0.0.1', port: s.port }));
  const currentMasterPort = async () => {
    const client = new Redis(sentinels[0]?.port as number, '127.0.0.1');
    try {
      const reply = (await client.call('SENTINEL', 'get-master-addr-by-name', MASTER_NAME)) as string[];
      return Number(reply[1]);
    } finally {
      client.disconnect();
    }
  };
  // All three sentinels know each other and the replica before anyone relies on a failover.
  await waitFor('the sentinels to meet', async () => {
    const client = new Redis(sentinels[0]?.port as number, '127.0.0.1');
    try {
      const info = (await client.call('SENTINEL', 'master', MASTER_NAME)) as string[];
      const field = (name: string) => Number(info[info.indexOf(name) + 1]);
      return field('num-other-sentinels') === 2 && field('num-slaves') === 1;
    } finally {
      client.disconnect();
    }
  });
  return {
    master,
    replica,
    sentinels,
    sentinelNodes,
    currentMasterPort,
    async stop() {
      await Promise.all([master, replica, ...sentinels].map((s) => s.stop()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
