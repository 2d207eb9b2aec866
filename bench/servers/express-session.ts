/** express-session 1.19 with connect-redis 9 (node-redis 5), with its recommended options. */
import express from 'express';
import session from 'express-session';
import { RedisStore } from 'connect-redis';
import { createClient } from 'redis';
import { PORT, REDIS_URL, ready, realisticSession } from './common.js';

const client = createClient({ url: REDIS_URL });
client.on('error', () => undefined);
await client.connect();
const app = express();
app.use(
  session({
    store: new RedisStore({ client, prefix: 'express:' }),
    secret: ['bench-newest', 'bench-older'],
    resave: false,
    saveUninitialized: false,
    cookie: { maxAge: 1_200_000 },
  }),
);
app.get('/none', (_req, res) => void res.send('ok'));
app.get('/seed', (req, res) => {
  Object.assign(req.session, realisticSession());
  res.send('ok');
});
app.get('/write', (req, res) => {
  const s = req.session as unknown as Record<string, number>;
  s.visits = (s.visits ?? 0) + 1;
  res.send(String(s.visits));
});
app.get('/read', (req, res) => void res.send(String((req.session as unknown as Record<string, number>).visits)));
app.listen(PORT, '127.0.0.1', () => ready('express-session + connect-redis'));
