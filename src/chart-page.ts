/**
 * `sessionChart()`: a development page that draws the session machine and shows, live, what
 * requests did with it: a count on every transition taken, and the last requests with their status,
 * session tag, final state, Redis commands and answer and cookie action; a click on a request
 * highlights its path, and the list filters by session, final state and status. Self-contained (the
 * chart is pre-rendered SVG, the script is inline): it works offline and asks nothing of any other
 * host.
 *
 *   import { sessionChart } from 'koa-session-machine/chart';
 *   app.use(sessionChart({ session }));   // then open /_session
 */
import type { Context, Middleware, Next } from 'koa';
import { BYPASS, type SessionMiddleware } from './middleware.js';
import type { SessionTrace } from './trace.js';
import { sessionSvg } from './chart-svg.generated.js';

export interface SessionChartOptions {
  /** The session middleware to watch. */
  session: SessionMiddleware;
  /** Where the page is served; its data at `<path>/data`. @default '/_session' */
  path?: string;
  /** How many recent requests the page keeps. @default 50 */
  recent?: number;
  /** The page shows session internals: it refuses to start when NODE_ENV is production unless this is set. */
  allowInProduction?: boolean;
}

interface Recent {
  /** A number the page names the request by (for highlighting its path). */
  n: number;
  time: string;
  method: string;
  path: string;
  status: number;
  session: string | null;
  final: string;
  redis: readonly string[];
  write: string;
  cookie: string;
  failure: string | null;
  blocked: string | null;
  /** The chart edges the request took, in order. */
  edges: string[];
  ms: number;
}

const page = () => `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>koa-session-machine: live chart</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 16px; color: #222; }
  h1 { font-size: 18px; margin: 0 0 8px; }
  #bar { display: flex; flex-wrap: wrap; gap: 8px 14px; align-items: center; margin-bottom: 8px; }
  #bar label { font-size: 13px; }
  #bar input[type=text] { width: 9em; }
  #summary { color: #555; }
  #chart { border: 1px solid #ddd; height: 62vh; overflow: auto; cursor: grab; }
  #chart.dragging { cursor: grabbing; }
  #chart svg { display: block; }
  #chart g.edge.taken path { stroke: #d9480f; stroke-width: 2; }
  #chart g.edge.taken polygon { fill: #d9480f; stroke: #d9480f; }
  #chart g.edge text.count { fill: #d9480f; font-weight: bold; }
  #chart g.node.final-hit ellipse { fill: #ffe8cc; }
  #chart g.edge.selected path { stroke: #1c7ed6; stroke-width: 5; }
  #chart g.edge.selected polygon { fill: #1c7ed6; stroke: #1c7ed6; }
  #chart g.edge.selected text { fill: #1c7ed6; font-weight: bold; }
  #chart g.node.selected ellipse, #chart g.node.selected path,
  #chart g.node.selected polygon { stroke: #1c7ed6; stroke-width: 3; }
  table { border-collapse: collapse; margin-top: 12px; }
  td, th {
    border-bottom: 1px solid #eee; padding: 3px 10px; text-align: left;
    font-family: ui-monospace, monospace; font-size: 12px;
  }
  tbody tr { cursor: pointer; }
  tbody tr:hover { background: #f1f3f5; }
  tbody tr.selected { background: #d0ebff; }
  td.bad { color: #c92a2a; }
</style></head>
<body>
<h1>koa-session-machine</h1>
<div id="bar">
  <span id="summary">waiting for requests…</span>
  <label>session <input id="f-session" type="text" placeholder="tag"></label>
  <label>final state <select id="f-final"><option value="">any</option></select></label>
  <label>status <input id="f-status" type="text" placeholder="e.g. 403 or 5"></label>
  <label><input id="pause" type="checkbox"> pause</label>
  <button id="clear" type="button">clear</button>
  <span>zoom <button id="zoom-out" type="button">−</button> <span id="zoom">100%</span>
    <button id="zoom-in" type="button">+</button> <button id="fit" type="button">fit</button></span>
</div>
<div id="chart">${sessionSvg.replace(/^[\s\S]*?(<svg)/, '$1')}</div>
<table><thead><tr>
  <th>time</th><th>request</th><th>status</th><th>session</th>
  <th>final state</th><th>redis → answer</th><th>cookie</th><th>ms</th>
</tr></thead><tbody id="recent"></tbody></table>
<script>
// Relative to where the page was served, so it also works mounted under a prefix (koa-mount).
const BASE = location.pathname.replace(/[/]+$/, '');
const $ = (id) => document.getElementById(id);
const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]);
const svg = document.querySelector('#chart svg');
const natural = { w: svg.viewBox.baseVal.width, h: svg.viewBox.baseVal.height };
let scale = 1.33; // Graphviz points to CSS pixels: edge labels at 10 pt read at 13 px
let data = { total: 0, counts: {}, finals: {}, recent: [] };
let selected = null;
function zoom(to) {
  scale = Math.min(4, Math.max(0.2, to));
  svg.setAttribute('width', String(natural.w * scale));
  svg.setAttribute('height', String(natural.h * scale));
  $('zoom').textContent = Math.round((scale / 1.33) * 100) + '%';
}
zoom(scale);
$('zoom-in').onclick = () => zoom(scale * 1.25);
$('zoom-out').onclick = () => zoom(scale / 1.25);
$('fit').onclick = () => zoom(($('chart').clientWidth - 4) / natural.w);
$('chart').addEventListener('wheel', (e) => {
  if (!e.ctrlKey && !e.metaKey) return; // plain wheel scrolls; with Ctrl it zooms
  e.preventDefault();
  zoom(scale * (e.deltaY < 0 ? 1.1 : 1 / 1.1));
}, { passive: false });
let drag = null;
$('chart').addEventListener('mousedown', (e) => {
  drag = { x: e.clientX, y: e.clientY, left: $('chart').scrollLeft, top: $('chart').scrollTop };
  $('chart').classList.add('dragging');
});
window.addEventListener('mouseup', () => { drag = null; $('chart').classList.remove('dragging'); });
window.addEventListener('mousemove', (e) => {
  if (!drag) return;
  $('chart').scrollLeft = drag.left - (e.clientX - drag.x);
  $('chart').scrollTop = drag.top - (e.clientY - drag.y);
});
function shown(r) {
  const tag = $('f-session').value.trim();
  const final = $('f-final').value;
  const status = $('f-status').value.trim();
  return (!tag || (r.session || '').includes(tag)) && (!final || r.final === final) &&
    (!status || String(r.status).startsWith(status));
}
function highlight(r) {
  for (const g of document.querySelectorAll('#chart g.selected')) g.classList.remove('selected');
  selected = r ? r.n : null;
  if (!r) return;
  let first = null;
  for (const id of r.edges) {
    const g = document.getElementById(id);
    if (!g) continue;
    g.classList.add('selected');
    first = first || g;
  }
  const end = document.getElementById('state:' + r.final);
  if (end) end.classList.add('selected');
  if (first) first.scrollIntoView({ block: 'center', inline: 'center' });
}
function render() {
  $('summary').textContent = data.total + ' requests seen';
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
  for (const g of document.querySelectorAll('#chart g.taken')) {
    if (!(g.id in data.counts)) { g.classList.remove('taken'); g.querySelector('text.count')?.remove(); }
  }
  for (const g of document.querySelectorAll('#chart g.final-hit')) g.classList.remove('final-hit');
  for (const state of Object.keys(data.finals)) document.getElementById('state:' + state)?.classList.add('final-hit');
  const finals = $('f-final');
  for (const state of Object.keys(data.finals)) {
    if (![...finals.options].some((o) => o.value === state)) finals.add(new Option(state, state));
  }
  const rows = data.recent.filter(shown);
  $('recent').innerHTML = rows.map((r) =>
    '<tr data-n="' + r.n + '"' + (r.n === selected ? ' class="selected"' : '') + '>' +
    '<td>' + esc(r.time) + '</td>' +
    '<td>' + esc(r.method + ' ' + r.path) + '</td>' +
    '<td' + (r.status >= 400 ? ' class="bad"' : '') + '>' + r.status + '</td>' +
    '<td>' + esc(r.session || '–') + '</td>' +
    '<td' + (r.failure ? ' class="bad"' : '') + '>' +
      esc(r.final + (r.failure ? ' (' + r.failure + ')' : '')) + '</td>' +
    '<td>' + esc((r.redis.join(', ') || 'none') + (r.write === 'none' ? '' : ' → ' + r.write) +
      (r.blocked ? ' (no cookie: ' + r.blocked + ')' : '')) + '</td>' +
    '<td>' + esc(r.cookie) + '</td>' +
    '<td>' + r.ms.toFixed(2) + '</td></tr>').join('');
}
$('recent').addEventListener('click', (e) => {
  const tr = e.target.closest('tr');
  if (!tr) return;
  const n = Number(tr.dataset.n);
  const r = data.recent.find((x) => x.n === n);
  highlight(n === selected ? null : r);
  render();
});
for (const id of ['f-session', 'f-final', 'f-status']) $(id).addEventListener('input', render);
$('clear').onclick = async () => {
  await fetch(BASE + '/clear', { method: 'POST', headers: { 'x-session-chart': 'clear' } });
  highlight(null);
  await refresh(true);
};
async function refresh(force) {
  if ($('pause').checked && !force) return;
  data = await (await fetch(BASE + '/data', { cache: 'no-store' })).json();
  render();
}
refresh();
setInterval(refresh, 1000);
</script>
</body></html>
`;

/** The live chart middleware. Mount it before or after the session: its own page and polls never
 *  load, refresh or create a session. */
export function sessionChart(options: SessionChartOptions): Middleware {
  const session = options?.session;
  if (!session || typeof session.observe !== 'function') {
    throw new TypeError('sessionChart: option "session" must be the middleware koaRedisSession() returned');
  }
  if (process.env.NODE_ENV === 'production' && !options.allowInProduction) {
    throw new TypeError(
      'sessionChart: a development page (it shows session internals); ' +
        'set allowInProduction to mount it when NODE_ENV is production',
    );
  }
  const path = options.path ?? '/_session';
  if (typeof path !== 'string' || !/^\/[A-Za-z0-9._~!$&'()*+,;=:@%-]+(\/[A-Za-z0-9._~!$&'()*+,;=:@%-]+)*$/.test(path)) {
    throw new TypeError(
      'sessionChart: option "path" must be an absolute URL path such as "/_session" ' +
        `(not "/" and no trailing "/"), got ${JSON.stringify(path)}`,
    );
  }
  const keep = options.recent ?? 50;
  if (typeof keep !== 'number' || !Number.isInteger(keep) || keep < 1 || keep > 10_000) {
    throw new TypeError(`sessionChart: option "recent" must be a whole number from 1 to 10000, got ${String(keep)}`);
  }
  let counts: Record<string, number> = Object.create(null);
  let finals: Record<string, number> = Object.create(null);
  let recent: Recent[] = [];
  let total = 0;
  let n = 0;
  const html = page();
  /** The page's own URLs, and only those: an app route under the same prefix keeps its session. */
  const own = (ctx: Context) =>
    ctx.path === path || ctx.path === `${path}/` || ctx.path === `${path}/data` || ctx.path === `${path}/clear`;
  session[BYPASS](own);

  session.observe((trace: SessionTrace) => {
    total++;
    for (const step of trace.steps) counts[step.edge] = (counts[step.edge] ?? 0) + 1;
    finals[trace.final] = (finals[trace.final] ?? 0) + 1;
    recent.unshift({
      n: ++n,
      time: new Date().toISOString().slice(11, 23),
      method: trace.method,
      path: trace.path,
      status: trace.status,
      session: trace.session,
      final: trace.final,
      redis: trace.redis,
      write: trace.write,
      cookie: trace.cookie,
      failure: trace.failure,
      blocked: trace.blocked,
      edges: trace.steps.map((s) => s.edge),
      ms: trace.ms,
    });
    recent.length = Math.min(recent.length, keep);
  });

  return async function sessionChart(ctx: Context, next: Next): Promise<void> {
    if (!own(ctx)) return next();
    ctx.set('Cache-Control', 'no-store');
    if (ctx.method === 'GET' && (ctx.path === path || ctx.path === `${path}/`)) {
      ctx.type = 'html';
      // Only this page's own inline script and style; no other host is ever asked.
      ctx.set(
        'Content-Security-Policy',
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'",
      );
      ctx.body = html;
    } else if (ctx.method === 'GET' && ctx.path === `${path}/data`) {
      ctx.body = { total, counts, finals, recent };
    } else if (ctx.method === 'POST' && ctx.path === `${path}/clear` && ctx.get('x-session-chart') === 'clear') {
      // A custom header: a cross-site form cannot send it, so no other page can clear this one.
      counts = Object.create(null);
      finals = Object.create(null);
      recent = [];
      total = 0;
      ctx.status = 204;
    } else {
      return next();
    }
  };
}
