/**
 * `sessionChart()`: a development page that draws the session machine and shows, live, what
 * requests did with it: a count on every transition taken, and the last requests with their path,
 * final state, Redis commands and cookie action. Self-contained (the chart is pre-rendered SVG, the
 * script is inline): it works offline and asks nothing of any other host.
 *
 *   import { sessionChart } from 'koa-session-machine/chart';
 *   app.use(sessionChart({ session }));   // then open /_session
 */
import type { Context, Middleware, Next } from 'koa';
import type { SessionMiddleware } from './middleware.js';
import type { SessionTrace } from './trace.js';
import { sessionSvg } from './chart-svg.generated.js';

export interface SessionChartOptions {
  /** The session middleware to watch. */
  session: SessionMiddleware;
  /** Where the page is served; its data at `<path>/data`. @default '/_session' */
  path?: string;
  /** How many recent requests the page lists. @default 20 */
  recent?: number;
  /** The page shows session internals: it refuses to start when NODE_ENV is production unless this is set. */
  allowInProduction?: boolean;
}

interface Recent {
  time: string;
  method: string;
  path: string;
  final: string;
  redis: readonly string[];
  cookie: string;
  ms: number;
}

const page = (path: string) => `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>koa-session-machine: live chart</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 16px; color: #222; }
  h1 { font-size: 18px; margin: 0 0 8px; }
  #summary { margin-bottom: 8px; color: #555; }
  #chart svg { width: 100%; height: auto; max-height: 70vh; border: 1px solid #ddd; }
  #chart g.edge.taken path { stroke: #d9480f; stroke-width: 3; }
  #chart g.edge.taken polygon { fill: #d9480f; stroke: #d9480f; }
  #chart g.edge text.count { fill: #d9480f; font-weight: bold; }
  #chart g.node.final-hit ellipse { fill: #ffe8cc; }
  table { border-collapse: collapse; margin-top: 12px; }
  td, th { border-bottom: 1px solid #eee; padding: 3px 10px; text-align: left; font-family: ui-monospace, monospace; font-size: 12px; }
</style></head>
<body>
<h1>koa-session-machine</h1>
<div id="summary">waiting for requests…</div>
<div id="chart">${sessionSvg.replace(/^[\s\S]*?(<svg)/, '$1')}</div>
<table><thead><tr><th>time</th><th>request</th><th>final state</th><th>redis</th><th>cookie</th><th>ms</th></tr></thead><tbody id="recent"></tbody></table>
<script>
const DATA = ${JSON.stringify(`${path}/data`)};
const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]);
async function refresh() {
  const data = await (await fetch(DATA, { cache: 'no-store' })).json();
  document.getElementById('summary').textContent = data.total + ' requests seen';
  for (const [id, n] of Object.entries(data.counts)) {
    const g = document.getElementById(id);
    if (!g) continue;
    g.classList.add('taken');
    let count = g.querySelector('text.count');
    if (!count) {
      const label = g.querySelector('text');
      count = document.createElementNS('http://www.w3.org/2000/svg', 'text');
      count.setAttribute('class', 'count');
      count.setAttribute('x', label ? label.getAttribute('x') : 0);
      count.setAttribute('y', label ? Number(label.getAttribute('y')) + 12 : 0);
      count.setAttribute('text-anchor', 'middle');
      count.setAttribute('font-size', '10');
      g.appendChild(count);
    }
    count.textContent = '× ' + n;
  }
  for (const [state, n] of Object.entries(data.finals)) {
    const g = document.getElementById('state:' + state);
    if (g) g.classList.add('final-hit');
  }
  document.getElementById('recent').innerHTML = data.recent.map((r) =>
    '<tr><td>' + esc(r.time) + '</td><td>' + esc(r.method + ' ' + r.path) + '</td><td>' + esc(r.final) + '</td><td>' +
    esc(r.redis.join(', ') || 'none') + '</td><td>' + esc(r.cookie) + '</td><td>' + r.ms.toFixed(2) + '</td></tr>').join('');
}
refresh();
setInterval(refresh, 1000);
</script>
</body></html>
`;

/** The live chart middleware. Mount it anywhere; it answers only its own path. */
export function sessionChart(options: SessionChartOptions): Middleware {
  const session = options?.session;
  if (!session || typeof session.observe !== 'function') {
    throw new TypeError('sessionChart: option "session" must be the middleware koaRedisSession() returned');
  }
  if (process.env.NODE_ENV === 'production' && !options.allowInProduction) {
    throw new TypeError('sessionChart: a development page (it shows session internals); set allowInProduction to mount it when NODE_ENV is production');
  }
  const path = (options.path ?? '/_session').replace(/\/$/, '') || '/_session';
  const keep = options.recent ?? 20;
  const counts: Record<string, number> = Object.create(null);
  const finals: Record<string, number> = Object.create(null);
  const recent: Recent[] = [];
  let total = 0;
  const html = page(path);

  session.observe((trace: SessionTrace) => {
    if (trace.path === path || trace.path.startsWith(`${path}/`)) return;
    total++;
    for (const step of trace.steps) counts[step.edge] = (counts[step.edge] ?? 0) + 1;
    finals[trace.final] = (finals[trace.final] ?? 0) + 1;
    recent.unshift({ time: new Date().toISOString().slice(11, 23), method: trace.method, path: trace.path, final: trace.final, redis: trace.redis, cookie: trace.cookie, ms: trace.ms });
    recent.length = Math.min(recent.length, keep);
  });

  return async function sessionChart(ctx: Context, next: Next): Promise<void> {
    if (ctx.method !== 'GET' || (ctx.path !== path && ctx.path !== `${path}/data`)) return next();
    ctx.set('Cache-Control', 'no-store');
    if (ctx.path === path) {
      ctx.type = 'html';
      // Only this page's own inline script and style; no other host is ever asked.
      ctx.set('Content-Security-Policy', "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'");
      ctx.body = html;
    } else {
      ctx.body = { total, counts, finals, recent };
    }
  };
}
