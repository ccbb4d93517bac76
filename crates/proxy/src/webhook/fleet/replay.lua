-- Puts a dead letter back in the webhook's stream (as a new entry, so at the end of the queue,
-- received now so its max_age starts over) and removes it from the dead-letter stream, in one step.
-- KEYS[1] stream, KEYS[2] dead-letter stream; ARGV[1] the dead letter's entry id, ARGV[2] now (ms).
-- Returns 1 or 0.
local e = redis.call('XRANGE', KEYS[2], ARGV[1], ARGV[1])
if #e == 0 then
  return 0
end
local args = {'XADD', KEYS[1], '*'}
local f = e[1][2]
for i = 1, #f, 2 do
  local k = f[i]
  if k == 'id' or k == 'ct' or k == 'body' then
    args[#args + 1] = k
    args[#args + 1] = f[i + 1]
  end
end
args[#args + 1] = 'at'
args[#args + 1] = ARGV[2]
redis.call(unpack(args))
redis.call('XDEL', KEYS[2], ARGV[1])
return 1
