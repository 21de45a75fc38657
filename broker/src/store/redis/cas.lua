-- Compare-and-set of one record: a string key (ARGV[1] = "") or a hash field
-- (ARGV[1] = the field). ARGV[2] is "1" when the record is expected to hold ARGV[3],
-- "0" when it is expected to be absent; ARGV[4] is the new value.
-- Returns 1 when set, 0 when the record was not as expected (nothing written).
local current
if ARGV[1] == '' then
  current = redis.call('GET', KEYS[1])
else
  current = redis.call('HGET', KEYS[1], ARGV[1])
end
if ARGV[2] == '1' then
  if current ~= ARGV[3] then
    return 0
  end
elseif current then
  return 0
end
if ARGV[1] == '' then
  redis.call('SET', KEYS[1], ARGV[4])
else
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[4])
end
return 1
