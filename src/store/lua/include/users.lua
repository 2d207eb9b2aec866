-- users.lua (included after op.lua and layout.lua): a user's index of sessions, kept by the same
-- script as the write that changes it (docs/design.md, "A user's sessions").
--
-- The index of a user is a hash at a key derived from the user (never the user id itself): handle ->
-- the key of the session. A session indexed there holds the index key in its header (layout.lua),
-- and its handle (`h`, an opaque random name that stays with the session when it moves) and what
-- `sessionInfo` described at login (`i`) in its map. On Redis Cluster the sessions of a user live in
-- their index's slot (src/store/commands.ts, drawId), so every script here stays in one slot.
--
-- The index lives at least as long as the sessions it names: its TTL is stretched whenever one of
-- them is written or refreshed (none while one never expires; none in LRU mode, `setRedisTtl`
-- off). Entries of sessions that ended without a script seeing it (expired, evicted) are pruned
-- whenever the index is read or an entry is added, and swept by any other write of the user's.

-- Make the index `ix` live at least `ttl` more seconds (nil: as long as a session that never expires).
-- `keepTtl` is the `setRedisTtl` option ("1"): in LRU mode nothing has a TTL.
local function stretch(ix, ttl, keepTtl)
  if keepTtl ~= '1' then return end
  if not ttl then
    redis.call('PERSIST', ix)
    return
  end
  local left = redis.call('TTL', ix)
  if left >= 0 and left < ttl then redis.call('EXPIRE', ix, ttl) end
end

-- Whether `value` (what GET read at an index entry's key) is a live session indexed in `ix` under
-- `handle`. Returns the session's header numbers and map for list, or nil, and true when the value
-- is a session of this index past its expiry or its absolute timeout (one its load would end).
local function member(value, ix, handle, now, absolute)
  if type(value) ~= 'string' then return nil end
  local vs, cs, ts, xs, at = string.match(value, HEADER)
  if not vs then return nil end
  local own, from = indexOf(value, at)
  if own ~= ix then return nil end
  local c, x = tonumber(cs, 36), tonumber(xs, 36)
  if (x and now > x) or (absolute >= 0 and c and now >= c + absolute) then return nil, true end
  local map = unpacked(string.sub(value, from))
  if not map or map.h ~= handle then return nil end
  return { c = c, t = tonumber(ts, 36), x = x, map = map }
end

-- Remove from `ix` the entries of sessions that are gone, and the index when it is left empty; a
-- session past its expiry or absolute timeout is ended as its load would end it (in LRU mode, or
-- after absoluteTimeout was lowered, no TTL would). Returns the live entries as { handle, key,
-- session } (see member()).
local function prune(ix, now, absolute)
  local all = redis.call('HGETALL', ix)
  local live = {}
  for i = 1, #all, 2 do
    local handle, key = all[i], all[i + 1]
    local session, dead = member(redis.pcall('GET', key), ix, handle, now, absolute)
    if session then
      live[#live + 1] = { handle, key, session }
    else
      redis.call('HDEL', ix, handle)
      if dead then redis.call('DEL', key) end
    end
  end
  if #live == 0 and #all > 0 then redis.call('DEL', ix) end
  return live
end

-- Remove from `ix` the entries whose key is gone (a TTL ran out, an eviction): what any write of one
-- of the user's sessions does, cheaply (no session is read; prune() reads them).
local function sweep(ix)
  local all = redis.call('HGETALL', ix)
  for i = 1, #all, 2 do
    if redis.call('EXISTS', all[i + 1]) == 0 then redis.call('HDEL', ix, all[i]) end
  end
end

-- Name the session at `key` in the index `ix` under `handle`, the index living as long as it.
local function enlist(ix, handle, key, ttl, keepTtl, now, absolute)
  local fresh = redis.call('EXISTS', ix) == 0
  redis.call('HSET', ix, handle, key)
  if fresh then
    if ttl and keepTtl == '1' then redis.call('EXPIRE', ix, ttl) end
  else
    stretch(ix, ttl, keepTtl)
    prune(ix, now, absolute)
  end
end

-- Take the entry `handle` out of the index `ix` (the index goes when it is left empty).
local function delist(ix, handle)
  if not ix or type(handle) ~= 'string' then return end
  redis.call('HDEL', ix, handle)
  if redis.call('HLEN', ix) == 0 then redis.call('DEL', ix) end
end

-- Take a session value that is about to be deleted out of its user's index, if it is in one.
local function delistValue(value)
  if type(value) ~= 'string' then return end
  local vs, _, _, _, at = string.match(value, HEADER)
  if not vs then return end
  local ix, from = indexOf(value, at)
  if not ix then return end
  local map = unpacked(string.sub(value, from))
  if map then delist(ix, map.h) end
end

-- Store a whole new session `value` at `key` (its TTL `ttl` seconds, 0 for none) and, when it is
-- indexed (`ix`, not ""), name it in its user's index under `handle`.
local function place(key, ttl, value, ix, handle, keepTtl, now, absolute)
  if ttl > 0 then redis.call('SET', key, value, 'EX', ttl) else redis.call('SET', key, value) end
  if ix ~= '' then enlist(ix, handle, key, ttl > 0 and ttl or nil, keepTtl, now, absolute) end
end
