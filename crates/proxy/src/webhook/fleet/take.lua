-- Before sending an entry: is it still this consumer's? If so, claim it again, which resets its
-- idle time so no other replica's XAUTOCLAIM takes it while the delivery is under way.
-- KEYS[1] stream; ARGV[1] group, ARGV[2] this consumer, ARGV[3] entry id. Returns 1 or 0.
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if #p == 0 or p[1][2] ~= ARGV[2] then
  return 0
end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'JUSTID')
return 1
