-- end.lua: end a session: a logout, or invalidate() with nothing stored after it.
--
-- KEYS[1]  the session key the request loaded
--
-- Returns  1 (the session is gone, whether this command or an earlier one ended it)
--
-- Follows the markers a regenerate leaves, so a session moved to a new id by a concurrent request
-- ends too: once a logout has answered, no id leads to the session (docs/design.md, "Concurrency").
--@include layout.lua
--@include chain.lua
endChain(KEYS[1])
return 1
