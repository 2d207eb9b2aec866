-- load.lua: read one session and, when its expiry is due, move it: one round trip (docs/design.md,
-- "What a request costs").
--
-- KEYS[1]  the session key
-- ARGV[1]  now, epoch seconds: the application's clock, as the machine's is (time arrives as data)
-- ARGV[2]  timeoutTrigger in seconds, or -1 for none: with none, every load moves the expiry; with
--          one, only a load with at most that many seconds left does (pyramid: timeout_trigger),
--          scaled to a session's own timeout (ARGV[6], the `timeout` option, is what it is set
--          for): a 30-day remember-me session moves once at most 15 days are left when the trigger
--          is half the timeout, not in its last minutes only
-- ARGV[3]  "1" to keep a Redis TTL (setRedisTtl), "0" for LRU mode (expiry in the payload only)
-- ARGV[4]  the current format version
-- ARGV[5]  absoluteTimeout in seconds, or -1 for none: the session ends that long after its creation,
--          however active, and no refresh moves its expiry past that
-- ARGV[6]  the `timeout` option in seconds (what the trigger is set against), or -1 for none
--
-- Returns  {0}                  no such session; also for a marker left by a regenerate: the old id
--                               leads nowhere (kept, so a logout that loaded it still follows it)
--          {2}                  the payload's own expiry (or its absolute timeout) had passed: the
--                               key is deleted
--          {3}                  legacy or foreign payload (an older format, or not ours): deleted
--          {1, refreshed, value} found; refreshed is 1 when the expiry moved, 2 when Redis refused
--                               the move (out of memory); value is the session as stored
--                               (include/layout.lua), one bulk string for the client to decode
--
-- A session in a user's index (the `userKey` option) stretches the index's TTL with its own, and
-- leaves the index when this script ends it.
--
-- Atomic so that the expiry check, the removal of a dead key and the refresh cannot interleave with
-- another request's write: an expired session is never resurrected, and no second command is
-- needed to remove it (fixing pyramid's B8, which left such keys behind).
--@include layout.lua
--@include users.lua
local key = KEYS[1]
local now = tonumber(ARGV[1])
local value = fetch(key)
if value == false then return {3} end
if value == nil then return {0} end
local vs, cs, ts, xs, at = string.match(value, HEADER)
if not vs then
  if value == TOMBSTONE or marker(value) then return {0} end
  redis.call('DEL', key)
  return {3}
end
local c, t, x = tonumber(cs, 36), tonumber(ts, 36), tonumber(xs, 36)
if tonumber(vs, 36) < tonumber(ARGV[4]) then
  redis.call('DEL', key)
  return {3}
end
local absolute = tonumber(ARGV[5])
local deadline = absolute >= 0 and c + absolute or nil
if (x and now > x) or (deadline and now >= deadline) then
  delistValue(value) -- out of its user's index: in LRU mode nothing else would remove the entry
  redis.call('DEL', key)
  return {2}
end
local refreshed = 0
if t and t > 0 then
  local target = now + t
  if deadline and deadline < target then target = deadline end
  local trigger = tonumber(ARGV[2])
  local due
  if trigger >= 0 then
    local timeout = tonumber(ARGV[6])
    if timeout > 0 and t ~= timeout then trigger = trigger * t / timeout end
  end
  if trigger < 0 then due = (x ~= target) else due = ((not x) or (x - now <= trigger)) and x ~= target end
  if due then
    -- The expiry is rewritten in place when its width is unchanged (the usual case),
    -- else the header is. A Redis at maxmemory with noeviction may refuse it: the session is still
    -- read, its refresh skipped and reported (refreshed = 2), so reads and logouts keep working.
    local stamp = b36(target)
    local moved
    if #stamp == #xs then
      moved = redis.pcall('SETRANGE', key, at - 2 - #xs, stamp)
    else
      local rewritten = vs .. ' ' .. cs .. ' ' .. ts .. ' ' .. stamp .. ' ' .. string.sub(value, at)
      moved = redis.pcall('SET', key, rewritten, 'KEEPTTL')
    end
    if type(moved) == 'table' and moved.err then
      refreshed = 2
    else
      if ARGV[3] == '1' then redis.call('EXPIRE', key, target - now) end
      -- A session in a user's index keeps the index alive as long as itself.
      local ix = indexOf(value, at)
      if ix then stretch(ix, target - now, ARGV[3]) end
      refreshed = 1
    end
  end
end
return {1, refreshed, value}
