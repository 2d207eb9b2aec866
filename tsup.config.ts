import { defineConfig } from 'tsup';

// ESM and CommonJS builds of the one entry point, each with its own declarations (.d.ts / .d.cts).
export default defineConfig({
  entry: { index: 'src/index.ts' },
  format: ['esm', 'cjs'],
  dts: true,
  clean: true,
  sourcemap: true,
  target: 'node20',
  outDir: 'dist',
  external: ['ioredis', 'koa', 'xstate', 'keygrip'],
});
