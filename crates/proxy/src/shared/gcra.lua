-- Admits one request (or token call) for every replica at once: the shared pause, then GCRA.
--
-- KEYS[1]  the limiter's state: its theoretical arrival time (TAT), microseconds on Redis's clock
-- KEYS[2]  optional: the upstream's pause ("do not send before"), a key that expires by itself
-- ARGV[1]  emission interval in microseconds (0: no rate limit, only the pause is checked)
-- ARGV[2]  burst tolerance in microseconds: interval * (burst - 1)
--
-- Returns {admitted (1/0), wait in microseconds, paused (1/0)}.
--
-- Time is Redis's own (TIME), never a replica's: clock skew between replicas cannot widen the
-- budget. The script only reads TIME before writing, which Redis >= 5 replicates by effects.
-- The TAT is written with string.format('%.0f'): Lua's default number formatting keeps 14
-- digits, and microseconds since 1970 have 16.

if KEYS[2] then
  local paused = redis.call('PTTL', KEYS[2])
  if paused > 0 then
    return {0, paused * 1000, 1}
  end
end

local interval = tonumber(ARGV[1])
if interval == 0 then
  return {1, 0, 0}
end
local tolerance = tonumber(ARGV[2])

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then
  tat = now
end

local allow_at = tat - tolerance
if now < allow_at then
  return {0, allow_at - now, 0}
end

local new_tat = tat + interval
-- The state is worthless once the TAT has passed: let Redis drop it then.
local ttl_ms = math.floor((new_tat - now) / 1000) + 1
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', ttl_ms)
return {1, 0, 0}
