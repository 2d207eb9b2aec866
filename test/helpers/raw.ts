/** Koa and supertest for tests that assemble their own middleware stack. */
export { default as Koa3 } from 'koa';
export { default as request } from 'supertest';
