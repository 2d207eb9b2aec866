-- create.lua: store a new session, never over an existing one (create-if-absent: docs/design.md, "What a request costs").
--
-- KEYS[1]  the new session key
-- ARGV[1]  TTL in seconds, or 0 for none (no timeout, or LRU mode)
-- ARGV[2]  the operation id (include/op.lua): a replay of this create answers 1, not a collision
-- ARGV[3..] field, value pairs: metadata (c, t, x, v, s) and every data field
--
-- Returns  1 created; 0 the key already existed (an id collision: the caller draws a new id)
--
-- Atomic so that two requests drawing the same id cannot both believe they created it.
--@include op.lua
local key = KEYS[1]
if redis.call('EXISTS', key) == 1 then return replayed(key, ARGV[2]) or 0 end
redis.call('HSET', key, 'o', ARGV[2] .. '=1')
-- HSET in slices: Lua's unpack() has a stack limit of a few thousand values.
for i = 3, #ARGV, 1000 do
  redis.call('HSET', key, unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
local ttl = tonumber(ARGV[1])
if ttl > 0 then redis.call('EXPIRE', key, ttl) end
return 1
