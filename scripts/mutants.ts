/**
 * `npm run test:mutants`: are the tests strong enough to catch the bugs a change is likely to bring?
 *
 * Each mutant below is one small, deliberate bug: a find/replace in one file of the repository. The
 * script copies the repository's files (`git ls-files`, and files not yet added unless ignored) into
 * a scratch directory, applies one mutant there (re-embedding the Lua scripts when a .lua changed),
 * runs the test files chosen for that mutant one at a time, and reports which of them failed: those
 * caught it. The unmutated copy runs first and must pass every chosen file, or a broken test would
 * make every mutant look caught.
 *
 * Exits 1 when a mutant survives (no chosen test file fails), when a mutant's `find` text is not
 * found exactly once in its file (so the list cannot rot silently as the code changes), when the
 * unmutated copy fails, or when the run passes its time budget.
 *
 *   node --import tsx scripts/mutants.ts                 every mutant
 *   node --import tsx scripts/mutants.ts --only a,b      only mutants a and b (repeatable)
 *   node --import tsx scripts/mutants.ts --list          list the mutants and their test files
 *   node --import tsx scripts/mutants.ts --keep          keep every scratch directory
 *   node --import tsx scripts/mutants.ts --budget 40     give up after 40 minutes (the default)
 *
 * The working tree is never modified. Test files run one at a time (the tests start their own
 * redis-server processes); a test file that hangs is killed, with everything it started, after
 * FILE_TIMEOUT_MS and counts as failed.
 */
import { execFileSync, spawn } from 'node:child_process';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  realpathSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../', import.meta.url));

/** One find/replace: `find` must occur exactly once in `file`. */
interface Edit {
  readonly file: string;
  readonly find: string;
  readonly replace: string;
}

interface Mutant {
  /** Short name, for `--only` and the table. */
  readonly name: string;
  /** The bug, as a reviewer would describe it. */
  readonly bug: string;
  readonly edits: readonly Edit[];
  /** Test files (fastest first) that must catch it. */
  readonly tests: readonly string[];
}

const T = {
  oracle: 'test/unit/oracle.test.ts',
  machine: 'test/unit/machine.test.ts',
  contract: 'test/contract.test.ts',
  parity: 'test/parity.test.ts',
  options: 'test/options.test.ts',
  session: 'test/session.test.ts',
  cookie: 'test/unit/cookie.test.ts',
  concurrency: 'test/concurrency.test.ts',
  fuzz: 'test/fuzz.test.ts',
  races: 'test/races.test.ts',
  lifetimes: 'test/lifetimes.test.ts',
  layout: 'test/layout.test.ts',
  users: 'test/users.test.ts',
  overtaken: 'test/overtaken.test.ts',
} as const;

const CHART = 'machines/session.machine.ts';
const POLICY = 'src/policy.ts';
const LOAD = 'src/store/lua/load.lua';
const COMMANDS = 'src/store/commands.ts';
const LAYOUT = 'src/store/lua/include/layout.lua';
const ROTATE = 'src/store/lua/rotate.lua';
const APPLY = 'src/store/lua/include/apply.lua';
const CHAIN = 'src/store/lua/include/chain.lua';
const USERS = 'src/store/lua/include/users.lua';
const OP = 'src/store/lua/include/op.lua';

const one = (file: string, find: string, replace: string): Edit[] => [{ file, find, replace }];

const MUTANTS: readonly Mutant[] = [
  // -- the chart and its policy (docs/design.md, "The machine") ---------------------------------
  {
    name: 'replaced-empty-stored',
    bug: 'the replaced state without its nothingToStore guard: invalidate(), write, delete stores an empty session under a new id',
    edits: one(
      CHART,
      "              { guard: 'nothingToStore', target: '#session.deleting', actions: 'planDelete' },\n",
      '',
    ),
    tests: [T.oracle],
  },
  {
    name: 'regenerate-cookie-blocked-ignored',
    bug: 'regenerated does not check cookieBlocked: the move happens although the new cookie cannot be sent',
    edits: one(
      CHART,
      "              { guard: 'cookieBlocked', target: '#session.rejected', actions: 'noteCookieRefused' },\n              { guard: 'insecureCookie', target: '#session.rejected', actions: 'noteInsecureCookie' },\n              { target: '#session.moving', actions: 'planMove' },",
      "              { guard: 'insecureCookie', target: '#session.rejected', actions: 'noteInsecureCookie' },\n              { target: '#session.moving', actions: 'planMove' },",
    ),
    tests: [T.oracle],
  },
  {
    name: 'gone-sets-cookie',
    bug: "the gone output sets the cookie ('set' instead of 'none')",
    edits: one(
      POLICY,
      "gone: (context) => ({ redis: context.plan, cookie: 'none', failure: 'gone', status: 0 }),",
      "gone: (context) => ({ redis: context.plan, cookie: 'set', failure: 'gone', status: 0 }),",
    ),
    tests: [T.oracle],
  },
  {
    name: 'failed-logout-keeps-cookie',
    bug: 'the failed output forgets to clear the cookie of a logout whose delete failed',
    edits: one(
      POLICY,
      "cookie: context.plan === 'delete' && cookieClearable(context, event) ? 'clear' : 'none',",
      "cookie: 'none',",
    ),
    tests: [T.oracle],
  },
  {
    name: 'older-key-not-resigned',
    bug: 'a cookie verified by an older key is not re-signed with the newest',
    edits: one(POLICY, 'return context.recookie || context.keyIndex > 0;', 'return context.recookie;'),
    tests: [T.oracle, T.options],
  },
  {
    name: 'cookie-on-exception-ignored',
    bug: 'an error response may set a cookie without cookieOnException',
    edits: one(
      POLICY,
      'return e.cookieAllowed && (!e.errored || context.cookieOnException);',
      'return e.cookieAllowed;',
    ),
    tests: [T.oracle, T.options],
  },

  {
    name: 'compiled-ancestors-first',
    bug: "the compiled table tries a parent state's transitions before its leaf's (XState picks the deepest first)",
    edits: one(
      'src/fsm.ts',
      'on.set(eventType, [...(on.get(eventType) ?? []), ...list]);',
      'on.set(eventType, [...list, ...(on.get(eventType) ?? [])]);',
    ),
    tests: [T.oracle, T.machine],
  },

  // -- the cookie and CSRF ---------------------------------------------------------------------
  {
    name: 'cookie-any-signature',
    bug: 'decode accepts any well-formed signature (the key index forced to 0)',
    edits: one(
      'src/cookie.ts',
      "return keyIndex < 0 ? BAD_SIGNATURE : { kind: 'valid', id, keyIndex };",
      "return { kind: 'valid', id, keyIndex: Math.max(keyIndex, 0) };",
    ),
    tests: [T.cookie, T.fuzz],
  },
  {
    name: 'signature-not-canonical',
    bug: 'a signature with stray bits in its last character verifies (compared as decoded base64url, not as text)',
    edits: one(
      'src/cookie.ts',
      'const b = Buffer.from(given);',
      "const b = Buffer.from(Buffer.from(given, 'base64url').toString('base64url'));",
    ),
    tests: [T.cookie],
  },
  {
    name: 'csrf-any-token',
    bug: 'csrfValid accepts any token',
    edits: one(
      'src/session.ts',
      'return this.keys.index(csrfData(this.storedId, this.#salt()), sent) >= 0;',
      'return this.keys.index(csrfData(this.storedId, this.#salt()), sent) >= -1;',
    ),
    tests: [T.parity],
  },
  {
    name: 'csrf-salt-ignored',
    bug: 'csrfValid checks against an empty salt: the token newCsrfToken() replaced stays valid',
    edits: one(
      'src/session.ts',
      'return this.keys.index(csrfData(this.storedId, this.#salt()), sent) >= 0;',
      "return this.keys.index(csrfData(this.storedId, ''), sent) >= 0;",
    ),
    tests: [T.parity],
  },
  {
    name: 'csrf-not-bound-to-id',
    bug: 'a CSRF token signs only the salt: every session with the same salt shares one token',
    // biome-ignore lint/suspicious/noTemplateCurlyInString: the text of a template literal in the source, found and replaced
    edits: one('src/session.ts', 'return `csrf\\n${id}\\n${salt}`;', 'return `csrf\\n${salt}`;'),
    tests: [T.parity],
  },

  // -- the middleware and the store's client side ------------------------------------------------
  {
    name: 'maxsize-create-off-by-1000',
    bug: "the middleware's fits check (create and replace) allows 1000 bytes past maxSize",
    edits: one(
      'src/request.ts',
      'state.storedSize() <= this.#opts.maxSize,',
      'state.storedSize() <= this.#opts.maxSize + 1000,',
    ),
    tests: [T.parity],
  },
  {
    name: 'regenerated-id-loses-tag',
    bug: "drawId ignores the lineage: a regenerated id does not share the old id's Cluster hash tag",
    edits: one(COMMANDS, 'const id = tag + fresh;', 'const id = fresh;'),
    tests: [T.races],
  },
  {
    name: 'timeout-from-request',
    bug: "every patch carries the request's own timeout: a plain write undoes a concurrent adjustTimeout()",
    edits: one(
      COMMANDS,
      "const timeout = source.timeoutChanged ? String(source.timeout ?? 0) : '';",
      'const timeout = String(source.timeout ?? 0);',
    ),
    tests: [T.races],
  },

  // -- load.lua --------------------------------------------------------------------------------
  {
    name: 'load-refresh-ignores-trigger',
    bug: 'the load moves the expiry on every load, ignoring timeoutTrigger',
    edits: one(LOAD, 'else due = ((not x) or (x - now <= trigger)) and x ~= target end', 'else due = x ~= target end'),
    tests: [T.options],
  },
  {
    name: 'load-refresh-no-ttl',
    bug: 'the load moves the payload expiry but not the Redis TTL',
    edits: one(LOAD, "      if ARGV[3] == '1' then redis.call('EXPIRE', key, target - now) end\n", ''),
    tests: [T.options],
  },
  {
    name: 'load-serves-expired',
    bug: 'the load serves a payload whose own expiry has passed',
    edits: one(
      LOAD,
      'if (x and now > x) or (deadline and now >= deadline) then',
      'if deadline and now >= deadline then',
    ),
    tests: [T.contract, T.options],
  },
  {
    name: 'load-serves-older-version',
    bug: 'the load serves a payload of an older format version (only a missing version counts as legacy)',
    edits: one(LOAD, 'if tonumber(vs, 36) < tonumber(ARGV[4]) then', 'if false then'),
    tests: [T.options],
  },
  {
    name: 'load-deletes-marker',
    bug: "the load reads a regenerate's marker as a legacy payload and deletes it: a logout that loaded before the move no longer follows it",
    edits: one(
      LOAD,
      '  if value == TOMBSTONE or marker(value) then return {0} end\n',
      '  if value == TOMBSTONE then return {0} end\n',
    ),
    tests: [T.session, T.races],
  },
  {
    name: 'load-follows-marker',
    bug: "the load follows a regenerate's marker: the old cookie leads to the moved session (fixation)",
    edits: one(
      LOAD,
      'local vs, cs, ts, xs, at = string.match(value, HEADER)\n',
      "local vs, cs, ts, xs, at = string.match(value, HEADER)\nif not vs and marker(value) then key = marker(value).m; value = redis.call('GET', key); vs, cs, ts, xs, at = string.match(value, HEADER) end\n",
    ),
    tests: [T.session, T.races],
  },

  {
    name: 'refresh-wrong-offset',
    bug: "the load's in-place refresh writes the expiry one byte too far, over the header's last space",
    edits: one(LOAD, 'at - 2 - #xs', 'at - 1 - #xs'),
    tests: [T.options, T.contract],
  },
  {
    name: 'migrate-drops',
    bug: 'a session of the previous layout (a hash) is deleted as legacy instead of migrated',
    edits: one(LAYOUT, "  elseif meta.v == '1' and c and c ~= '' and t and x then", '  elseif false then'),
    tests: [T.options],
  },

  {
    name: 'migrate-trusts-numbers',
    bug: 'the migration takes any number a hash holds: a negative or non-finite one loops in base 36 and blocks Redis',
    edits: one(LAYOUT, '  if not whole(n) then return nil end\n', '  if not n then return nil end\n'),
    tests: [T.layout],
  },
  {
    name: 'taken-accepts-older-op',
    bug: "a rotate whose fresh id is taken answers 'done' when the key holds a newer operation of the same writer",
    edits: one(OP, '  return replayed(map.o, op, true) or 0\n', '  return replayed(map.o, op) or 0\n'),
    tests: [T.layout],
  },

  {
    name: 'older-op-is-replay',
    bug: "an operation older than its writer's last is taken for a replay: a write overtaken on a moving Cluster slot is dropped and reported as stored",
    edits: one(
      OP,
      '  if back <= WINDOW then return ran(mask, back - 1) and 1 or nil end\n',
      '  if back <= WINDOW then return 1 end\n',
    ),
    tests: [T.overtaken],
  },
  {
    name: 'overtaken-op-not-remembered',
    bug: 'an overtaken write applied late is not marked as run: resent, it acts again (a flash queued twice)',
    edits: one(OP, '      if back <= WINDOW and not ran(mask, back - 1) then mask = mask + 2 ^ (back - 1) end\n', ''),
    tests: [T.overtaken],
  },
  {
    name: 'mask-not-shifted',
    bug: "a newer operation keeps its writer's mask where it was: which earlier operations ran is misread, a replay acts again",
    edits: one(
      OP,
      '(mask % 2 ^ (WINDOW - shift)) * 2 ^ shift + 2 ^ (shift - 1)',
      '(mask % 2 ^ WINDOW) + 2 ^ (shift - 1)',
    ),
    tests: [T.overtaken],
  },
  {
    name: 'marker-forgets-writer',
    bug: "a move's marker remembers only the move: a write the session ran before it, resent to the marker, answers gone",
    edits: one(APPLY, 'o = plan.ops, x = crossing', "o = ARGV[9] .. '=1', x = crossing"),
    tests: [T.overtaken],
  },
  {
    name: 'load-ignores-absolute-timeout',
    bug: 'the load serves a session past its absolute timeout as long as it is active',
    edits: one(LOAD, 'if (x and now > x) or (deadline and now >= deadline) then', 'if x and now > x then'),
    tests: [T.lifetimes],
  },
  {
    name: 'refresh-past-absolute-timeout',
    bug: 'a refresh moves the expiry past the absolute timeout',
    edits: one(LOAD, '  if deadline and deadline < target then target = deadline end\n', ''),
    tests: [T.lifetimes],
  },
  {
    name: 'write-resurrects-past-absolute-timeout',
    bug: 'a write applies to a session past its absolute timeout instead of finding it gone',
    edits: one(
      APPLY,
      "    redis.call('DEL', key) -- past its absolute timeout: ended, as its next load would end it\n    return nil, -1\n",
      '',
    ),
    tests: [T.lifetimes],
  },

  // -- cookie lifetimes (README, "Cookie lifetimes") ---------------------------------------------
  {
    name: 'rolling-off',
    bug: 'a persistent cookie is never re-sent when the expiry moves: an active user is logged out by the cookie',
    edits: one(POLICY, "  return moved && rollsCookie(context, event) ? 'set' : 'none';", "  return 'none';"),
    tests: [T.oracle, T.lifetimes],
  },
  {
    name: 'rolling-on-untouched',
    bug: 'the cookie rolls on a read that did not move the expiry',
    edits: one(
      POLICY,
      'cookie: context.staleCookie ? dropCookie(context, event) : keepCookie(context, event, false),',
      'cookie: context.staleCookie ? dropCookie(context, event) : keepCookie(context, event, true),',
    ),
    tests: [T.oracle, T.lifetimes],
  },
  {
    name: 'lifetime-not-stored',
    bug: "a session's own cookie lifetime is not stored: a re-signed or regenerated cookie loses it",
    edits: one('src/session.ts', '    if (this.lifetimeChanged) set.push(LIFETIME_FIELD, this.#lifetimeText());\n', ''),
    tests: [T.lifetimes],
  },
  {
    name: 'cookie-outlives-absolute-timeout',
    bug: 'a persistent cookie is not capped at the absolute timeout',
    edits: one(
      'src/response-cookie.ts',
      '      if (ms !== null && deadline !== null) ms = Math.min(ms, deadline * 1000 - Date.now());\n',
      '',
    ),
    tests: [T.lifetimes],
  },

  // -- the create, rotate.lua, chain.lua ---------------------------------------------------------
  {
    name: 'create-no-expire',
    bug: 'the create stores the session without its TTL',
    // Both ways a create's SET leaves: the frame of ours, and ioredis' own for clients that prefix
    // keys or autopipeline.
    edits: [
      { file: COMMANDS, find: '? this.#framedSet(key, value, ttl)', replace: '? this.#framedSet(key, value, 0)' },
      {
        file: COMMANDS,
        find: "? this.#redis.set(key, valueBytes(value), 'EX', ttl, 'NX')",
        replace: "? this.#redis.set(key, valueBytes(value), 'NX')",
      },
    ],
    tests: [T.contract, T.options],
  },
  {
    name: 'create-overwrites',
    bug: 'the create writes over an existing key (no create-if-absent)',
    edits: [
      {
        file: COMMANDS,
        find: "const args = ttl > 0 ? [key, value, 'EX', String(ttl), 'NX'] : [key, value, 'NX'];",
        replace: "const args = ttl > 0 ? [key, value, 'EX', String(ttl)] : [key, value];",
      },
      {
        file: COMMANDS,
        find: "? this.#redis.set(key, valueBytes(value), 'EX', ttl, 'NX')\n          : this.#redis.set(key, valueBytes(value), 'NX');",
        replace:
          "? this.#redis.set(key, valueBytes(value), 'EX', ttl)\n          : this.#redis.set(key, valueBytes(value));",
      },
    ],
    tests: [T.options],
  },
  {
    name: 'create-collision-taken-for-replay',
    bug: "a create that finds its id taken answers 'stored' without checking the stored value is its own",
    edits: one(COMMANDS, '(stored?.equals(valueBytes(value)) ? 1 : 0)', '1'),
    tests: [T.options],
  },
  {
    name: 'move-ignores-gone',
    bug: "rotate.lua's move ignores prepare's -1: it goes ahead on a session logged out or moved meanwhile",
    edits: one(
      ROTATE,
      '  local plan, code = prepare(old, 1)\n  if not plan then return code end\n',
      '  local plan, code = prepare(old, 1)\n  if code == -2 then return code end\n',
    ),
    tests: [T.concurrency, T.races],
  },
  {
    name: 'move-no-marker',
    bug: 'the move leaves no marker at the old id: a concurrent logout does not find the session',
    edits: one(ROTATE, '    leaveMarker(old, new, plan, false)\n', "    redis.call('DEL', old)\n"),
    tests: [T.contract, T.races],
  },
  {
    name: 'marker-never-expires',
    bug: "the move's marker is left without a TTL: a key per regenerate, kept for ever",
    edits: one(APPLY, ", 'EX', (plan.t and plan.t > 0) and plan.t or 86400)\n", ')\n'),
    tests: [T.session, T.contract],
  },
  {
    name: 'replace-keeps-old',
    bug: 'the replace stores the new session without ending the old one',
    edits: one(ROTATE, 'endChain(old)\n', ''),
    tests: [T.contract],
  },
  {
    name: 'logout-ignores-marker',
    bug: 'the logout ends only the key it loaded, not following the m marker',
    edits: one(CHAIN, '    key = moved\n', '    return\n'),
    tests: [T.races],
  },

  // -- include/apply.lua (docs/design.md, "Concurrency") ----------------------------------------
  {
    name: 'patch-resurrects',
    bug: 'a patch applies to a session that no longer exists (ended or moved), recreating it',
    edits: one(
      APPLY,
      '  if not value then return nil, -1 end -- no session here (deleted, expired, or legacy)\n  local moved = marker(value)\n  if moved then return nil, replayed(moved.o, op) or -1 end -- moved by a regenerate\n',
      "  if not value or marker(value) then value = '2 ' .. b36(tonumber(ARGV[b + 1])) .. '   ' .. cmsgpack.pack({}) end\n",
    ),
    tests: [T.concurrency, T.races],
  },
  {
    name: 'expiry-not-moved-by-write',
    bug: 'a write never moves x and the TTL from the stored timeout',
    edits: one(APPLY, '  if t and t > 0 then x = now + t end\n', ''),
    tests: [T.parity, T.races],
  },
  {
    name: 'timeout-intent-ignored',
    bug: "the script ignores adjustTimeout()'s intent: the stored timeout never changes",
    edits: one(
      APPLY,
      "  if intent == '0' then ts = '' elseif intent ~= '' then ts = b36(tonumber(intent)) end\n",
      "  if intent == '0' then ts = '' end\n",
    ),
    tests: [T.parity],
  },
  {
    name: 'prune-ignores-data-left',
    bug: 'with invalidateEmptySession the patch deletes the session whether or not data is left (a concurrent write lost)',
    edits: one(
      APPLY,
      "      if field ~= 'o' and field ~= 'l' and field ~= 'h' and field ~= 'i' then",
      '      if false then',
    ),
    tests: [T.contract, T.races],
  },
  {
    name: 'size-check-skipped',
    bug: 'the script never refuses growth past maxSize',
    edits: one(
      APPLY,
      'if after > before and after > tonumber(ARGV[b + 3]) then return nil, -2 end',
      'if false then return nil, -2 end',
    ),
    tests: [T.parity],
  },
  {
    name: 'maxsize-script-off-by-1000',
    bug: "the script's maxSize comparison allows 1000 bytes too many",
    edits: one(APPLY, 'after > tonumber(ARGV[b + 3])', 'after > tonumber(ARGV[b + 3]) + 1000'),
    tests: [T.parity],
  },
  {
    name: 'size-check-refuses-shrink',
    bug: 'the script refuses any write of a session over maxSize, even one that shrinks it',
    edits: one(
      APPLY,
      'if after > before and after > tonumber(ARGV[b + 3]) then',
      'if after > tonumber(ARGV[b + 3]) then',
    ),
    tests: [T.parity],
  },
  {
    name: 'pop-takes-whole-queue',
    bug: 'a pop removes the stored queue whole, not only the frames it loaded',
    edits: one(
      APPLY,
      'if from then text = string.sub(text, 1, from - 1) .. string.sub(text, to + 1) end',
      "if from then text = '' end",
    ),
    tests: [T.races],
  },
  {
    name: 'first-deletion-skipped',
    bug: 'an off-by-one in the deletions: the first field to delete is kept',
    edits: one(
      APPLY,
      'for i = delAt, #ARGV do map[ARGV[i]] = nil end',
      'for i = delAt + 1, #ARGV do map[ARGV[i]] = nil end',
    ),
    tests: [T.contract],
  },
  // -- a user's sessions (docs/design.md, "A user's sessions") -----------------------------------
  {
    name: 'refresh-leaves-index',
    bug: "the load's refresh does not stretch the user index: the index expires before a session kept alive by reads",
    edits: one(LOAD, 'if ix then stretch(ix, target - now, ARGV[3]) end', ''),
    tests: [T.users],
  },
  {
    name: 'logout-leaves-entry',
    bug: 'ending a session leaves its entry in the user index (list shows a logged-out device)',
    edits: one(CHAIN, '      if not m then delistValue(value) end\n', ''),
    tests: [T.users],
  },
  {
    name: 'move-keeps-old-entry',
    bug: "a regenerate does not re-point the index entry: revoke ends the old id's marker, not the session",
    edits: one(APPLY, '  if index.to ~= index.from or moved then', '  if index.to ~= index.from then'),
    tests: [T.users],
  },
  {
    name: 'list-shows-dead',
    bug: "list does not check the entry's session: expired and deleted sessions are listed",
    edits: one(USERS, '    if session then\n', '    if true then\n'),
    tests: [T.users],
  },
  {
    name: 'replace-ignores-elsewhere',
    bug: 'a replace does not end the session a login was moving into another Cluster slot: the logged-in session survives the invalidate()',
    edits: one(ROTATE, 'return elsewhere or 1\n', 'return 1\n'),
    tests: [T.users],
  },
];

// ---------------------------------------------------------------------------------------------
// Running

/** A test file that runs longer than this is killed (with every process it started) and fails. */
const FILE_TIMEOUT_MS = 300_000;
const TEST_COMMAND = ['--import', 'tsx', '--test', '--test-timeout=120000'];

interface FileResult {
  readonly file: string;
  readonly outcome: 'pass' | 'fail' | 'timeout';
  readonly ms: number;
  /** The first failing test's name, when it failed. */
  readonly firstFailure?: string;
}

interface Args {
  only: Set<string>;
  list: boolean;
  keep: boolean;
  budgetMs: number;
}

function parseArgs(argv: string[]): Args {
  const args: Args = { only: new Set(), list: false, keep: false, budgetMs: 40 * 60_000 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    const value = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === '--only') for (const n of value().split(',')) args.only.add(n.trim());
    else if (a.startsWith('--only=')) for (const n of a.slice(7).split(',')) args.only.add(n.trim());
    else if (a === '--list') args.list = true;
    else if (a === '--keep') args.keep = true;
    else if (a === '--budget') args.budgetMs = Number(value()) * 60_000;
    else throw new Error(`unknown argument ${a} (known: --only name[,name], --list, --keep, --budget minutes)`);
  }
  if (!(args.budgetMs > 0)) throw new Error('--budget must be a number of minutes above 0');
  return args;
}

/** The files of the repository: tracked, and new ones not ignored (a test being written counts). */
function repositoryFiles(): string[] {
  const out = execFileSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], {
    cwd: ROOT,
    encoding: 'utf8',
  });
  const files = new Set(
    out.split('\0').filter((f) => f !== '' && f !== 'node_modules' && !f.startsWith('node_modules/')),
  );
  return [...files].filter((f) => existsSync(join(ROOT, f)));
}

function occurrences(text: string, find: string): number {
  let n = 0;
  for (let at = text.indexOf(find); at >= 0; at = text.indexOf(find, at + 1)) n++;
  return n;
}

/** Problems with the list itself: a `find` not found exactly once, or an unknown test file. */
function checkList(mutants: readonly Mutant[]): string[] {
  const problems: string[] = [];
  const names = new Set<string>();
  for (const m of mutants) {
    if (names.has(m.name)) problems.push(`${m.name}: the name is used twice`);
    names.add(m.name);
    if (m.tests.length === 0) problems.push(`${m.name}: no test files`);
    for (const t of m.tests) if (!existsSync(join(ROOT, t))) problems.push(`${m.name}: no test file ${t}`);
    for (const e of m.edits) {
      const path = join(ROOT, e.file);
      if (!existsSync(path)) {
        problems.push(`${m.name}: no file ${e.file}`);
        continue;
      }
      const n = occurrences(readFileSync(path, 'utf8'), e.find);
      if (n !== 1)
        problems.push(
          `${m.name}: its find text occurs ${n} times in ${e.file} (must be exactly once): ${JSON.stringify(e.find.slice(0, 120))}`,
        );
      if (e.find === e.replace) problems.push(`${m.name}: find and replace are the same`);
    }
  }
  return problems;
}

/** A fresh copy of the repository, `node_modules` linked, the edits applied. */
function scratchCopy(files: readonly string[], edits: readonly Edit[], label: string): string {
  const dir = mkdtempSync(join(tmpdir(), `ksm-mutant-${label}-`));
  scratch = dir;
  for (const f of files) {
    mkdirSync(dirname(join(dir, f)), { recursive: true });
    copyFileSync(join(ROOT, f), join(dir, f));
  }
  symlinkSync(realpathSync(join(ROOT, 'node_modules')), join(dir, 'node_modules'), 'dir');
  for (const e of edits) {
    const path = join(dir, e.file);
    const text = readFileSync(path, 'utf8');
    writeFileSync(
      path,
      text.replace(e.find, () => e.replace),
    );
  }
  if (edits.some((e) => e.file.endsWith('.lua'))) {
    const generated = join(dir, 'src/store/scripts.generated.ts');
    const before = readFileSync(generated, 'utf8');
    execFileSync(process.execPath, ['scripts/embed-lua.mjs'], { cwd: dir, stdio: 'inherit' });
    if (readFileSync(generated, 'utf8') === before)
      throw new Error(`${label}: re-embedding the Lua scripts changed nothing`);
  }
  return dir;
}

let running: { pid: number } | null = null;
/** The scratch copy in use, removed if the run is interrupted. */
let scratch: string | null = null;

/** The first failing test of a `node --test` spec/TAP output. */
function firstFailure(output: string): string | undefined {
  const lines = output.split('\n');
  // TAP (the reporter when stdout is not a terminal): `not ok N - name`, innermost first.
  for (const line of lines) {
    const m = /^\s*not ok \d+ - (.*)$/.exec(line);
    if (m && !/^\s*not ok \d+ - .*\.test\.ts$/.test(line)) return (m[1] as string).trim();
  }
  return undefined;
}

function runTestFile(dir: string, file: string, log: string): Promise<FileResult> {
  const start = Date.now();
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [...TEST_COMMAND, file], {
      cwd: dir,
      detached: true, // its own process group: a timeout kills the test and the redis-servers it started
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, FORCE_COLOR: '0' },
    });
    running = { pid: child.pid as number };
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup(child.pid as number);
    }, FILE_TIMEOUT_MS);
    child.on('close', (code) => {
      clearTimeout(timer);
      running = null;
      writeFileSync(log, output);
      const ms = Date.now() - start;
      if (timedOut) resolve({ file, outcome: 'timeout', ms });
      else if (code === 0) resolve({ file, outcome: 'pass', ms });
      else resolve({ file, outcome: 'fail', ms, firstFailure: firstFailure(output) });
    });
  });
}

function killGroup(pid: number): void {
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

const seconds = (ms: number): string => `${(ms / 1000).toFixed(1)} s`;
const short = (file: string): string =>
  file
    .replace(/^test\//, '')
    .replace(/\.test\.ts$/, '')
    .replaceAll('/', '-');

function table(rows: string[][]): string {
  const widths = (rows[0] as string[]).map((_, c) => Math.max(...rows.map((r) => (r[c] as string).length)));
  const line = (r: string[]) => `| ${r.map((cell, c) => cell.padEnd(widths[c] as number)).join(' | ')} |`;
  return [
    line(rows[0] as string[]),
    `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`,
    ...rows.slice(1).map(line),
  ].join('\n');
}

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2));
  const unknown = [...args.only].filter((n) => !MUTANTS.some((m) => m.name === n));
  if (unknown.length > 0) {
    console.error(`no mutant named ${unknown.join(', ')}; see --list`);
    return 1;
  }
  const selected = args.only.size > 0 ? MUTANTS.filter((m) => args.only.has(m.name)) : MUTANTS;
  if (args.list) {
    console.log(
      table([
        ['mutant', 'file', 'tests', 'bug'],
        ...selected.map((m) => [m.name, m.edits.map((e) => e.file).join(', '), m.tests.map(short).join(', '), m.bug]),
      ]),
    );
    return 0;
  }
  // The whole list is checked, whatever --only says: a rotten entry fails every run.
  const problems = checkList(MUTANTS);
  if (problems.length > 0) {
    console.error('The mutant list does not match the code any more (scripts/mutants.ts):');
    for (const p of problems) console.error(`  ${p}`);
    return 1;
  }

  const started = Date.now();
  const files = repositoryFiles();
  const kept: string[] = [];
  const overBudget = () => Date.now() - started > args.budgetMs;

  // The unmutated copy must pass every test file any selected mutant relies on.
  const baselineFiles = [...new Set(selected.flatMap((m) => m.tests))];
  console.log(`unmutated copy: ${baselineFiles.length} test files`);
  const baseDir = scratchCopy(files, [], 'unmutated');
  let baseOk = true;
  for (const file of baselineFiles) {
    const r = await runTestFile(baseDir, file, join(baseDir, `${short(file)}.log`));
    console.log(`  ${file}: ${r.outcome} (${seconds(r.ms)})`);
    if (r.outcome !== 'pass') {
      baseOk = false;
      console.error(
        `    the unmutated copy fails ${file}${r.firstFailure ? `: ${r.firstFailure}` : ''}; log: ${join(baseDir, `${short(file)}.log`)}`,
      );
    }
  }
  if (!baseOk) {
    console.error('The tests fail without any mutant: fix them first (every mutant would look caught).');
    return 1;
  }
  if (!args.keep) rmSync(baseDir, { recursive: true, force: true });
  const baselineMs = Date.now() - started;

  const rows: string[][] = [['mutant', 'caught by', 'time']];
  const survivors: string[] = [];
  const details: string[] = [];
  for (const [i, m] of selected.entries()) {
    if (overBudget()) {
      console.error(`over the time budget (${seconds(args.budgetMs)}): ${selected.length - i} mutants not run`);
      survivors.push(...selected.slice(i).map((x) => `${x.name} (not run)`));
      break;
    }
    const t0 = Date.now();
    const dir = scratchCopy(files, m.edits, m.name);
    const results: FileResult[] = [];
    for (const file of m.tests) results.push(await runTestFile(dir, file, join(dir, `${short(file)}.log`)));
    const caught = results.filter((r) => r.outcome !== 'pass');
    const ms = Date.now() - t0;
    const by = caught.map((r) => (r.outcome === 'timeout' ? `${short(r.file)} (timeout)` : short(r.file)));
    console.log(
      `[${i + 1}/${selected.length}] ${m.name}: ${caught.length > 0 ? `caught by ${by.join(', ')}` : 'SURVIVED'} (${seconds(ms)})`,
    );
    for (const r of caught) if (r.firstFailure) details.push(`${m.name} / ${short(r.file)}: ${r.firstFailure}`);
    rows.push([
      m.name,
      caught.length > 0 ? by.join(', ') : `SURVIVED (ran ${m.tests.map(short).join(', ')})`,
      seconds(ms),
    ]);
    if (caught.length === 0) {
      survivors.push(m.name);
      kept.push(dir);
      console.log(`    scratch copy kept: ${dir}`);
    } else if (args.keep) kept.push(dir);
    else rmSync(dir, { recursive: true, force: true });
  }

  console.log(`\n${table(rows)}\n`);
  if (details.length > 0) console.log(`First failing test of each catching file:\n  ${details.join('\n  ')}\n`);
  console.log(
    `unmutated run ${seconds(baselineMs)}; total ${seconds(Date.now() - started)} for ${selected.length} mutants`,
  );
  if (kept.length > 0 && args.keep) console.log(`scratch copies kept:\n  ${kept.join('\n  ')}`);
  if (survivors.length > 0) {
    console.error(`\n${survivors.length} mutant(s) survived: ${survivors.join(', ')}`);
    return 1;
  }
  console.log(`all ${selected.length} mutants caught`);
  return 0;
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (running) killGroup(running.pid);
    if (scratch) rmSync(scratch, { recursive: true, force: true });
    process.exit(130);
  });
}

process.exitCode = await main().catch((err: unknown) => {
  console.error(err);
  return 1;
});
