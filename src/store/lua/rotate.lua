-- rotate.lua: move a session to a new id: delete the old key and create the new one, in one
-- command (SPEC §5: regenerate(), or invalidate() followed by new data).
--
-- KEYS[1]  the old session key, deleted
-- KEYS[2]  the new session key, created only if absent
-- ARGV[1]  TTL in seconds, or 0 for none
-- ARGV[2..] field, value pairs: metadata (c, t, x, v) and every data field
--
-- Returns  1 rotated; 0 the new key already existed (the old one is deleted all the same; the
--          caller draws a new id and creates it)
--
-- Atomic so that no request ever sees both keys or neither: the old id dies exactly when the new
-- one is born (session fixation defence at login).
redis.call('DEL', KEYS[1])
local key = KEYS[2]
if redis.call('EXISTS', key) == 1 then return 0 end
for i = 2, #ARGV, 1000 do
  redis.call('HSET', key, unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
local ttl = tonumber(ARGV[1])
if ttl > 0 then redis.call('EXPIRE', key, ttl) end
return 1
