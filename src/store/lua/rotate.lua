-- rotate.lua: move a session to a new id, deleting the old key, in one command (SPEC §5:
-- regenerate(), or invalidate() followed by new data).
--
-- KEYS[1]  the old session key
-- KEYS[2]  the new session key, never overwritten
-- ARGV[1]  mode: "move" (regenerate: the stored session itself moves, then this request's changes
--          apply, as patch.lua applies them) or "fresh" (after invalidate: the old session is
--          deleted and a new one is created from the fields given)
-- ARGV[2]  TTL in seconds, or 0 for none
-- ARGV[3]  n, the number of field, value pairs that follow
-- ARGV[4 .. 3+2n]  field, value pairs to set: for "move" the changed fields (and x), for "fresh"
--          every field with the metadata (c, t, x, v)
-- ARGV[4+2n ..]    "move" only: fields to delete
--
-- Returns  1 rotated; 0 the new key already existed (nothing changed: the caller draws another
--          id); -1 "move" only: the old session no longer exists (logged out or expired meanwhile)
--          and is not resurrected under the new id
--
-- Atomic so that no request ever sees both keys or neither: the old id dies exactly when the new
-- one is born (session fixation defence at login). Moving the stored hash with RENAMENX, rather
-- than writing this request's copy of it, keeps what concurrent requests wrote to it meanwhile
-- (SPEC §6: no lost updates).
local old, new = KEYS[1], KEYS[2]
local n = tonumber(ARGV[3])
local last = 3 + 2 * n
if ARGV[1] == 'move' then
  if redis.call('EXISTS', old) == 0 then return -1 end
  if redis.call('RENAMENX', old, new) == 0 then return 0 end
else
  if redis.call('EXISTS', new) == 1 then return 0 end
  redis.call('DEL', old)
end
-- Both modes then write the new key alike ("fresh" has no fields to delete).
for i = 4, last, 1000 do
  redis.call('HSET', new, unpack(ARGV, i, math.min(i + 999, last)))
end
for i = last + 1, #ARGV, 1000 do
  redis.call('HDEL', new, unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
local ttl = tonumber(ARGV[2])
if ttl > 0 then redis.call('EXPIRE', new, ttl) elseif ttl < 0 then redis.call('PERSIST', new) end
return 1
