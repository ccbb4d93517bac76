-- One delivery worker's look at its webhook's queue, in one round trip:
-- 1. the consumer group exists (created, from the start of the stream, when Redis lost it);
-- 2. entries another replica left pending longer than the visibility timeout become this
--    consumer's (XAUTOCLAIM; skipped when ARGV[4] is 0);
-- 3. this consumer's pending entries, oldest first (an id whose entry is gone is acknowledged
--    away), topped up with entries no consumer has read yet (XREADGROUP), up to ARGV[3].
-- KEYS[1] stream; ARGV[1] group, ARGV[2] consumer, ARGV[3] limit, ARGV[4] claim idle ms.
-- Returns entries as XRANGE does: { {id, {field, value, ...}}, ... }.
pcall(redis.call, 'XGROUP', 'CREATE', KEYS[1], ARGV[1], '0', 'MKSTREAM')
if tonumber(ARGV[4]) > 0 then
  redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[4], '0-0', 'COUNT', 100, 'JUSTID')
end
local limit = tonumber(ARGV[3])
local out = {}
local mine = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', limit, ARGV[2])
for _, p in ipairs(mine) do
  local e = redis.call('XRANGE', KEYS[1], p[1], p[1])
  if #e == 0 then
    redis.call('XACK', KEYS[1], ARGV[1], p[1])
  else
    out[#out + 1] = e[1]
  end
end
if #mine < limit then
  local r = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', limit - #mine, 'STREAMS', KEYS[1], '>')
  if r then
    for _, e in ipairs(r[1][2]) do
      out[#out + 1] = e
    end
  end
end
return out
