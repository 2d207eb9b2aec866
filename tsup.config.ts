import { defineConfig } from 'tsup';

// ESM and CommonJS builds, each with its own declarations (.d.ts / .d.cts): the package, and the
// development-only live chart page (koa-session-machine/chart), kept apart for its 40 KB of SVG.
export default defineConfig({
  entry: { index: 'src/index.ts', chart: 'src/chart-page.ts' },
  format: ['esm', 'cjs'],
  dts: true,
  clean: true,
  sourcemap: true,
  target: 'node20',
  outDir: 'dist',
  external: ['ioredis', 'koa', 'xstate', 'keygrip'],
});
