-- op.lua (included): make a write safe to run twice. When the connection drops after Redis ran a
-- script but before its reply arrived, ioredis sends the script again (autoResendUnfulfilledCommands).
-- Each write carries its own operation id; the session remembers the last few as `<op>=<code>` in
-- the field `o`, and a replay answers the recorded code instead of acting again (a second create, a
-- move from a marker, a flash appended twice). A write that emptied and so deleted the session
-- leaves nothing to remember it by: its replay finds no session and answers "gone" (the session is
-- ended either way; only the cookie is cleared later, by its next load).
local function replayed(key, op)
  local ops = redis.pcall('HGET', key, 'o')
  if type(ops) ~= 'string' then return nil end
  local at = string.find(ops, op .. '=', 1, true)
  if not at then return nil end
  return tonumber(string.sub(ops, at + #op + 1, at + #op + 1))
end

-- Remember `op` with its reply code (1 or 2) on `key`, keeping the three before it.
local function record(key, op, code)
  local ops = redis.call('HGET', key, 'o')
  local entry = op .. '=' .. code
  if ops then entry = entry .. ' ' .. string.sub(ops, 1, 3 * (#entry + 1) - 1) end
  redis.call('HSET', key, 'o', entry)
end
