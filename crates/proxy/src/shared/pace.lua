-- Learns a partner's announced budget for every replica (adaptive spacing, `limit/pace.rs`'s
-- rules on Redis's clock): `allowance` more requests may go out within `reset` from now, so the
-- next ones are spread one per `reset / allowance`. Within one window (resets less than a second
-- apart) the smallest allowance wins, so answers arriving out of order, from any replica, never
-- loosen the pace. An allowance of zero holds every request until the reset. `gcra.lua` reads
-- the hash and moves `next` on as it admits; the hash expires with the window.
--
-- KEYS[1]  the pace: a hash {until, allowance, spacing, next, limit, len}, microseconds on Redis's
--          clock; `limit` (requests per window, 0 if never announced) and `len` (the longest reset
--          announced in the window) let `gcra.lua` carry the pace into the next window
-- ARGV[1]  allowance (what the partner said is left, less this replica's requests in flight)
-- ARGV[2]  reset, microseconds from now
-- ARGV[3]  the partner's announced limit per window, 0 if it did not say
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

local limit = tonumber(ARGV[3]) or 0
local len = reset
local p = redis.call('HMGET', KEYS[1], 'until', 'allowance', 'next', 'limit', 'len')
local nxt = now
if p[1] and tonumber(p[1]) > now then
  if math.abs(tonumber(p[1]) - untl) < 1000000 then
    allowance = math.min(allowance, tonumber(p[2]))
    len = math.max(len, tonumber(p[5] or 0))
    if limit == 0 then
      limit = tonumber(p[4] or 0)
    end
  end
  nxt = math.max(tonumber(p[3]), now)
end
limit = math.min(math.max(math.floor(limit), 0), len)
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
  'spacing', string.format('%.0f', spacing), 'next', string.format('%.0f', nxt),
  'limit', string.format('%.0f', limit), 'len', string.format('%.0f', len))
-- With a known limit the hash outlives the window by one more: `gcra.lua` rolls it over.
local keep = reset
if limit > 0 then
  keep = reset + len
end
redis.call('PEXPIRE', KEYS[1], math.floor(keep / 1000) + 1)
return spacing
