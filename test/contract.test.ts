/**
 * The README's cost table ("What each request costs"), row by row, on Koa 3 and Koa 2, against a private redis-server (test/helpers/contract.ts).
 */
import { KOA_VERSIONS } from './helpers/app.js';
import { runContract } from './helpers/contract.js';
import { useRedis } from './helpers/fixture.js';

const f = useRedis();

runContract(
  {
    versions: KOA_VERSIONS,
    redis: () => f.server.url,
    inspect: () => f.redis,
    keyCount: () => f.redis.dbsize(),
    request: (send) => f.monitor.request(send),
  },
  'one redis-server',
);
