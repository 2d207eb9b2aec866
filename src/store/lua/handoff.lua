-- handoff.lua: the first half of a move into another Redis Cluster slot: a login that puts the
-- session in its user's slot, where its user's index is (include/users.lua). Two slots cannot be one
-- script, so this move is two commands: this one, on the old key's slot, then create.lua on the new
-- key's slot with the value this one returns.
--
-- KEYS[1]  the old session key
-- ARGV[1]  the new session key (in another slot: named, never touched here)
-- ARGV[2..] this request's intent, as include/apply.lua describes it (b = 1)
--
-- Returns  {1, value, ttl}  the intent applied to the stored session; the old key now holds a
--                           marker to the new one (flagged `x`: in another slot); the caller stores
--                           `value` at the new key with `ttl` seconds (0: none, as in LRU mode)
--                           by create.lua
--          {code}           as patch.lua answers (-1 gone, -2 too large, 2 emptied and deleted), or 3:
--                           this same handoff ran already and its reply was lost: the value is not
--                           kept, so the session is lost (the login answers as for a logout)
--
-- A logout that loaded the old id and comes after this finds the marker, ends the old key and
-- returns the new key, and the caller ends that one with a tombstone (end.lua): whichever of the
-- logout's second command and create.lua comes first, the session does not survive the logout.
--@include layout.lua
--@include op.lua
--@include users.lua
--@include apply.lua
local old, new = KEYS[1], ARGV[1]
local plan, code = prepare(old, 1)
if not plan then
  if code == 1 then return {3} end -- a replay: the value it returned is gone
  return {code}
end
if plan.empty then return {commit(old, 1, plan)} end
local index = plan.index
if index.from then delist(index.from, index.handle) end
-- LRU mode (setRedisTtl off, ARGV[3] "0"): the session keeps no Redis TTL at its new key either.
local ttl = (ARGV[3] == '1' and plan.ttl) and math.max(1, plan.ttl) or 0
leaveMarker(old, new, plan, true)
return {1, plan.value, ttl}
