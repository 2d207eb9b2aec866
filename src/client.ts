/**
 * The Redis client's life cycle: the application's own client, or one this package creates, owns
 * and closes.
 */
import { Redis, type RedisOptions } from 'ioredis';
import type { SessionOptions } from './options.js';
import type { RedisClient } from './store/commands.js';

function isClient(value: unknown): value is RedisClient {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as Redis).defineCommand === 'function' &&
    typeof (value as Redis).sendCommand === 'function'
  );
}

export interface SessionClient {
  readonly client: RedisClient;
  /** Close the client if it is ours; a client passed in is left open for its owner. Never hangs. */
  close(): Promise<void>;
}

const delay = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms).unref());

/** The client: the application's own, or one we create and own. Ours fail fast while Redis is
 *  away (one retry, then queued commands are rejected rather than replayed late) and never let an
 *  `error` event escape: the requests report what failed. */
export function connect(option: SessionOptions['redis'], commandTimeout: number): SessionClient {
  if (isClient(option)) return { client: option, close: async () => undefined };
  const defaults: RedisOptions = { maxRetriesPerRequest: 1, commandTimeout };
  const client =
    option === undefined || typeof option === 'string'
      ? new Redis(option ?? process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', defaults)
      : new Redis({ ...defaults, ...option });
  client.on('error', () => undefined);
  return {
    client,
    close: async () => {
      if (client.status === 'end') return;
      const ended = new Promise<void>((resolve) => client.once('end', () => resolve()));
      // A polite QUIT when connected, bounded like any command; then the socket goes regardless, so
      // closing never hangs on a Redis that is away.
      if (client.status === 'ready') await Promise.race([client.quit().catch(() => undefined), delay(commandTimeout)]);
      client.disconnect();
      await Promise.race([ended, delay(commandTimeout)]);
    },
  };
}
