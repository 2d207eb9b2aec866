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
-- reach a session's node in order, on one connection, and a resent command goes before any later
-- one; but not always on a Redis Cluster whose slots move: a command redirected (MOVED) is sent
-- again after those the client sent since straight to the slot's new node. So `o` keeps one entry
-- per writer, `<op>=<code>[/<mask>]`: its last operation, the code it answered, and which of the
-- WINDOW operations before it ran on this session (bit i: the counter i + 1 below the last, in base
-- 36, left out when none did). An older operation is a replay only if it ran; one that did not (it
-- was overtaken on its way) is applied now. One older than the window is taken for a replay: the
-- entry cannot tell. Other writers' operations cannot push an entry out; at most 16 writers are
-- remembered (the least recent goes).
local WINDOW = 52 -- bits a double holds exactly

-- A counter or a mask: base-36 digits, at most 11 (what b36 writes for up to 2^53), read one digit
-- at a time in doubles; nil for anything else. Not tonumber(text, 36): Lua 5.1 reads that through
-- C's strtoul, which stops at 2^32 - 1 on a 32-bit build of Redis, where a mask with any of its upper
-- 20 bits set would read as its lower 32 all set (overtaken writes taken for replays) and a counter
-- past 2^32 as every later operation's.
local function number36(text)
  if #text == 0 or #text > 11 then return nil end
  local n = 0
  for i = 1, #text do
    local digit = tonumber(string.sub(text, i, i), 36)
    if not digit then return nil end
    n = n * 36 + digit
  end
  return n
end

-- This writer's entry: its last operation's counter (and its text), code and mask.
local function lastOf(ops, prefix)
  local at = string.find(' ' .. ops, ' ' .. prefix, 1, true)
  if not at then return nil end
  local text, code, mask = string.match(ops, '^(%w+)=(%d)/?(%w*)', at + #prefix)
  if not text then return nil end
  return number36(text), tonumber(code), number36(mask) or 0, text
end

-- Whether bit `i` of `mask` is set (arithmetic: Lua's numbers are doubles, exact to 2^53).
local function ran(mask, i)
  return math.floor(mask / 2 ^ i) % 2 == 1
end

-- The code a first run of `op` answered, when `ops` (a session's or a marker's `o`) shows that it
-- ran already; nil when it did not. With `exact`, an operation older than the window counts as not
-- run (for a key a fresh id found taken: taking it for ours could hand a request someone else's).
local function replayed(ops, op, exact)
  if type(ops) ~= 'string' then return nil end
  local counter, code, mask = lastOf(ops, string.sub(op, 1, 8))
  local mine = number36(string.sub(op, 9))
  if not counter or not mine or mine > counter then return nil end
  if mine == counter then return code end
  local back = counter - mine
  -- Within the window the mask knows (only operations that answered 1 are remembered); one not run
  -- here was overtaken by a later one of its writer. Beyond it, `exact` says "not run".
  if back <= WINDOW then return ran(mask, back - 1) and 1 or nil end
  if exact then return nil end
  return 1
end

-- `ops` with `op` remembered, answered `code`: its writer's entry first. An operation newer than
-- the entry's last becomes it, the last moving into the mask; an older one (overtaken, applied now)
-- is marked in the mask.
local function record(ops, op, code)
  local prefix = string.sub(op, 1, 8)
  local mine = number36(string.sub(op, 9))
  local entry = op .. '=' .. code
  local counter, last, mask, text = lastOf(ops or '', prefix)
  if counter and mine then
    if mine > counter then
      local shift = mine - counter
      -- The bits that stay inside the window move up by `shift`; the last becomes bit shift - 1.
      mask = shift > WINDOW and 0 or (mask % 2 ^ (WINDOW - shift)) * 2 ^ shift + 2 ^ (shift - 1)
    elseif mine < counter then
      local back = counter - mine
      if back <= WINDOW and not ran(mask, back - 1) then mask = mask + 2 ^ (back - 1) end
      entry = prefix .. text .. '=' .. last
    end
    if mask > 0 then entry = entry .. '/' .. b36(mask) end
  end
  local entries = { entry }
  for other in string.gmatch(ops or '', '%S+') do
    if string.sub(other, 1, 8) ~= prefix and #entries < 16 then entries[#entries + 1] = other end
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
