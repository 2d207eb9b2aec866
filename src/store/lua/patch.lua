-- patch.lua: apply one request's changes to a stored session: only the fields it changed, decided
-- against what is stored (include/apply.lua).
--
-- KEYS[1]  the session key
-- ARGV     the intent, as include/apply.lua describes it (b = 0)
--
-- Returns  1 applied; 2 the session was left empty and is deleted; -1 the session no longer exists
--          (logged out, expired, or moved by a regenerate) and is not recreated; -2 the write would
--          take the stored session past maxSize: nothing applied
--
-- Atomic, and only what changed: two requests that change different keys of one session both
-- survive, whatever their interleaving; the same key: last writer wins (docs/design.md,
-- "Concurrency"). A session ended meanwhile stays ended: a write never resurrects it.
--@include layout.lua
--@include op.lua
--@include users.lua
--@include apply.lua
local plan, code = prepare(KEYS[1], 0)
if not plan then return code end
return commit(KEYS[1], 0, plan)
