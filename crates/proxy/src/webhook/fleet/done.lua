-- The service answered 2xx: the entry leaves the group's pending list and the stream, and its
-- retry state goes. The dedupe key stays until it expires.
-- KEYS[1] stream, KEYS[2] retry-state hash; ARGV[1] group, ARGV[2] entry id.
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
redis.call('HDEL', KEYS[2], ARGV[2])
return 1
