-- apply.lua (included): apply one request's intent to a stored session hash, as patch.lua and
-- rotate.lua's move both do. Decided here, against what is stored, not from the request's copy
-- (docs/design.md, "Concurrency"):
--   * the size limit on the stored total (every field but `s`), kept in `s` and moved by each write's
--     delta (metadata changes of a few bytes aside):
--     growth past maxSize is refused whole; a session over it can still shrink or move;
--   * the expiry from the stored timeout `t` (the last adjustTimeout() to land is what holds);
--   * flash queues as appends and pops of framed messages, so concurrent flashes are all kept;
--   * "emptied -> deleted" after the deletions are applied: a key another request added keeps it.
--
-- The intent, from ARGV[b + 1] on:
--   b+1 now, epoch seconds     b+2 "1" keep a Redis TTL, "0" LRU mode     b+3 maxSize in bytes
--   b+4 timeout intent: "" keep the stored one, "0" never expire, or seconds
--   b+5 "1" delete the session when no data field is left (invalidateEmptySession)
--   b+6 q, flash queues changed   b+7 n, fields to set   b+8 the operation id (include/op.lua)
--   b+9 absoluteTimeout in seconds, or -1 for none: no expiry past the stored `c` plus that, and a
--       session past it is gone (load.lua ends it the same way)
--   then per flash queue: its field, the frames to append, k, and the k loaded frames it popped
--   (each frame carries a message id of its own, so a pop takes exactly the messages it loaded),
--   then n field, value pairs, then the fields to delete.
-- Bytes the session's fields take (names and values, metadata included, `s` and `o` aside), for a
-- session stored before `s` was kept.
local function measure(key)
  local all = redis.call('HGETALL', key)
  local size = 0
  for i = 1, #all, 2 do
    if all[i] ~= 's' and all[i] ~= 'o' then size = size + #all[i] + #all[i + 1] end
  end
  return size
end

-- What one field costs as stored: its name and value, or nothing when it is absent (a value may be
-- empty: a serializer may encode to '').
local function stored(key, field)
  local length = redis.call('HSTRLEN', key, field)
  if length > 0 or redis.call('HEXISTS', key, field) == 1 then return #field + length end
  return 0
end

-- Reads only (but ends a session past its absolute timeout). Returns nil and a reply code (-1 gone, -2 too large, or what a first run of this same
-- operation answered), or the plan for commit().
local function prepare(key, b)
  local done = replayed(key, ARGV[b + 8])
  if done then return nil, done end
  local meta = redis.call('HMGET', key, 'v', 's', 'c')
  if not meta[1] then return nil, -1 end -- no session here (deleted, expired, or a moved marker)
  local absolute = tonumber(ARGV[b + 9])
  if absolute >= 0 and tonumber(meta[3]) and tonumber(ARGV[b + 1]) >= tonumber(meta[3]) + absolute then
    redis.call('DEL', key) -- past its absolute timeout: ended, as its next load would end it
    return nil, -1
  end
  local size = tonumber(meta[2]) or measure(key)
  local q, n = tonumber(ARGV[b + 6]), tonumber(ARGV[b + 7])
  local at = b + 10
  local delta = 0
  local queues = {}
  for _ = 1, q do
    local field, appended, k = ARGV[at], ARGV[at + 1], tonumber(ARGV[at + 2])
    local current = redis.call('HGET', key, field)
    local text = current or ''
    -- Popped: each message this request loaded and took, wherever it still is (another request
    -- may have taken it first, or flashed before it).
    for i = at + 3, at + 2 + k do
      local from, to = string.find(text, ARGV[i], 1, true)
      if from then text = string.sub(text, 1, from - 1) .. string.sub(text, to + 1) end
    end
    text = text .. appended
    queues[#queues + 1] = { field, text }
    delta = delta + (text ~= '' and #field + #text or 0) - (current and #field + #current or 0)
    at = at + 3 + k
  end
  local setAt = at
  local delAt = setAt + 2 * n
  for i = setAt, delAt - 1, 2 do
    delta = delta + #ARGV[i] + #ARGV[i + 1] - stored(key, ARGV[i])
  end
  for i = delAt, #ARGV do
    delta = delta - stored(key, ARGV[i])
  end
  if delta > 0 and size + delta > tonumber(ARGV[b + 3]) then return nil, -2 end
  return { size = size + delta, queues = queues, setAt = setAt, delAt = delAt }
end

-- Writes the plan to `key`. Returns 1 stored, or 2 the session was left empty and is deleted.
local function commit(key, b, plan)
  -- HSET/HDEL in slices: Lua's unpack() has a stack limit of a few thousand values.
  for i = plan.setAt, plan.delAt - 1, 1000 do
    redis.call('HSET', key, unpack(ARGV, i, math.min(i + 999, plan.delAt - 1)))
  end
  for i = plan.delAt, #ARGV, 1000 do
    redis.call('HDEL', key, unpack(ARGV, i, math.min(i + 999, #ARGV)))
  end
  for _, queue in ipairs(plan.queues) do
    if queue[2] == '' then redis.call('HDEL', key, queue[1]) else redis.call('HSET', key, queue[1], queue[2]) end
  end
  local intent = ARGV[b + 4]
  if intent == '0' then
    redis.call('HDEL', key, 't', 'x')
  elseif intent ~= '' then
    redis.call('HSET', key, 't', intent)
  end
  if ARGV[b + 5] == '1' then
    local meta = redis.call('HMGET', key, 'c', 't', 'x', 'v', 's', 'o', 'l')
    local present = 0
    for i = 1, 7 do if meta[i] then present = present + 1 end end
    if redis.call('HLEN', key) == present then
      redis.call('DEL', key)
      return 2
    end
  end
  redis.call('HSET', key, 's', plan.size)
  record(key, ARGV[b + 8], 1)
  local now = tonumber(ARGV[b + 1])
  local t = tonumber(redis.call('HGET', key, 't'))
  local keepTtl = ARGV[b + 2] == '1'
  local absolute = tonumber(ARGV[b + 9])
  local x
  if t and t > 0 then x = now + t end
  if absolute >= 0 then
    local deadline = tonumber(redis.call('HGET', key, 'c')) + absolute
    if not x or deadline < x then x = deadline end
  end
  if x then
    redis.call('HSET', key, 'x', x)
    if keepTtl then redis.call('EXPIRE', key, x - now) end
  elseif intent == '0' and keepTtl then
    redis.call('PERSIST', key)
  end
  return 1
end
