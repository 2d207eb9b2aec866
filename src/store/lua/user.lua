-- user.lua: a user's sessions (`middleware.sessions`): list them, or revoke one or all but one.
--
-- KEYS[1]  the user's index key (include/users.lua); on Cluster the user's sessions share its slot
-- ARGV[1]  "list", "revoke" or "revokeAll"
-- ARGV[2]  now, epoch seconds   ARGV[3] absoluteTimeout in seconds, or -1
-- ARGV[4]  "revoke": the handle to revoke; "revokeAll": the handle to keep, or ""
--
-- Returns  "list": per live session, its handle, created, timeout, expiry (base 36; "" for none)
--          and info ("" for none), one flat array; "revoke"/"revokeAll": how many sessions ended
--
-- Atomic with the writes (which keep the index in their own script): a revoked session is deleted
-- with every id a regenerate moved it to, so its next request finds no session, and a write of a
-- request in flight finds it gone and does not bring it back (docs/design.md, "Concurrency").
-- Entries of sessions that are gone are pruned on the way.
--@include layout.lua
--@include users.lua
--@include chain.lua
local ix, mode = KEYS[1], ARGV[1]
local live = prune(ix, tonumber(ARGV[2]), tonumber(ARGV[3]))
if mode == 'list' then
  local out = {}
  for _, entry in ipairs(live) do
    local s = entry[3]
    local info = s.map.i
    out[#out + 1] = entry[1]
    out[#out + 1] = b36(s.c)
    out[#out + 1] = s.t and b36(s.t) or ''
    out[#out + 1] = s.x and b36(s.x) or ''
    out[#out + 1] = type(info) == 'string' and info or ''
  end
  return out
end
local ended = 0
for _, entry in ipairs(live) do
  local handle = entry[1]
  if (mode == 'revoke' and handle == ARGV[4]) or (mode == 'revokeAll' and handle ~= ARGV[4]) then
    endChain(entry[2])
    ended = ended + 1
  end
end
return ended
