/**
 * What the build (`npm run build`, tsup) leaves to be imported at run time: exactly the packages
 * package.json declares. tsup takes `dependencies` and `peerDependencies` as externals by itself
 * (tsup.config.ts); a package imported by src/ but declared nowhere, or only as a devDependency,
 * would be bundled into dist/ silently. Reads dist/: `npm test` builds first.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { describe, it } from 'node:test';

const root = new URL('../', import.meta.url);
const pkg = JSON.parse(readFileSync(new URL('package.json', root), 'utf8')) as {
  name: string;
  dependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
};
const dependencies = Object.keys(pkg.dependencies ?? {});
const declared = new Set([...dependencies, ...Object.keys(pkg.peerDependencies ?? {}), pkg.name]);
const builtins = new Set(builtinModules);

function built(pattern: RegExp): Array<[string, string]> {
  const dist = new URL('dist/', root);
  assert.ok(existsSync(dist), 'dist/ exists: run npm run build first');
  return readdirSync(dist)
    .filter((name) => pattern.test(name))
    .map((name) => [name, readFileSync(new URL(name, dist), 'utf8')]);
}

/** The package a bare specifier names (`xstate/actions` → `xstate`, `@scope/pkg/x` → `@scope/pkg`). */
function packageOf(specifier: string): string {
  const parts = specifier.split('/');
  return (specifier.startsWith('@') ? parts.slice(0, 2) : parts.slice(0, 1)).join('/');
}

/** The bare specifiers a built file imports or requires (relative ones aside), as esbuild and
 *  the declaration bundler write them: statements at the start of a line, and `require("…")` with
 *  double quotes (so a message such as "Usage: require('keygrip')" in bundled code is no import). */
function imported(text: string): string[] {
  const patterns = [
    /^(?:import|export)\b[^;]*?\bfrom\s*["']([^"']+)["']/gm,
    /^import\s*["']([^"']+)["']/gm,
    /\bimport\(\s*["']([^"']+)["']\s*\)/g,
    /\brequire\("([^"]+)"\)/g,
  ];
  return patterns
    .flatMap((pattern) => [...text.matchAll(pattern)].map((match) => match[1] as string))
    .filter((specifier) => !specifier.startsWith('.'));
}

describe('the build', () => {
  const code = built(/\.(c?js)$/);
  const declarations = built(/\.d\.c?ts$/);

  it('bundles only this package’s own modules (nothing from node_modules)', () => {
    assert.ok(code.length > 0);
    for (const [name, text] of code) {
      // esbuild marks each bundled module with a `// <path>` line.
      const modules = [...text.matchAll(/^\/\/ (\S+\.(?:[cm]?[jt]sx?|json))$/gm)].map((match) => match[1] as string);
      assert.ok(modules.length > 0, `${name} names its modules`);
      const foreign = modules.filter((path) => !path.startsWith('src/') && !path.startsWith('machines/'));
      assert.deepEqual(foreign, [], `${name} bundles ${foreign.join(', ')}: declare the package in dependencies`);
    }
  });

  it('imports only declared dependencies, peer dependencies and Node built-ins', () => {
    for (const [name, text] of [...code, ...declarations]) {
      const undeclared = imported(text).filter((specifier) => {
        const bare = specifier.replace(/^node:/, '');
        return !builtins.has(bare) && !declared.has(packageOf(specifier));
      });
      assert.deepEqual(undeclared, [], `${name} imports packages package.json does not declare`);
    }
  });

  it('imports every runtime dependency, in both formats (none inlined or unused)', () => {
    for (const [format, files] of [
      ['ESM', /\.js$/],
      ['CommonJS', /\.cjs$/],
    ] as const) {
      const used = new Set(
        code.filter(([name]) => files.test(name)).flatMap(([, text]) => imported(text).map(packageOf)),
      );
      assert.deepEqual(
        dependencies.filter((dependency) => !used.has(dependency)),
        [],
        `dependencies the ${format} build does not import`,
      );
    }
  });
});
