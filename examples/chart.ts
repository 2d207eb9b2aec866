/**
 * The live chart page: the basic example's app with `sessionChart()` mounted. Open /_session in one
 * tab and click around the app in another: the chart counts every transition.
 *   npm run example:chart
 */
import { sessionChart } from 'koa-session-machine/chart';
import { createApp as createBasicApp } from './basic.js';
import { isMain, listen } from './support/main.js';
import { redisForExample } from './support/redis.js';

export function createApp(redisUrl: string) {
  // The chart is mounted in front of the session: its own page and data do not pass through it.
  return createBasicApp(redisUrl, (session) => sessionChart({ session }));
}

if (isMain(import.meta.url)) {
  const redis = await redisForExample();
  listen(createApp(redis.url).app, 'chart example', '_session');
}
