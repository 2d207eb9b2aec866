-- end.lua: end a session: a logout, invalidate() with nothing stored after it, or a revoke's second
-- half on Redis Cluster.
--
-- KEYS[1]  the session key the request loaded
-- ARGV[1]  "" to end it, or "tombstone" (Redis Cluster): the key is where a handoff moves a session
--          to another slot (handoff.lua); it is ended, and a tombstone is left for an hour so that
--          the handoff's second half, if it comes later, does not store the session
--
-- Returns  1 (the session is gone, whether this command or an earlier one ended it), or the key in
--          another slot that a handoff was moving it to: the caller ends that one too, with
--          "tombstone" (a second command, on this rare race only), and so on while the answer is a
--          key (a change of user after the login moved it on into a third slot)
--
-- Follows the markers a regenerate leaves, so a session moved to a new id by a concurrent request
-- ends too: once a logout has answered, no id leads to the session (docs/design.md, "Concurrency").
--@include layout.lua
--@include users.lua
--@include chain.lua
local elsewhere = endChain(KEYS[1])
if ARGV[1] == 'tombstone' then redis.call('SET', KEYS[1], TOMBSTONE, 'EX', 3600) end
if elsewhere then return elsewhere end
return 1
