/**
 * The options are defined once, in src/options.ts (`OPTIONS`, `COOKIE_ATTRIBUTES`): the README's
 * options table (README, "Options") must list the same options, in the same order, and show the
 * defaults that apply. And the `timeout` option and `ctx.session.adjustTimeout()` share one rule for
 * seconds. No Redis: the middleware's client is lazy and never connects.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import Koa from 'koa';
import request from 'supertest';
import { koaRedisSession } from '../../src/index.js';
import { COOKIE_ATTRIBUTES, OPTIONS, OPTION_NAMES, resolveOptions, toTimeout } from '../../src/options.js';

interface Row {
  readonly name: string;
  readonly defaultCell: string;
  readonly meaning: string;
}

/** The rows of the first table under "## Options": option name (in backticks), default, meaning. */
function readmeOptions(): Row[] {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  const section = readme.split(/^## /m).find((part) => part.startsWith('Options\n'));
  assert.ok(section, 'README.md has a "## Options" section');
  const rows: Row[] = [];
  for (const line of section.split('\n')) {
    const cells = line
      .trim()
      .match(/^\|(.*)\|$/)?.[1]
      ?.split(/(?<!\\)\|/)
      .map((cell) => cell.trim());
    const name = cells?.[0]?.match(/^`([^`]+)`$/)?.[1];
    if (cells === undefined || name === undefined) {
      if (rows.length > 0 && cells === undefined) break; // the table has ended
      continue; // the header and the separator
    }
    rows.push({ name, defaultCell: cells[1] ?? '', meaning: cells[2] ?? '' });
  }
  assert.ok(rows.length > 0, 'the "## Options" section has a table of options');
  return rows;
}

/** A default as the README writes it: strings in single quotes. */
function written(value: string | number | boolean | null): string {
  return typeof value === 'string' ? `'${value}'` : String(value);
}

/** The code spans of a cell. */
function codeSpans(cell: string): string[] {
  return [...cell.matchAll(/`([^`]*)`/g)].map((match) => match[1] as string);
}

/** A table's entries that have a literal default. */
function withDefaults(
  table: Record<string, { doc: string; default?: string | number | boolean | null }>,
): Array<[string, string | number | boolean | null]> {
  return Object.entries(table).flatMap(([name, definition]) =>
    Object.hasOwn(definition, 'default') ? [[name, definition.default as string | number | boolean | null]] : [],
  );
}

describe('the options table', () => {
  const rows = readmeOptions();
  const byName = new Map(rows.map((row) => [row.name, row]));

  it('the README lists exactly the defined options', () => {
    const readme = new Set(rows.map((row) => row.name));
    const defined = new Set<string>(OPTION_NAMES);
    assert.deepEqual(
      {
        'in the README only': [...readme].filter((name) => !defined.has(name)),
        'defined only (src/options.ts, OPTIONS)': [...defined].filter((name) => !readme.has(name)),
      },
      { 'in the README only': [], 'defined only (src/options.ts, OPTIONS)': [] },
    );
    assert.equal(rows.length, readme.size, 'no option is listed twice');
  });

  it('the README lists them in the order of their definitions', () => {
    assert.deepEqual(
      rows.map((row) => row.name),
      [...OPTION_NAMES],
    );
  });

  it('each literal default is the one the README shows', () => {
    const defaults = withDefaults(OPTIONS);
    assert.ok(defaults.length >= 10, 'most options have a literal default');
    for (const [name, value] of defaults) {
      const row = byName.get(name);
      if (row === undefined) continue; // reported by the test of names
      assert.ok(
        codeSpans(row.defaultCell).includes(written(value)),
        `README default of \`${name}\` shows \`${written(value)}\`: ${row.defaultCell}`,
      );
    }
  });

  it('the cookie row shows the attributes and their literal defaults', () => {
    const row = byName.get('cookie');
    assert.ok(row, 'the README lists `cookie`');
    const shown = codeSpans(row.defaultCell).join(' ');
    for (const [name, value] of withDefaults(COOKIE_ATTRIBUTES)) {
      assert.ok(
        shown.includes(`${name}: ${written(value)}`),
        `README default of \`cookie\` shows ${name}: ${written(value)}: ${row.defaultCell}`,
      );
    }
    const named = new Set(codeSpans(row.meaning));
    for (const name of Object.keys(COOKIE_ATTRIBUTES))
      assert.ok(named.has(name), `README names the cookie attribute \`${name}\``);
  });

  it('a literal default is what applies when the option is left out', () => {
    const resolved = resolveOptions({}) as unknown as Record<string, unknown>;
    assert.deepEqual(
      Object.keys(resolved).filter((key) => key !== 'idPattern'),
      [...OPTION_NAMES],
      'every option is resolved',
    );
    for (const [name, value] of withDefaults(OPTIONS)) assert.equal(resolved[name], value, name);
    assert.deepEqual(resolveOptions({}).cookie, Object.fromEntries(withDefaults(COOKIE_ATTRIBUTES)));
  });

  it('each definition has a one-line doc', () => {
    for (const [name, definition] of [...Object.entries(OPTIONS), ...Object.entries(COOKIE_ATTRIBUTES)]) {
      assert.match(definition.doc, /^\S[^\n]*$/, name);
    }
  });
});

describe('the seconds rule', () => {
  // Accepted or refused alike by the `timeout` option and by ctx.session.adjustTimeout().
  const values: unknown[] = [
    1,
    60,
    1200,
    2 ** 31 - 1,
    0,
    null,
    -0,
    -1,
    1.5,
    2 ** 31,
    Number.NaN,
    Number.POSITIVE_INFINITY,
    '60',
    true,
    {},
  ];

  it('the timeout option takes exactly what toTimeout() takes', () => {
    for (const value of values) {
      const expected = toTimeout(value);
      if (expected === undefined) {
        assert.throws(
          () => resolveOptions({ timeout: value as number }),
          /option "timeout" must be a whole number of seconds above 0, or 0\/null for never/,
          String(value),
        );
      } else {
        assert.equal(resolveOptions({ timeout: value as number }).timeout, expected, String(value));
      }
    }
  });

  it('ctx.session.adjustTimeout() takes what the timeout option takes, with the same meaning', async () => {
    const app = new Koa();
    app.keys = ['k'];
    // A lazy client that is never used: a new session that stores nothing sends no command.
    const session = koaRedisSession({ redis: { lazyConnect: true } });
    app.use(session);
    let results: Array<{ timeout: number | null } | { error: string }> = [];
    app.use((ctx) => {
      results = values.map((value) => {
        try {
          ctx.session.adjustTimeout(value as number);
          return { timeout: ctx.session.timeout };
        } catch (err) {
          return { error: (err as Error).message };
        }
      });
      ctx.body = 'ok';
    });
    try {
      assert.equal((await request(app.callback()).get('/')).status, 200);
    } finally {
      await session.close();
    }
    values.forEach((value, i) => {
      const result = results[i];
      let option: { timeout: number | null } | { error: string };
      try {
        option = { timeout: resolveOptions({ timeout: value as number }).timeout };
      } catch {
        option = { error: 'refused' };
      }
      if ('error' in option) {
        assert.ok(result && 'error' in result, `adjustTimeout(${String(value)}) is refused`);
        assert.match(
          result.error,
          /^ctx\.session\.adjustTimeout\(seconds\): seconds must be a whole number of seconds, or 0\/null for never; got /,
        );
      } else {
        assert.deepEqual(result, option, `adjustTimeout(${String(value)})`);
      }
    });
  });
});
