-- create.lua: store a new session that is in a user's index from its first write (a login without
-- an earlier session), and name it in the index, in one command. A new session in no index is one
-- plain `SET … NX` from the client instead (src/store/commands.ts). Also the second half of a
-- handoff (handoff.lua) on Redis Cluster, which a logout may have come before: then a tombstone is
-- at the key, and the session is not stored.
--
-- KEYS[1]  the new session key, never overwritten (on Cluster it is in the index's slot)
-- ARGV[1]  its TTL in seconds (0: none)   ARGV[2] the operation id (include/op.lua)
-- ARGV[3]  the value (include/layout.lua), which records that operation
-- ARGV[4]  its user index key (include/users.lua)   ARGV[5] its handle
-- ARGV[6]  "1" to keep Redis TTLs   ARGV[7] now, epoch seconds   ARGV[8] absoluteTimeout or -1
--
-- Returns  1 stored; 0 the key already existed (nothing changed: the caller draws another id); -1
--          a logout ended the session during its handoff (a tombstone is at the key)
--@include layout.lua
--@include op.lua
--@include users.lua
--@include chain.lua
if redis.call('EXISTS', KEYS[1]) == 1 then
  if redis.pcall('GET', KEYS[1]) == TOMBSTONE then return -1 end
  return taken(KEYS[1], ARGV[2])
end
place(KEYS[1], tonumber(ARGV[1]), ARGV[3], ARGV[4], ARGV[5], ARGV[6], tonumber(ARGV[7]), tonumber(ARGV[8]))
return 1
