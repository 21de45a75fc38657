-- Appends one message to a conversation: dedup, seq, the message, its dedup key,
-- mentions, an amendment's rewrites and a group's state changes, in one script so
-- that Redis applies all of it or none of it (see append.rs for the arguments).
--
-- KEYS: 1 seq, 2 messages, 3 dedup, 4 amendments, 5 mentions, then per group write
--       5 keys: group, members, member ids, former members, join requests.
-- ARGV: 1 message (protobuf, seq omitted), 2 dedup window (ms),
--       3 n mentions, then n mention fields,
--       then "0" or "1" (an amendment), and for "1": target seq, number of amendment
--       events after the target that the rewrites were computed against, n rewrites,
--       then n (seq, expected bytes, new bytes),
--       then n group writes, then n (op, a, b): G group ""; J user member; U user
--       member; L user former-member.
-- Returns {"ok", seq}, {"dup", original message} or {"retry"} (an amendment's
-- target changed since it was read: nothing was written).

-- Protobuf varint of a non-negative integer below 2^53 (exact in a Lua number).
local function varint(n)
  local out = {}
  while n >= 128 do
    out[#out + 1] = string.char(n % 128 + 128)
    n = math.floor(n / 128)
  end
  out[#out + 1] = string.char(n)
  return table.concat(out)
end

-- A Lua number as Redis writes integers (tostring would use %.14g).
local function int(n)
  return string.format('%d', n)
end

local existing = redis.call('GET', KEYS[3])
if existing then
  local original = redis.call('HGET', KEYS[2], existing)
  if original then
    return {'dup', original}
  end
end

local i = 3
local mentions = {}
for _ = 1, tonumber(ARGV[i]) do
  i = i + 1
  mentions[#mentions + 1] = ARGV[i]
end
i = i + 1

local target = nil
local rewrites = {}
if ARGV[i] == '1' then
  target = ARGV[i + 1]
  local later = tonumber(ARGV[i + 2])
  local n = tonumber(ARGV[i + 3])
  i = i + 4
  -- An amendment committed since the rewrites were computed (an edit whose text a
  -- recall must also erase): recompute.
  if redis.call('ZCOUNT', KEYS[4], '(' .. target, '+inf') ~= later then
    return {'retry'}
  end
  for _ = 1, n do
    if redis.call('HGET', KEYS[2], ARGV[i]) ~= ARGV[i + 1] then
      return {'retry'}
    end
    rewrites[#rewrites + 1] = {ARGV[i], ARGV[i + 2]}
    i = i + 3
  end
else
  i = i + 1
end

-- Group writes, checked before anything is written.
local writes = {}
for w = 1, tonumber(ARGV[i]) do
  local op = ARGV[i + 1 + (w - 1) * 3]
  if op ~= 'G' and op ~= 'J' and op ~= 'U' and op ~= 'L' then
    return redis.error_reply('unknown group write ' .. tostring(op))
  end
  writes[w] = {op, ARGV[i + 2 + (w - 1) * 3], ARGV[i + 3 + (w - 1) * 3]}
end

local seq = redis.call('INCR', KEYS[1])
local seq_text = int(seq)
-- Field 3 (seq), varint: protobuf keeps the last value of a scalar field.
redis.call('HSET', KEYS[2], seq_text, ARGV[1] .. string.char(0x18) .. varint(seq))
redis.call('SET', KEYS[3], seq_text, 'PX', ARGV[2])
for _, field in ipairs(mentions) do
  redis.call('HSET', KEYS[5], field, seq_text)
end
if target then
  for _, rewrite in ipairs(rewrites) do
    redis.call('HSET', KEYS[2], rewrite[1], rewrite[2])
  end
  redis.call('ZADD', KEYS[4], seq, seq_text .. ':' .. target)
end

for w, write in ipairs(writes) do
  local k = 5 + (w - 1) * 5
  local op, a, b = write[1], write[2], write[3]
  if op == 'G' then
    redis.call('SET', KEYS[k + 1], a)
  elseif op == 'J' then
    -- MemberRecord field 5 (joined_after_seq), varint: the member sees this
    -- message on.
    redis.call('HDEL', KEYS[k + 4], a)
    redis.call('HDEL', KEYS[k + 5], a)
    redis.call('HSET', KEYS[k + 2], a, b .. string.char(0x28) .. varint(seq - 1))
    redis.call('ZADD', KEYS[k + 3], 0, a)
  elseif op == 'U' then
    redis.call('HSET', KEYS[k + 2], a, b)
    redis.call('ZADD', KEYS[k + 3], 0, a)
  else
    -- FormerMemberRecord field 2 (left_seq), varint: they keep this message.
    redis.call('HDEL', KEYS[k + 2], a)
    redis.call('ZREM', KEYS[k + 3], a)
    redis.call('HSET', KEYS[k + 4], a, b .. string.char(0x10) .. varint(seq))
  end
end

return {'ok', seq}
