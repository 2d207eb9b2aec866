/**
 * What every benchmark server shares: the ~1 KB session each scenario starts from, the port and
 * Redis it is given, and the line that tells the runner it is ready.
 */
export const PORT = Number(process.env.PORT);
export const REDIS_URL = String(process.env.REDIS_URL);

/** A realistic session of about 1 KB: a user, a cart, preferences, a few timestamps. */
export function realisticSession(): Record<string, unknown> {
  return {
    user: { id: 'u-2048', name: 'Ada Lovelace', email: 'ada@example.com', roles: ['customer', 'beta'] },
    cart: { items: Array.from({ length: 6 }, (_, i) => ({ sku: `SKU-${1000 + i}`, qty: 1 + (i % 3), price: 9.99 + i })), currency: 'EUR' },
    prefs: { theme: 'dark', locale: 'en-GB', newsletter: false, tz: 'Europe/London' },
    recent: ['/products/17', '/products/23', '/cart', '/checkout/address', '/products/5'],
    visits: 1,
    csrf: 'f'.repeat(64),
  };
}

export function ready(name: string): void {
  console.log(`ready ${name}`);
}
