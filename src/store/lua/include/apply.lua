-- apply.lua (included after op.lua, layout.lua and users.lua): apply one request's intent to a stored session,
-- as patch.lua and rotate.lua's move both do. Decided here, against what is stored, not from the
-- request's copy (docs/design.md, "Concurrency"):
--   * the size limit on the stored fields (include/layout.lua, measure): growth past maxSize is
--     refused whole; a session over it can still shrink or move;
--   * the expiry from the stored timeout (the last adjustTimeout() to land is what holds);
--   * flash queues as appends and pops of framed messages, so concurrent flashes are all kept;
--   * "emptied -> deleted" after the deletions are applied: a key another request added keeps it.
--
-- The intent, from ARGV[b + 1] on:
--   b+1 now, epoch seconds     b+2 "1" keep a Redis TTL, "0" LRU mode     b+3 maxSize in bytes
--   b+4 timeout intent: "" keep the stored one, "0" never expire, or seconds
--   b+5 "1" delete the session when no data field is left (invalidateEmptySession)
--   b+6 q, flash queues changed   b+7 n, fields to set   b+8 the operation id (include/op.lua)
--   b+9 absoluteTimeout in seconds, or -1 for none: no expiry past the stored creation plus that,
--       and a session past it is gone (load.lua ends it the same way)
--   b+10 the `userKey` option's field (":userId"), or "" for none: a user's index follows the
--        session's value there (include/users.lua)
--   b+11 the index key of the value this intent sets in that field ("" when it sets none)
--   b+12 a fresh handle, b+13 what `sessionInfo` describes: what a session first indexed (or
--        indexed under another user) keeps as `h` and `i`
--   then per flash queue: its field, the frames to append, k, and the k loaded frames it popped
--   (each frame carries a message id of its own, so a pop takes exactly the messages it loaded),
--   then n field, value pairs, then the fields to delete.

-- Reads only (but ends a session past its absolute timeout). Returns nil and a reply code (-1 gone,
-- -2 too large, or what a first run of this same operation answered), or the plan for commit(): the
-- new value, or `empty` when the session is left without data and is to be deleted.
local function prepare(key, b)
  local op = ARGV[b + 8]
  local value = fetch(key)
  if not value then return nil, -1 end -- no session here (deleted, expired, or legacy)
  local moved = marker(value)
  if moved then return nil, replayed(moved.o, op) or -1 end -- moved by a regenerate
  local vs, cs, ts, _, at = string.match(value, HEADER)
  if not vs then return nil, -1 end
  local ix, from = indexOf(value, at)
  local body = string.sub(value, from)
  local map = unpacked(body)
  if not map then return nil, -1 end -- corrupt: no session a write could apply to
  local done = replayed(map.o, op)
  if done then return nil, done end
  local now = tonumber(ARGV[b + 1])
  local absolute = tonumber(ARGV[b + 9])
  local deadline = absolute >= 0 and tonumber(cs, 36) + absolute or nil
  if deadline and now >= deadline then
    delistValue(value) -- out of its user's index too
    redis.call('DEL', key) -- past its absolute timeout: ended, as its next load would end it
    return nil, -1
  end
  local before = measure(body, map.o)
  local q, n = tonumber(ARGV[b + 6]), tonumber(ARGV[b + 7])
  local at = b + 14
  for _ = 1, q do
    local field, appended, k = ARGV[at], ARGV[at + 1], tonumber(ARGV[at + 2])
    local text = map[field] or ''
    -- Popped: each message this request loaded and took, wherever it still is (another request
    -- may have taken it first, or flashed before it).
    for i = at + 3, at + 2 + k do
      local from, to = string.find(text, ARGV[i], 1, true)
      if from then text = string.sub(text, 1, from - 1) .. string.sub(text, to + 1) end
    end
    text = text .. appended
    map[field] = text ~= '' and text or nil
    at = at + 3 + k
  end
  local delAt = at + 2 * n
  for i = at, delAt - 1, 2 do map[ARGV[i]] = ARGV[i + 1] end
  for i = delAt, #ARGV do map[ARGV[i]] = nil end
  -- The user index follows the user key's value: none, the same, or another user's.
  local handle, nix = map.h, ix
  local userField = ARGV[b + 10]
  if userField ~= '' then
    if map[userField] == nil then nix = nil elseif ARGV[b + 11] ~= '' then nix = ARGV[b + 11] end
    if nix ~= ix then
      map.h = nix and ARGV[b + 12] or nil
      map.i = nix and ARGV[b + 13] ~= '' and ARGV[b + 13] or nil
    end
  end
  -- The index it leaves (and its handle there), and the one it is in after (its handle now).
  local index = { from = ix, handle = handle, to = nix, toHandle = map.h }
  if ARGV[b + 5] == '1' then
    local empty = true
    for field in pairs(map) do
      if field ~= 'o' and field ~= 'l' and field ~= 'h' and field ~= 'i' then
        empty = false
        break
      end
    end
    if empty then return { empty = true, index = index, stored = key } end
  end
  local intent = ARGV[b + 4]
  if intent == '0' then ts = '' elseif intent ~= '' then ts = b36(tonumber(intent)) end
  map.o = record(map.o, op, 1)
  local packed = cmsgpack.pack(map)
  local after = measure(packed, map.o)
  if after > before and after > tonumber(ARGV[b + 3]) then return nil, -2 end
  local t = tonumber(ts, 36)
  local x
  if t and t > 0 then x = now + t end
  if deadline and (not x or deadline < x) then x = deadline end
  local xs = x and b36(x) or ''
  return {
    value = vs .. ' ' .. cs .. ' ' .. ts .. ' ' .. xs .. ' ' .. indexPart(nix) .. packed,
    ttl = x and x - now,
    persist = intent == '0',
    t = t,
    index = index,
    stored = key,
    ops = map.o,
  }
end

-- The user index after the plan is written to `key` (nil: deleted): the old entry goes when the
-- session leaves that index or moves, the new one names `key`.
local function reindex(key, b, plan)
  local index = plan.index
  local moved = key ~= plan.stored
  if index.from and (index.from ~= index.to or moved or not plan.value) then delist(index.from, index.handle) end
  if not plan.value or not index.to then return end
  local ttl = plan.ttl and math.max(1, plan.ttl)
  if index.to ~= index.from or moved then
    enlist(index.to, index.toHandle, key, ttl, ARGV[b + 2], tonumber(ARGV[b + 1]), tonumber(ARGV[b + 9]))
  elseif ttl or plan.persist then
    stretch(index.to, ttl, ARGV[b + 2]) -- the write moved the session's expiry
    sweep(index.to)
  end
end

-- Writes the plan to `key`. Returns 1 stored, or 2 the session was left empty and is deleted.
local function commit(key, b, plan)
  if plan.empty then
    redis.call('DEL', key)
    reindex(key, b, plan)
    return 2
  end
  if ARGV[b + 2] ~= '1' then
    redis.call('SET', key, plan.value, 'KEEPTTL') -- LRU mode: the expiry is in the header only
  elseif plan.ttl then
    redis.call('SET', key, plan.value, 'EX', math.max(1, plan.ttl))
  elseif plan.persist then
    redis.call('SET', key, plan.value) -- adjustTimeout(0): never expires
  else
    redis.call('SET', key, plan.value, 'KEEPTTL')
  end
  reindex(key, b, plan)
  return 1
end

-- Leave at `key` the marker of a move of the plan's session to `new` (include/layout.lua). It
-- remembers the session's `o` (include/op.lua), the move last, so a replay of the move, or of any
-- writer's operation the session had run, answers what it did there instead of "gone"; and lives as
-- long as the session's timeout (a day without one). `crossing` flags a move into another Cluster
-- slot (handoff.lua), which a logout follows with a second command (include/chain.lua).
local function leaveMarker(key, new, plan, crossing)
  local mark = 'm ' .. cmsgpack.pack({ m = new, o = plan.ops, x = crossing and '1' or nil })
  redis.call('SET', key, mark, 'EX', (plan.t and plan.t > 0) and plan.t or 86400)
end
