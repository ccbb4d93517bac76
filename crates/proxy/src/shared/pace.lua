-- Learns a partner's announced budget for every replica (adaptive spacing, `limit/pace.rs`'s
-- rules on Redis's clock): `allowance` more requests may go out within `reset` from now, so the
-- next ones are spread one per `reset / allowance`. Within one window (resets less than a second
-- apart) the smallest allowance wins, so answers arriving out of order, from any replica, never
-- loosen the pace. An allowance of zero holds every request until the reset. `gcra.lua` reads
-- the hash and moves `next` on as it admits; the hash expires with the window.
--
-- KEYS[1]  the pace: a hash {until, allowance, spacing, next}, microseconds on Redis's clock
-- ARGV[1]  allowance (what the partner said is left, less this replica's requests in flight)
-- ARGV[2]  reset, microseconds from now
--
-- Returns the spacing in force, in microseconds.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local allowance = tonumber(ARGV[1])
local reset = tonumber(ARGV[2])
if reset <= 0 then
  return 0
end
local untl = now + reset

local p = redis.call('HMGET', KEYS[1], 'until', 'allowance', 'next')
local nxt = now
if p[1] and tonumber(p[1]) > now then
  if math.abs(tonumber(p[1]) - untl) < 1000000 then
    allowance = math.min(allowance, tonumber(p[2]))
  end
  nxt = math.max(tonumber(p[3]), now)
end
-- A whole number, never more than one request per microsecond: `gcra.lua` counts it down with
-- HINCRBY, which takes integers only.
allowance = math.min(math.max(math.floor(allowance), 0), reset)

local spacing
if allowance == 0 then
  spacing = reset
  nxt = untl
else
  spacing = math.floor(reset / allowance)
end
redis.call('HSET', KEYS[1], 'until', string.format('%.0f', untl), 'allowance', string.format('%.0f', allowance),
  'spacing', string.format('%.0f', spacing), 'next', string.format('%.0f', nxt))
redis.call('PEXPIRE', KEYS[1], math.floor(reset / 1000) + 1)
return spacing
