-- chain.lua (included after layout.lua and users.lua): end a session and every id it was moved to.
--
-- A regenerate leaves a marker at the old id naming the key the session moved to, kept as long as
-- the session's timeout (a day without one). A logout that loaded the old id follows the markers, so
-- it ends the session under whatever id it lives now: a logout wins over a concurrent regenerate
-- (docs/design.md, "Concurrency"). On Redis Cluster an id and the ids it is moved to share a hash
-- tag, so the whole chain is in this script's slot, but for one move: a login that puts the session
-- in its user's slot (handoff.lua). Its marker says so (`x`), and the chain stops there: the key in
-- the other slot is returned, for the caller to end with a second command (end.lua, "tombstone").
-- A marker of the previous layout (a hash holding `m`) is followed too. A session in a user's index
-- leaves it (include/users.lua).
local function endChain(key)
  for _ = 1, 32 do
    local value = redis.pcall('GET', key)
    local moved
    local elsewhere = false
    if type(value) == 'table' then
      moved = redis.pcall('HGET', key, 'm')
    elseif value then
      local m = marker(value)
      moved = m and m.m
      elsewhere = m and m.x == '1'
      if not m then delistValue(value) end
    end
    redis.call('DEL', key)
    if type(moved) ~= 'string' then return nil end
    if elsewhere then return moved end
    key = moved
  end
  return nil
end
