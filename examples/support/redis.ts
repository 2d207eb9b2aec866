/**
 * Find a Redis for the examples: REDIS_URL (or 127.0.0.1:6379) when it answers; otherwise a private
 * `redis-server` from PATH on a free port, stopped when the process exits; otherwise a message that
 * says how to install one.
 */
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { Redis } from 'ioredis';

async function answers(url: string): Promise<boolean> {
  const client = new Redis(url, {
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    connectTimeout: 1000,
  });
  client.on('error', () => undefined);
  try {
    await client.connect();
    return (await client.ping()) === 'PONG';
  } catch {
    return false;
  } finally {
    client.disconnect();
  }
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

export interface ExampleRedis {
  url: string;
  /** Stop the private server, if one was started. */
  stop(): void;
}

export async function redisForExample(): Promise<ExampleRedis> {
  const url = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
  if (await answers(url)) return { url, stop: () => undefined };
  const port = await freePort();
  const child = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
    {
      stdio: 'ignore',
    },
  );
  const failed = await new Promise<boolean>((resolve) => {
    child.once('error', () => resolve(true));
    child.once('spawn', () => resolve(false));
  });
  if (failed) {
    console.error(
      `No Redis answers at ${url} and redis-server is not on PATH.\n` +
        'Install one (Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis), or set REDIS_URL.',
    );
    process.exit(1);
  }
  const privateUrl = `redis://127.0.0.1:${port}`;
  for (let i = 0; i < 50 && !(await answers(privateUrl)); i++) await new Promise((r) => setTimeout(r, 100));
  const stop = () => {
    if (child.exitCode === null) child.kill('SIGTERM');
  };
  process.once('exit', stop);
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      stop();
      process.exit(0);
    });
  }
  console.log(`No Redis at ${url}: started a private redis-server (pid ${child.pid}) at ${privateUrl}`);
  return { url: privateUrl, stop };
}
