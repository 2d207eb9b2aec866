import { defineConfig } from 'tsup';

// ESM and CommonJS builds, each with its own declarations (.d.ts / .d.cts): the package, and the
// development-only live chart page (koa-session-machine/chart), kept apart for its 40 KB of SVG.
//
// No `external` list: tsup leaves every package named in package.json's `dependencies` and
// `peerDependencies` (and their subpaths) to be imported at run time, so the build follows
// package.json by itself. test/build.test.ts checks that nothing else is imported and nothing
// from node_modules is bundled.
export default defineConfig({
  entry: { index: 'src/index.ts', chart: 'src/chart-page.ts' },
  format: ['esm', 'cjs'],
  dts: true,
  clean: true,
  sourcemap: true,
  target: 'node20',
  outDir: 'dist',
});
