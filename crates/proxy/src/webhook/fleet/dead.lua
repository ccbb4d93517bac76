-- Makes an entry a dead letter: its fields (body as stored, sealed or not) are appended to the
-- dead-letter stream with the attempt count and the last status and error, then it leaves the
-- group's pending list, the stream and the retry state, in one step.
-- KEYS[1] stream, KEYS[2] dead-letter stream, KEYS[3] retry-state hash.
-- ARGV[1] group, ARGV[2] entry id, ARGV[3] attempts, ARGV[4] last status ("" none), ARGV[5] last error.
local e = redis.call('XRANGE', KEYS[1], ARGV[2], ARGV[2])
if #e > 0 then
  local args = {'XADD', KEYS[2], '*'}
  local f = e[1][2]
  for i = 1, #f do
    args[#args + 1] = f[i]
  end
  for _, kv in ipairs({{'attempts', ARGV[3]}, {'status', ARGV[4]}, {'error', ARGV[5]}}) do
    args[#args + 1] = kv[1]
    args[#args + 1] = kv[2]
  end
  redis.call(unpack(args))
end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
redis.call('HDEL', KEYS[3], ARGV[2])
return #e
