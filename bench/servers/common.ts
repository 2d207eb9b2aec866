/**
 * What every benchmark server shares: the ~1 KB session each scenario starts from, the port and
 * Redis it is given, and the line that tells the runner it is ready.
 */
export const PORT = Number(process.env.PORT);
export const REDIS_URL = String(process.env.REDIS_URL);

/** `REDIS_CLUSTER_NODES` (host:port,host:port…): the server uses an ioredis Cluster of these nodes
 *  instead of REDIS_URL (the servers that support it: floor, ours). */
export const CLUSTER_NODES = process.env.REDIS_CLUSTER_NODES
  ? process.env.REDIS_CLUSTER_NODES.split(',').map((node) => ({
      host: node.split(':')[0] ?? '127.0.0.1',
      port: Number(node.split(':')[1]),
    }))
  : null;

/** `AUTOPIPELINING=1`: the server's client is made with ioredis' `enableAutoPipelining`. */
export const AUTOPIPELINING = process.env.AUTOPIPELINING === '1';

/** Bytes of session data the `/seed` route writes (its JSON): `SESSION_BYTES`, about 1 KB by default. */
export const SESSION_BYTES = Number(process.env.SESSION_BYTES ?? 1000);

/**
 * A realistic session of about `bytes` of JSON: a user, a cart, preferences, recent pages. Around
 * 0.1 KB it is a user and a visit count; above 1 KB the cart and the recent pages grow.
 */
export function realisticSession(bytes = SESSION_BYTES): Record<string, unknown> {
  if (bytes < 400) {
    const small: Record<string, unknown> = { user: { id: 'u-2048', name: 'Ada' }, visits: 1 };
    const pad = bytes - JSON.stringify(small).length;
    if (pad > 12) small.theme = 'd'.repeat(pad - 12);
    return small;
  }
  // How many items reach the size is found once: measuring on every call would cost each request a
  // JSON.stringify that no server's own work includes.
  let extra = grown.get(bytes);
  if (extra === undefined) {
    const probe = base();
    for (extra = 0; JSON.stringify(probe).length < bytes; extra++) grow(probe, 6 + extra);
    grown.set(bytes, extra);
  }
  const session = base();
  for (let i = 0; i < extra; i++) grow(session, 6 + i);
  return session;
}

const grown = new Map<number, number>();

function grow(session: Record<string, unknown>, i: number): void {
  if (i % 2)
    (session.cart as { items: Array<Record<string, unknown>> }).items.push({
      sku: `SKU-${1000 + i}`,
      qty: 1 + (i % 3),
      price: 9.99 + i,
    });
  else (session.recent as string[]).push(`/products/${100 + i}`);
}

function base(): Record<string, unknown> {
  return {
    user: { id: 'u-2048', name: 'Ada Lovelace', email: 'ada@example.com', roles: ['customer', 'beta'] },
    cart: {
      items: Array.from({ length: 6 }, (_, i) => ({ sku: `SKU-${1000 + i}`, qty: 1 + (i % 3), price: 9.99 + i })),
      currency: 'EUR',
    },
    prefs: { theme: 'dark', locale: 'en-GB', newsletter: false, tz: 'Europe/London' },
    recent: ['/products/17', '/products/23', '/cart', '/checkout/address', '/products/5'],
    visits: 1,
    csrf: 'f'.repeat(64),
  };
}

export function ready(name: string): void {
  console.log(`ready ${name}`);
}
