/**
 * Private `redis-server` processes for tests: a free port each, nothing saved to disk, stopped by
 * pid. The shared instance on 6379 is never touched.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, Socket } from 'node:net';
import { Redis } from 'ioredis';

export interface RedisServer {
  readonly port: number;
  readonly pid: number;
  readonly url: string;
  /** Stop it (SIGTERM by default; SIGKILL to kill it as a crash would). */
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/** A port nobody listens on right now. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = new Socket();
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(500, () => done(false));
    socket.once('error', () => done(false));
    socket.connect(port, '127.0.0.1', () => socket.write('PING\r\n'));
    socket.once('data', (data) => done(data.toString().startsWith('+PONG')));
  });
}

/** Start a private redis-server (on a free port unless one is given) and wait until it answers PING. */
export async function startRedis(
  extraArgs: string[] = [],
  fixedPort?: number,
  configFile?: string,
): Promise<RedisServer> {
  const port = fixedPort ?? (await freePort());
  let child: ChildProcess;
  try {
    child = spawn(
      'redis-server',
      [
        ...(configFile ? [configFile] : []), // redis-server reads a config file only as its first argument
        '--port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--save',
        '',
        '--appendonly',
        'no',
        '--daemonize',
        'no',
        '--loglevel',
        'warning',
        ...extraArgs,
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
  } catch (err) {
    throw new Error(`cannot start redis-server (install it: apt-get install redis-server): ${String(err)}`);
  }
  let exited = false;
  const exit = new Promise<void>((resolve) => child.once('exit', () => ((exited = true), resolve())));
  child.once('error', () => undefined);
  for (let i = 0; i < 100 && !exited; i++) {
    if (await ping(port)) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  if (exited || child.pid === undefined) {
    throw new Error('redis-server did not start; is it installed? (apt-get install redis-server)');
  }
  const pid = child.pid;
  return {
    port,
    pid,
    url: `redis://127.0.0.1:${port}`,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (exited) return;
      process.kill(pid, signal);
      const timer = setTimeout(() => !exited && process.kill(pid, 'SIGKILL'), 3000);
      await exit;
      clearTimeout(timer);
    },
  };
}

/** Wait until every replica of the master at `port` has acknowledged what the master had written
 *  when this was called (INFO replication: each replica's offset reaches that master_repl_offset;
 *  replicas acknowledge once a second). A barrier for "the replicas have the data", not a sleep. */
export async function replicasCaughtUp(port: number, timeoutMs = 30_000): Promise<void> {
  const client = new Redis(port, '127.0.0.1');
  try {
    const info = async () => String(await client.info('replication'));
    const target = Number(/master_repl_offset:(\d+)/.exec(await info())?.[1]);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const offsets = [...(await info()).matchAll(/^slave\d+:.*offset=(\d+)/gm)].map((m) => Number(m[1]));
      if (offsets.length > 0 && offsets.every((offset) => offset >= target)) return;
      if (Date.now() > deadline)
        throw new Error(`the replicas of ${port} did not reach offset ${target} (at ${offsets.join(', ') || 'none'})`);
      await new Promise((r) => setTimeout(r, 50));
    }
  } finally {
    client.disconnect();
  }
}
