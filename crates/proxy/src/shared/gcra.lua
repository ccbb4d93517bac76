-- Admits one request (or token call) for every replica at once: a client's share, the shared
-- pause, then GCRA.
--
-- KEYS[1]  the limiter's state: its theoretical arrival time (TAT), microseconds on Redis's clock
-- KEYS[2]  optional: the upstream's pause ("do not send before"), a key that expires by itself
-- KEYS[3]  optional, only with KEYS[2]: a client's share of this upstream (its own TAT); checked
--          first, and spent only together with the upstream's cell, so a refused client spends
--          none of the partner's budget and a refused upstream none of the client's
-- ARGV[1]  emission interval in microseconds (0: no rate limit, only the pause is checked)
-- ARGV[2]  burst tolerance in microseconds: interval * (burst - 1)
-- ARGV[3], ARGV[4]  the client's interval and tolerance, with KEYS[3]
--
-- Returns {admitted (1/0), wait in microseconds, why}: why = 0 the rate, 1 the pause, 2 the
-- client's share.
--
-- Time is Redis's own (TIME), never a replica's: clock skew between replicas cannot widen the
-- budget. The script only reads TIME before writing, which Redis >= 5 replicates by effects.
-- TATs are written with string.format('%.0f'): Lua's default number formatting keeps 14 digits,
-- and microseconds since 1970 have 16.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])

-- The TAT of `key`, never in the past.
local function tat_of(key)
  local tat = tonumber(redis.call('GET', key) or now)
  if tat < now then
    return now
  end
  return tat
end

-- Moves `key`'s TAT on by one cell; the state is worthless once it has passed, so it expires then.
local function spend(key, tat, interval)
  local new_tat = tat + interval
  local ttl_ms = math.floor((new_tat - now) / 1000) + 1
  redis.call('SET', key, string.format('%.0f', new_tat), 'PX', ttl_ms)
end

local client_tat
if KEYS[3] then
  client_tat = tat_of(KEYS[3])
  local allow_at = client_tat - tonumber(ARGV[4])
  if now < allow_at then
    return {0, allow_at - now, 2}
  end
end

if KEYS[2] then
  local paused = redis.call('PTTL', KEYS[2])
  if paused > 0 then
    return {0, paused * 1000, 1}
  end
end

local interval = tonumber(ARGV[1])
if interval > 0 then
  local tat = tat_of(KEYS[1])
  local allow_at = tat - tonumber(ARGV[2])
  if now < allow_at then
    return {0, allow_at - now, 0}
  end
  spend(KEYS[1], tat, interval)
end
if client_tat then
  spend(KEYS[3], client_tat, tonumber(ARGV[3]))
end
return {1, 0, 0}
