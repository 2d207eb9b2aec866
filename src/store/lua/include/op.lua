-- op.lua (included after layout.lua): make a write safe to run twice. When the connection drops after Redis ran a
-- script but before its reply arrived, ioredis sends the script again (autoResendUnfulfilledCommands).
-- Each write carries its own operation id; the session remembers operations as `<op>=<code>` in its
-- field `o` (a marker in its own), and a replay answers the recorded code instead of acting again (a
-- second replace, a move from a marker, a flash appended twice). A write that emptied and so deleted
-- the session leaves nothing to remember it by: its replay finds no session and answers "gone" (the
-- session is ended either way; only the cookie is cleared later, by its next load).
--
-- An operation id is its writer's 8-character prefix (one per store, random) and a counter in base
-- 36 that never wraps (a counter that restarted would pass for a replay of its old operations), one
-- per attempt (a retry under a fresh id after a collision is a new operation). A writer's commands
-- reach a session's node in order, on one connection, and a resent command
-- goes before any later one: so `o` keeps one entry per writer, its last operation and code, and an
-- operation not newer than its writer's last is a replay. Other writers' operations cannot push it
-- out. At most 16 writers are remembered (the least recent goes).
local function lastOf(ops, prefix)
  local at = string.find(' ' .. ops, ' ' .. prefix, 1, true)
  if not at then return nil end
  local counter, code = string.match(ops, '^(%w+)=(%d)', at + #prefix)
  return tonumber(counter, 36), tonumber(code)
end

-- The code a first run of `op` answered, when `ops` (a session's or a marker's `o`) shows that it
-- ran already; nil when it did not. With `exact`, only this very operation counts (a key that an
-- older operation of the same writer wrote is no sign that this one ran).
local function replayed(ops, op, exact)
  if type(ops) ~= 'string' then return nil end
  local counter, code = lastOf(ops, string.sub(op, 1, 8))
  local mine = tonumber(string.sub(op, 9), 36)
  if not counter or not mine or mine > counter then return nil end
  -- The same operation answers its code; an older one of the same writer was handled before it.
  if mine == counter then return code end
  if exact then return nil end
  return 1
end

-- `ops` with `op` remembered as its writer's last operation, answered `code`.
local function record(ops, op, code)
  local prefix = string.sub(op, 1, 8)
  local entries = { op .. '=' .. code }
  for entry in string.gmatch(ops or '', '%S+') do
    if string.sub(entry, 1, 8) ~= prefix and #entries < 16 then entries[#entries + 1] = entry end
  end
  return table.concat(entries, ' ')
end

-- The answer of a write whose new key `key` is taken: what this same operation `op` answered when it
-- ran before (a replay after a lost reply: the value there records it), else 0 (an id collision:
-- the caller draws another id).
local function taken(key, op)
  local value = redis.pcall('GET', key)
  if type(value) ~= 'string' then return 0 end
  local m = marker(value)
  if m then return replayed(m.o, op, true) or 0 end
  local _, _, _, _, at = string.match(value, HEADER)
  if not at then return 0 end
  local _, from = indexOf(value, at)
  local map = unpacked(string.sub(value, from))
  if not map then return 0 end
  return replayed(map.o, op, true) or 0
end
