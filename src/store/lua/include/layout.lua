-- layout.lua (included): a session as stored (docs/design.md, "Storage"): one string, a text header
-- the scripts read without decoding the rest, then every field in one MessagePack map packed by
-- Redis' built-in cmsgpack:
--
--   "2 <created> <timeout> <expiry> " .. map     (timeout and expiry empty: the session never expires)
--
-- The header's numbers are written in base 36 (digits, then lower-case letters): an epoch second
-- takes 6 characters instead of 10, and in a small session every byte counts (bench/README.md).
--
-- A session indexed under a user (the `userKey` option) has its user index's key right after the
-- header, as "~<length in base 36> <key>", before the map: the load finds it without decoding the
-- map, to keep the index alive as long as the session (include/users.lua).
--
-- A marker a regenerate leaves at the old id is "m " .. a map { m = the key the session moved to,
-- o = the session's `o`, the move last (include/op.lua) }. A hash is a session of the previous
-- layout (a field per key), which migrate() rewrites in place.
local HEADER = '^(%w+) (%w+) (%w*) (%w*) ()'

-- A tombstone: what end.lua leaves, on Redis Cluster, at the key a handoff (handoff.lua) was moving a
-- session to, so that the handoff's second half (create.lua) does not store it after a logout. It
-- leads nowhere, as a marker does.
local TOMBSTONE = 'e '
local DIGITS = '0123456789abcdefghijklmnopqrstuvwxyz'

-- Whether `n` is a whole number from 0 to 2^53, the only numbers a header holds.
local function whole(n)
  return type(n) == 'number' and n >= 0 and n <= 9007199254740992 and n == math.floor(n)
end

-- A whole number (see whole()) in base 36; tonumber(text, 36) reads it back. At most 11 digits: the
-- loop is bounded whatever it is given.
local function b36(n)
  local out = ''
  for _ = 1, 11 do
    local d = n % 36
    out = string.sub(DIGITS, d + 1, d + 1) .. out
    n = (n - d) / 36
    if n < 1 then break end
  end
  return out
end

-- A decimal number of the previous layout in base 36; nil when it is no whole number (a hash that
-- anything but 0.1 wrote: NaN, a negative or a fraction), '' when absent.
local function rebase(text)
  if text == nil then return '' end
  local n = tonumber(text)
  if not whole(n) then return nil end
  return b36(n)
end

-- The user index key of a session value whose header ends at `at`, or nil, and where its map starts.
-- A '~' not followed by a length is left for the map's decoding to refuse (no map starts with '~').
local function indexOf(value, at)
  if string.byte(value, at) ~= 126 then return nil, at end
  local len, from = string.match(value, '^~(%w+) ()', at)
  len = len and tonumber(len, 36)
  if not len or from + len > #value + 1 then return nil, at end
  return string.sub(value, from, from + len - 1), from + len
end

-- The index segment of a session value for user index key `ix` ('' for none).
local function indexPart(ix)
  if not ix then return '' end
  return '~' .. b36(#ix) .. ' ' .. ix
end

-- The value at `key` when it is a hash of the previous layout, rewritten in this one (its TTL kept):
-- a session of format 1 or a marker. Anything else (an older format, another type) is deleted and
-- false returned: a legacy payload.
local function migrate(key)
  local all = redis.pcall('HGETALL', key)
  if all.err or #all == 0 then
    redis.call('DEL', key)
    return false
  end
  local meta, map = {}, {}
  for i = 1, #all, 2 do
    local f = all[i]
    local header = f == 'c' or f == 't' or f == 'x' or f == 'v' or f == 's' or f == 'm'
    if header then meta[f] = all[i + 1] else map[f] = all[i + 1] end
  end
  local value
  local c, t, x = rebase(meta.c), rebase(meta.t), rebase(meta.x)
  if meta.m then
    value = 'm ' .. cmsgpack.pack({ m = meta.m, o = map.o })
  elseif meta.v == '1' and c and c ~= '' and t and x then
    value = '2 ' .. c .. ' ' .. t .. ' ' .. x .. ' ' .. cmsgpack.pack(map)
  else
    redis.call('DEL', key)
    return false
  end
  -- A Redis at maxmemory with noeviction refuses the SET: the session is still served from the hash,
  -- and migrated by a later command.
  local ttl = redis.call('PTTL', key)
  if ttl > 0 then redis.pcall('SET', key, value, 'PX', ttl) else redis.pcall('SET', key, value) end
  return value
end

-- The value at `key`: a string (a session, a marker, or something foreign), nil when there is none,
-- or false when it was a legacy payload, now deleted.
local function fetch(key)
  local value = redis.pcall('GET', key)
  if type(value) == 'table' then return migrate(key) end -- WRONGTYPE: a hash
  return value or nil -- a missing key reads as false in Redis' Lua
end

-- The map of a packed value, or nil when it is not one (a corrupt or foreign value: cmsgpack raises).
local function unpacked(text)
  local ok, map = pcall(cmsgpack.unpack, text)
  if ok and type(map) == 'table' then return map end
  return nil
end

-- The map of a marker value, or nil when `value` is no marker.
local function marker(value)
  if string.sub(value, 1, 2) ~= 'm ' then return nil end
  local map = unpacked(string.sub(value, 3))
  if map and type(map.m) == 'string' then return map end
  return nil
end

-- Bytes of a MessagePack string header for a string of `n` bytes (what cmsgpack writes).
local function strhead(n)
  if n < 32 then return 1 elseif n < 256 then return 2 elseif n < 65536 then return 3 end
  return 5
end

-- Bytes the fields of a packed map take, its own header and the operation record `ops` aside: what
-- maxSize limits, counted as src/store/layout.ts counts it for a create.
local function measure(packed, ops)
  local head = string.byte(packed, 1)
  local size = #packed - ((head == 0xde and 3) or (head == 0xdf and 5) or 1)
  if ops then size = size - 2 - strhead(#ops) - #ops end
  return size
end
