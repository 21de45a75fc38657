-- Raises a hash field holding a seq to ARGV[2] if that is higher: cursors and marks
-- only move forward. KEYS[1] hash, ARGV[1] field, ARGV[2] value (decimal).
-- Returns 1 when the field moved, 0 when it already stood there or higher.
local current = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if tonumber(ARGV[2]) > current then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  return 1
end
return 0
