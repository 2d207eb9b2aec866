-- rotate.lua: a session under a new id, the old id ended, in one command: regenerate() ("move"), or
-- invalidate() followed by new data ("replace").
--
-- KEYS[1]  the old session key
-- KEYS[2]  the new session key, never overwritten (on Cluster it shares the old key's hash tag)
-- ARGV[1]  "move": the stored session itself moves, then this request's intent applies there, as
--          patch.lua applies it (ARGV[2..] as include/apply.lua describes, b = 1); a marker left
--          at the old id leads a logout that loaded it to the new one
--          "replace": the old session ends with every id it was moved to, and a new one is stored
--          from ARGV[2] (TTL in seconds, or 0 for none), ARGV[3] (the operation id, include/op.lua)
--          and ARGV[4..] (every field with c t x v s)
--
-- Returns  1 done; 0 the new key already existed (nothing changed: the caller draws another id);
--          "move" only: 2 moved and left empty, so deleted; -1 the old session no longer exists
--          (logged out, expired or moved meanwhile) and is not resurrected; -2 too large
--
-- Atomic so that no request ever sees both keys or neither: the old id dies exactly when the new
-- one is born (session fixation defence at login). Moving the stored hash with RENAME, rather than
-- writing this request's copy of it, keeps what concurrent requests wrote to it meanwhile.
--@include op.lua
--@include apply.lua
--@include chain.lua
local old, new = KEYS[1], KEYS[2]
if ARGV[1] == 'move' then
  local plan, code = prepare(old, 1)
  if not plan then return code end
  if redis.call('EXISTS', new) == 1 then return 0 end
  redis.call('RENAME', old, new)
  local t = tonumber(redis.call('HGET', new, 't'))
  local done = commit(new, 1, plan)
  if done == 2 then
    redis.call('DEL', old)
  else
    -- The marker also remembers the operation: a replay of this move finds it here.
    redis.call('HSET', old, 'm', new, 'o', ARGV[9] .. '=1')
    redis.call('EXPIRE', old, (t and t > 0) and t or 86400)
  end
  return done
end
if redis.call('EXISTS', new) == 1 then return replayed(new, ARGV[3]) or 0 end
endChain(old)
redis.call('HSET', new, 'o', ARGV[3] .. '=1')
for i = 4, #ARGV, 1000 do
  redis.call('HSET', new, unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
local ttl = tonumber(ARGV[2])
if ttl > 0 then redis.call('EXPIRE', new, ttl) end
return 1
