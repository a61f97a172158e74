-- bucket_done.lua: the last step of a bucketed reservation that got a hold: store the answer
-- for retries and clear the in-flight mark (the units stay counted: they are held now).
-- KEYS[1] bsale:{<sale>.u<buyer>}:buyer
-- ARGV[1] idempotency key  ARGV[2] the answer (cjson)
-- returns the stored answer (the first one, when a recovery finished it already)
local seen = redis.call('HGET', KEYS[1], 'a:' .. ARGV[1])
if seen then return seen end
redis.call('HSET', KEYS[1], 'a:' .. ARGV[1], ARGV[2])
redis.call('HDEL', KEYS[1], 'p:' .. ARGV[1])
return ARGV[2]
