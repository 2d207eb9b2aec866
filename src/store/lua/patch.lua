-- patch.lua: apply one request's changes to a stored session: only the keys that changed.
--
-- KEYS[1]  the session key
-- ARGV[1]  TTL in seconds; 0 leaves the key's TTL alone (no timeout, or LRU mode); -1 removes it
--          (the session's timeout was adjusted to never)
-- ARGV[2]  n, the number of field, value pairs that follow
-- ARGV[3 .. 2+2n]  field, value pairs to set (changed data fields, and x when the expiry moves)
-- ARGV[3+2n ..]    fields to delete (data keys the request removed)
--
-- Returns  1 applied; 0 the session no longer exists and was not recreated
--
-- Atomic, and only what changed: two requests that change different keys of one session both
-- survive, whatever their interleaving; the same key: last writer wins (SPEC §6). A session deleted
-- meanwhile (logout in another tab, expiry) stays deleted: a write never resurrects it.
local key = KEYS[1]
local ttl = tonumber(ARGV[1])
-- With a TTL to set, EXPIRE itself says whether the key exists (0: it does not): one call fewer.
if ttl > 0 then
  if redis.call('EXPIRE', key, ttl) == 0 then return 0 end
elseif redis.call('EXISTS', key) == 0 then
  return 0
end
local last = 2 + 2 * tonumber(ARGV[2])
for i = 3, last, 1000 do
  redis.call('HSET', key, unpack(ARGV, i, math.min(i + 999, last)))
end
for i = last + 1, #ARGV, 1000 do
  redis.call('HDEL', key, unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
if ttl < 0 then redis.call('PERSIST', key) end
return 1
