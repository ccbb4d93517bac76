-- Accepts one webhook event for the fleet, atomically: claim the event id for `dedupe_for`,
-- and only if it was not already held, append the event to the webhook's stream. One round trip,
-- no window between "deduplicated" and "queued".
-- KEYS[1] the id's dedupe key, KEYS[2] the webhook's stream (same hash slot: {webhook}).
-- ARGV[1] dedupe_for in ms, ARGV[2] event id, ARGV[3] content type ("" for none),
-- ARGV[4] body (sealed with the encryption key when one is set), ARGV[5] received, unix ms.
-- Returns the new entry id, or nil for a duplicate.
if not redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) then
  return false
end
return redis.call('XADD', KEYS[2], '*', 'id', ARGV[2], 'ct', ARGV[3], 'body', ARGV[4], 'at', ARGV[5])
