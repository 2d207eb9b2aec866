-- rotate.lua: a session under a new id, the old id ended, in one command: regenerate() ("move"), or
-- invalidate() followed by new data ("replace"). A user's index follows (include/users.lua).
--
-- KEYS[1]  the old session key
-- KEYS[2]  the new session key, never overwritten (on Cluster it shares the old key's hash tag)
-- ARGV[1]  "move": the stored session itself moves, and this request's intent applies to it, as
--          patch.lua applies it (ARGV[2..] as include/apply.lua describes, b = 1); a marker left
--          at the old id leads a logout that loaded it to the new one
--          "replace": the old session ends with every id it was moved to, and a new one is stored:
--          ARGV[2] its TTL in seconds (0: none), ARGV[3] the operation id (include/op.lua),
--          ARGV[4] the value (include/layout.lua), which records that operation; ARGV[5] its
--          user index key, or "" (include/users.lua), ARGV[6] its handle, ARGV[7] "1" to keep Redis
--          TTLs, ARGV[8] now, ARGV[9] absoluteTimeout or -1
--
-- Returns  1 done; 0 the new key already existed (nothing changed: the caller draws another id);
--          "replace" only: the key in another Cluster slot a login was moving the old session to
--          (include/chain.lua): done, and the caller ends that one too (end.lua, "tombstone");
--          "move" only: 2 moved and left empty, so deleted; -1 the old session no longer exists
--          (logged out, expired or moved meanwhile) and is not resurrected; -2 too large
--
-- Atomic so that no request ever sees both keys or neither: the old id dies exactly when the new
-- one is born (session fixation defence at login). The move applies the intent to the stored
-- session, not this request's copy of it, so what concurrent requests wrote meanwhile is kept.
--@include layout.lua
--@include op.lua
--@include users.lua
--@include apply.lua
--@include chain.lua
local old, new = KEYS[1], KEYS[2]

if ARGV[1] == 'move' then
  local plan, code = prepare(old, 1)
  if not plan then return code end
  if redis.call('EXISTS', new) == 1 then return 0 end
  local done = commit(new, 1, plan)
  if done == 2 then
    redis.call('DEL', old)
  else
    leaveMarker(old, new, plan, false)
  end
  return done
end
if redis.call('EXISTS', new) == 1 then return taken(new, ARGV[3]) end
local elsewhere = endChain(old)
place(new, tonumber(ARGV[2]), ARGV[4], ARGV[5], ARGV[6], ARGV[7], tonumber(ARGV[8]), tonumber(ARGV[9]))
return elsewhere or 1
