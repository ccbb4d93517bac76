-- Deletes KEYS[1] only if it still holds ARGV[1]. Releases a lease only by its owner, and
-- invalidates a shared token only if it is still the one a partner refused.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
