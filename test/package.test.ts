/**
 * The published shape: the ESM and CommonJS builds behind the `exports` map export the same names,
 * the default export is the factory, and the Lua embedded in the build matches src/store/lua.
 * (`npm test` builds first and runs publint and attw on the package.)
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { describe, it } from 'node:test';

const EXPECTED = [
  'DeserializationError',
  'InvalidSessionError',
  'NoSessionCookieError',
  'NotInBackendError',
  'PayloadLegacyError',
  'PayloadTimeoutError',
  'RESERVED_MEMBERS',
  'RawDeserializationError',
  'SessionNotStoredError',
  'SessionSizeError',
  'SessionStoreError',
  'csrfProtect',
  'default',
  'koaRedisSession',
  'sessionMachine',
  'sessionSerializer',
  'toDot',
  'toMermaid',
];

function run(args: string[]): string {
  return execFileSync(process.execPath, args, { encoding: 'utf8' }).trim();
}

describe('package exports', () => {
  it('require() gets the CommonJS build with every export', () => {
    const out = run([
      '-e',
      "const m = require('koa-session-machine'); console.log(JSON.stringify([Object.keys(m).sort(), typeof m.default, m.default === m.koaRedisSession, require.resolve('koa-session-machine')]))",
    ]);
    const [names, type, same, file] = JSON.parse(out);
    assert.deepEqual(names, EXPECTED);
    assert.equal(type, 'function');
    assert.equal(same, true);
    assert.match(file, /dist\/index\.cjs$/);
  });

  it('import gets the ESM build with every export', () => {
    const out = run([
      '--input-type=module',
      '-e',
      "import * as m from 'koa-session-machine'; console.log(JSON.stringify([Object.keys(m).sort(), m.default === m.koaRedisSession, import.meta.resolve('koa-session-machine')]))",
    ]);
    const [names, same, file] = JSON.parse(out);
    assert.deepEqual(names, EXPECTED);
    assert.equal(same, true);
    assert.match(file, /dist\/index\.js$/);
  });

  it('koa-session-machine/chart gives the live chart page, in both builds', () => {
    assert.equal(run(['-e', "console.log(typeof require('koa-session-machine/chart').sessionChart)"]), 'function');
    assert.equal(
      run([
        '--input-type=module',
        '-e',
        "import { sessionChart } from 'koa-session-machine/chart'; console.log(typeof sessionChart)",
      ]),
      'function',
    );
  });

  it('the build embeds the current Lua scripts', () => {
    assert.doesNotThrow(() => run(['scripts/embed-lua.mjs', '--check']));
  });
});
