-- Admits one request (or token call) for every replica at once: a client's share, the shared
-- pause, the partner's announced pace, then GCRA.
--
-- KEYS[1]  the limiter's state: its theoretical arrival time (TAT), microseconds on Redis's clock
-- KEYS[2]  optional: the upstream's pause ("do not send before"), a key that expires by itself
-- then, only with KEYS[2], in this order and each optional:
--          the upstream's pace (adaptive spacing, a hash written by pace.lua), when ARGV[3] = 1
--          a client's share of this upstream (its own TAT); checked first, and spent only
--          together with the upstream's cell, so a refused client spends none of the partner's
--          budget and a refused upstream none of the client's
-- ARGV[1]  emission interval in microseconds (0: no rate limit, only the pause is checked)
-- ARGV[2]  burst tolerance in microseconds: interval * (burst - 1)
-- ARGV[3]  1 when the pace key is passed, else 0 (only with KEYS[2])
-- ARGV[4]  cells wanted: 1, or more for a replica's batch (only with KEYS[2]; absent: 1)
-- ARGV[5], ARGV[6]  the client's interval and tolerance, with the client's key
--
-- Every key comes in KEYS and carries the same hash tag ({upstream:environment}; the token limit's
-- key is alone), so a Redis Cluster runs the whole call on the one node that holds that slot.
--
-- Returns {1, cells granted, 0} when admitted: one, or for a batch as many of those wanted as
-- conform now (never with a client's share or a pace in force, which judge each request).
-- Returns {0, wait in microseconds, why} when not: why = 0 the rate, 1 the pause, 2 the
-- client's share, 3 the pace.
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

local pace_key, client_key
if KEYS[2] then
  local n = 3
  if ARGV[3] == '1' then
    pace_key = KEYS[n]
    n = n + 1
  end
  client_key = KEYS[n]
end

local client_tat
if client_key then
  client_tat = tat_of(client_key)
  local allow_at = client_tat - tonumber(ARGV[6])
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

-- The pace: while a partner's announced window lasts, one send per `spacing`, from `next` on.
local pace_next, pace_spacing
if pace_key then
  local p = redis.call('HMGET', pace_key, 'next', 'spacing', 'until', 'limit', 'len')
  local limit, len = tonumber(p[4] or 0), tonumber(p[5] or 0)
  if p[3] and now >= tonumber(p[3]) and limit > 0 and len > 0 then
    -- The window ended and the partner had announced its limit: the next window holds that
    -- limit, spread evenly, until an answer says more (`limit/pace.rs`'s rule).
    local next_end = tonumber(p[3]) + len
    local untl = next_end
    if now >= next_end then
      untl = now + len
    end
    local spacing = math.floor((untl - now) / limit)
    redis.call('HSET', pace_key, 'until', string.format('%.0f', untl), 'allowance', string.format('%.0f', limit),
      'spacing', string.format('%.0f', spacing), 'next', string.format('%.0f', now))
    redis.call('PEXPIRE', pace_key, math.floor((untl - now + len) / 1000) + 1)
    p = {now, spacing, untl}
  end
  if p[3] and now < tonumber(p[3]) then
    local pace_until = tonumber(p[3])
    pace_next = math.max(tonumber(p[1]), now)
    pace_spacing = tonumber(p[2])
    if pace_next > now then
      -- Never past the window's end: the pace ends with it.
      return {0, math.min(pace_next, pace_until) - now, 3}
    end
  end
end

local interval = tonumber(ARGV[1])
local granted = 1
if interval > 0 then
  local tat = tat_of(KEYS[1])
  local tolerance = tonumber(ARGV[2])
  local allow_at = tat - tolerance
  if now < allow_at then
    return {0, allow_at - now, 0}
  end
  local want = 1
  if KEYS[2] and ARGV[4] then
    want = tonumber(ARGV[4])
  end
  if want > 1 and not client_tat and not pace_next then
    -- Cell k (from 0) conforms while tat + k * interval - tolerance <= now.
    granted = math.min(want, math.floor((now + tolerance - tat) / interval) + 1)
  end
  spend(KEYS[1], tat, interval * granted)
end
if client_tat then
  spend(client_key, client_tat, tonumber(ARGV[5]))
end
if pace_next then
  redis.call('HSET', pace_key, 'next', string.format('%.0f', pace_next + pace_spacing))
  redis.call('HINCRBY', pace_key, 'allowance', -1)
end
return {1, granted, 0}
