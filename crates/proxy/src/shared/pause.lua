-- Pauses an upstream for every replica: KEYS[1] expires after ARGV[1] milliseconds.
-- A pause is only ever lengthened, so a short Retry-After cannot cut a longer one short.
local left = redis.call('PTTL', KEYS[1])
local wanted = tonumber(ARGV[1])
if left < wanted then
  redis.call('SET', KEYS[1], '1', 'PX', wanted)
end
return 1
